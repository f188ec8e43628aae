"""Notifications that cannot take the scheduler down, and secrets that stay secret (on disk and in messages).

The webhook receivers are real sockets on 127.0.0.1 that misbehave on purpose; the scheduler runs a real
``--batch`` process; every output, log record and exception text is scanned for the secret.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults import wait_for
from standin_model import standin_grid_text

from blueno import BluenoError, notify
from blueno.elastic import config as es_config
from blueno.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
SECRET = "T0SECRET0/B0/xyzzy"


class BadReceiver:
    """A TCP server that answers webhook POSTs wrongly: ``trickle`` (1 byte per 2 s), ``garbage``, ``close``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/services/{SECRET}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                if self.mode == "garbage":
                    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
                elif self.mode == "trickle":
                    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                        if self.stop.wait(2.0):
                            return
                        conn.sendall(bytes([byte]))
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def bad_receiver(request) -> Iterator[BadReceiver]:
    receiver = BadReceiver(request.param)
    yield receiver
    receiver.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the webhook sender ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad_receiver", ["trickle", "garbage", "close"], indirect=True)
def test_a_misbehaving_receiver_is_logged_and_cut_off_at_the_deadline(bad_receiver, caplog):
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    ok = notify.post(notify.NotifyConfig(bad_receiver.url), {"text": "hi"}, timeout=10, deadline=3)
    elapsed = time.monotonic() - started
    assert not ok
    assert elapsed < 3.5, f"{bad_receiver.mode}: {elapsed:.1f} s"
    assert "notification webhook failed" in caplog.text
    assert SECRET not in caplog.text and "127.0.0.1" not in caplog.text


@pytest.mark.parametrize("url", [
    f"hooks.example.com/services/{SECRET}",  # no scheme
    f"file:///etc/{SECRET}",
    f"ftp://example.com/{SECRET}",
    f"http://127.0.0.1:99999/{SECRET}",  # port out of range
    f"http://127.0.0.1:notaport/{SECRET}",
    f"http://127.0.0.1:{{closed}}/{SECRET}",  # nothing listens
    f"https:///{SECRET}",  # no host
])
def test_a_bad_webhook_url_is_refused_or_logged_never_raised_nor_shown(url, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    url = url.replace("{closed}", str(closed_port()))
    started = time.monotonic()
    assert notify.post(notify.NotifyConfig(url), {"text": "hi"}, deadline=5) is False
    assert time.monotonic() - started < 5.5
    captured = capsys.readouterr()
    for text in (caplog.text, captured.out, captured.err):
        assert SECRET not in text
    assert "notification" in caplog.text


def test_a_pending_delivery_never_holds_the_exit_of_the_process(tmp_path):
    """A ``--batch`` run that ends while its last notification trickles in exits after a short, stated wait."""
    receiver = BadReceiver("trickle")
    try:
        script = textwrap.dedent(f"""
            from blueno import notify
            notify._send(notify.NotifyConfig({receiver.url!r}), {{"text": "bye"}}, wait=False)
            print("sent", flush=True)
        """)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        elapsed = time.monotonic() - started
    finally:
        receiver.close()
    assert proc.returncode == 0 and "sent" in proc.stdout, proc.stderr
    assert elapsed < notify.EXIT_WAIT_S + 4, f"exit took {elapsed:.1f} s"
    assert SECRET not in proc.stdout + proc.stderr


def test_slack_control_sequences_in_names_and_parameters_are_escaped():
    assert notify.slack_escape("<!channel> see <https://evil|here> & more") == (
        "&lt;!channel&gt; see &lt;https://evil|here&gt; &amp; more")
    run = {"params": {"name": "<!here>", "lr": 0.1}}
    assert "<" not in notify._params_text(run)


# -- the scheduler survives broken notification settings -------------------------------------------


def test_the_grid_finishes_with_a_notify_setting_of_the_wrong_shape_and_a_settings_file_broken_mid_grid(
    batch_workspace: Workspace, tmp_path: Path
) -> None:
    batch_workspace.settings_path.write_text(f'notify = "https://hooks.example.com/{SECRET}"\n')
    grid = tmp_path / "grid.toml"
    grid.write_text(standin_grid_text(3, dataset="digits", duration=0.4, exit_code=[0, 1]))
    proc = subprocess.Popen(
        [sys.executable, "-P", str(REPO / "main.py"), "--batch", str(grid), "--home", str(batch_workspace.root),
         "--slots", "1", "--no-sync"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    with batch_workspace.open_store() as store:
        wait_for(lambda: store.query_one("SELECT 1 FROM jobs WHERE state IN ('succeeded', 'failed')"), 120)
        batch_workspace.settings_path.write_text(f'[notify\nwebhook_url = "https://x/{SECRET}"\n')  # half-saved
        output, _ = proc.communicate(timeout=300)
        states = [row[0] for row in store.query("SELECT state FROM jobs")]
    assert proc.returncode in (0, 1), output  # 1: some jobs failed, as the grid asks
    assert len(states) == 6 and set(states) <= {"succeeded", "failed"}, (states, output)
    assert "Traceback" not in output and SECRET not in output
    assert "notifications are off" in output


def test_settings_are_validated_when_saved(workspace: Workspace):
    with pytest.raises(BluenoError, match="webhook URL must start with https://") as caught:
        workspace.save_settings({"notify": {"webhook_url": f"hooks.example.com/{SECRET}"}})
    assert SECRET not in str(caught.value)
    with pytest.raises(BluenoError, match=r"\[notify\] enabled must be true or false"):
        workspace.save_settings({"notify": {"enabled": "no"}})
    assert not workspace.settings_path.exists()


# -- file modes ---------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_credentials_are_owner_only_even_when_they_existed_with_looser_modes(tmp_path: Path, caplog):
    root = tmp_path / "ws"
    (root / "credentials").mkdir(parents=True, mode=0o755)
    os.chmod(root / "credentials", 0o755)
    (root / "credentials" / "notify-webhook-url").write_text("old\n")
    os.chmod(root / "credentials" / "notify-webhook-url", 0o644)
    workspace = Workspace(root).ensure()
    assert mode(workspace.credentials_dir) == 0o700
    path = workspace.save_secret("notify-webhook-url", f"https://hooks.example.com/{SECRET}")
    assert mode(path) == 0o600
    os.chmod(path, 0o644)  # the user copies a key in with cp: readable by others
    caplog.set_level(logging.WARNING)
    assert notify.load_config(workspace).enabled
    assert f"chmod 600 {path}" in caplog.text and SECRET not in caplog.text


def test_settings_toml_is_0600_when_it_holds_a_secret(workspace: Workspace):
    workspace.save_settings({"scheduler": {"slots": 2}})
    assert mode(workspace.settings_path) == 0o644
    workspace.save_settings({"elasticsearch": {"urls": f"https://elastic:{SECRET}@es.example:9200"}})
    assert mode(workspace.settings_path) == 0o600
    workspace.save_settings({"elasticsearch": {"urls": ""}, "notify": {"webhook_url": f"https://h/{SECRET}"}})
    assert mode(workspace.settings_path) == 0o600


def test_a_hand_written_settings_file_with_a_secret_readable_by_others_is_warned_about(workspace: Workspace,
                                                                                      caplog):
    workspace.settings_path.write_text(f'[elasticsearch]\nurls = "https://elastic:{SECRET}@es.example:9200"\n')
    os.chmod(workspace.settings_path, 0o644)
    caplog.set_level(logging.WARNING)
    assert "elasticsearch" in workspace.settings()
    assert f"chmod 600 {workspace.settings_path}" in caplog.text and SECRET not in caplog.text


# -- Elasticsearch URLs with any password ------------------------------------------------------------

PASSWORDS = ["pa/ss", "pa?ss", "pa#ss", "p@ss:w/o?r#d", "p%40ss%2Fword", "plain"]


@pytest.mark.parametrize("password", PASSWORDS)
def test_an_es_url_password_is_parsed_decoded_and_never_shown(workspace: Workspace, password, caplog, capsys):
    from urllib.parse import unquote

    from es_server import EsTestServer

    caplog.set_level(logging.DEBUG)
    expected = unquote(password) if "%" in password else password
    server = EsTestServer().up()
    try:
        url = f"http://elastic:{password}@127.0.0.1:{server.port}"
        config = es_config.load_config(workspace, {"BLUENO_ES_URL": url})
        assert config is not None and config.password == expected and config.username == "elastic"
        assert config.urls == (f"http://127.0.0.1:{server.port}",)
        proc = subprocess.run(
            [sys.executable, "-P", "-m", "blueno", "--home", str(workspace.root), "sync", "es", "--install-templates"],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO), "BLUENO_ES_URL": url},
        )
    finally:
        server.down()
    refused = subprocess.run(  # the same URL with nothing listening: the error path must not show it either
        [sys.executable, "-P", "-m", "blueno", "--home", str(workspace.root), "sync", "es", "--install-templates"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), "BLUENO_ES_URL": url},
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    texts = [proc.stdout, proc.stderr, refused.stdout, refused.stderr, caplog.text, capsys.readouterr().err,
             repr(config)]
    texts += [p.read_text(errors="replace") for p in workspace.logs_dir.rglob("*") if p.is_file()]
    for text in texts:
        assert password not in text and expected not in text, text
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("url", ["es.example:9200", "ftp://u:{pw}@h", "http://u:{pw}@h:99999", "http://u:{pw}@/x"])
def test_a_malformed_es_url_is_refused_without_its_password(workspace: Workspace, url):
    with pytest.raises(BluenoError) as caught:
        es_config.load_config(workspace, {"BLUENO_ES_URL": url.format(pw="s3cr/et?#")})
    assert "s3cr" not in str(caught.value) and "Elasticsearch URL" in str(caught.value)
