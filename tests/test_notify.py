"""Webhook notifications, against a real local HTTP receiver: off by default, once per event, URL kept secret."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from waiting import wait_until

from blueno import notify
from blueno.store import Store, dumps, now
from blueno.workspace import Workspace

SECRET = "T000/B000/XXXXsecretXXXX"


class Receiver:
    """A Slack-like incoming-webhook endpoint on localhost that records what it is sent."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.paths: list[str] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.paths.append(self.path)
                receiver.messages.append({"content_type": self.headers["Content-Type"], **json.loads(body)})
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/services/{SECRET}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def configure(workspace: Workspace, url: str, **extra: bool) -> None:
    lines = ["[notify]", f'webhook_url = "{url}"', *(f"{k} = {str(v).lower()}" for k, v in extra.items())]
    workspace.settings_path.write_text("\n".join(lines) + "\n")


def experiment_with_jobs(store: Store, states: list[str], name: str = "sweep") -> tuple[int, list[int]]:
    """An experiment whose jobs ended as given; succeeded ones have results to rank."""
    jobs = []
    with store.write() as conn:
        experiment = conn.execute("INSERT INTO experiments (name, grid_text, created) VALUES (?, '', ?)",
                                  (name, now())).lastrowid
        for i, state in enumerate(states):
            params = {"hidden_units": 8 * (i + 1), "learning_rate": 0.01, "seed": 0}
            job = conn.execute(
                "INSERT INTO jobs (experiment_id, config_hash, config, model, dataset, state, attempt, error, created) "
                "VALUES (?, ?, ?, 'mlp', 'digits@1', ?, 1, ?, ?)",
                (experiment, f"h{experiment}-{i}", dumps({"model": "mlp", "params": params}), state,
                 "ValueError: the loss became NaN" if state == "failed" else None, now()),
            ).lastrowid
            best = {"val_loss": 0.5 - 0.1 * i, "val_accuracy": 0.8 + 0.05 * i} if state == "succeeded" else None
            conn.execute(
                "INSERT INTO runs (job_id, experiment_id, model, params, dataset, monitor, best, evaluation, created) "
                "VALUES (?, ?, 'mlp', ?, 'digits@1', 'val_loss', ?, ?, ?)",
                (job, experiment, dumps(params), dumps(best) if best else None,
                 dumps({"validation": {"accuracy": 0.8 + 0.05 * i}}) if best else None, now()),
            )
            jobs.append(job)
    return experiment, jobs


def test_that_nothing_is_sent_by_default(workspace: Workspace, store: Store, receiver: Receiver) -> None:
    _, jobs = experiment_with_jobs(store, ["succeeded", "failed"])
    assert not notify.load_config(workspace).enabled
    assert notify.on_job_finished(workspace, store, jobs[1]) == []
    assert receiver.messages == []


def test_that_a_failed_job_and_the_finished_experiment_are_announced_once(
    workspace: Workspace, store: Store, receiver: Receiver
) -> None:
    configure(workspace, receiver.url)
    experiment, jobs = experiment_with_jobs(store, ["succeeded", "succeeded", "running", "failed"])

    for thread in notify.on_job_finished(workspace, store, jobs[3]):
        thread.join(10)
    (failed,) = receiver.messages  # the experiment still has a running job
    assert failed["content_type"] == "application/json" and receiver.paths == [f"/services/{SECRET}"]
    assert f"job {jobs[3]} failed" in failed["text"] and "the loss became NaN" in failed["text"]

    with store.write() as conn:
        conn.execute("UPDATE jobs SET state = 'succeeded' WHERE id = ?", (jobs[2],))
        conn.execute("UPDATE runs SET best = ? WHERE job_id = ?", (dumps({"val_loss": 0.05}), jobs[2]))
    for job in (jobs[2], jobs[0], jobs[3]):  # every job's end is reported; the experiment's only once
        for thread in notify.on_job_finished(workspace, store, job):
            thread.join(10)

    assert len(receiver.messages) == 2
    text = receiver.messages[1]["text"]
    assert f"experiment sweep (#{experiment}) finished" in text and "3 succeeded" in text and "1 failed" in text
    lines = text.splitlines()
    run_of = {row["job_id"]: row["id"] for row in store.query("SELECT id, job_id FROM runs")}
    assert lines[1].startswith(f"1. run {run_of[jobs[2]]} mlp: val_loss 0.05")  # the best run first
    assert lines[2].startswith(f"2. run {run_of[jobs[1]]} mlp: val_loss 0.4, accuracy 0.85")


def test_that_more_jobs_in_an_experiment_make_a_new_announcement(
    workspace: Workspace, store: Store, receiver: Receiver
) -> None:
    configure(workspace, receiver.url)
    experiment, jobs = experiment_with_jobs(store, ["succeeded"])
    notify.on_experiment_finished(workspace, store, experiment, wait=True)
    notify.on_experiment_finished(workspace, store, experiment, wait=True)
    assert len(receiver.messages) == 1
    with store.write() as conn:  # e.g. `blueno runs repeat` added a job that then finished
        conn.execute("INSERT INTO jobs (experiment_id, config_hash, config, model, dataset, state, created) "
                     "VALUES (?, 'again', '{}', 'mlp', 'digits@1', 'cancelled', ?)", (experiment, now()))
    notify.on_experiment_finished(workspace, store, experiment, wait=True)
    assert len(receiver.messages) == 2


def test_that_switches_turn_each_kind_off(workspace: Workspace, store: Store, receiver: Receiver) -> None:
    configure(workspace, receiver.url, on_job_failed=False)
    _, jobs = experiment_with_jobs(store, ["failed"])
    notify.on_job_finished(workspace, store, jobs[0], wait=True)
    assert len(receiver.messages) == 1 and "finished" in receiver.messages[0]["text"]


def test_that_the_webhook_url_is_never_logged_or_shown(
    workspace: Workspace, store: Store, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    configure(workspace, receiver.url)
    config = notify.load_config(workspace)
    assert SECRET not in repr(config) and SECRET not in str(config)

    receiver.status = 500
    with caplog.at_level(logging.DEBUG):
        assert notify.post(config, {"text": "hello"}) is False
    assert len(receiver.messages) == 2  # a 5xx is retried once
    dead = notify.NotifyConfig(f"http://127.0.0.1:1/services/{SECRET}")
    with caplog.at_level(logging.DEBUG):
        assert notify.post(dead, {"text": "hello"}, timeout=2) is False
    assert "webhook failed (HTTP 500)" in caplog.text and SECRET not in caplog.text
    assert "127.0.0.1" not in caplog.text


def test_that_the_environment_overrides_the_settings(
    workspace: Workspace, store: Store, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(notify.ENV_URL, receiver.url)
    _, jobs = experiment_with_jobs(store, ["failed"])
    notify.on_job_finished(workspace, store, jobs[0], wait=True)
    assert len(receiver.messages) == 2


@pytest.mark.slow
def test_that_the_scheduler_announces_an_experiment_when_its_last_job_ends(
    workspace: Workspace, store: Store, receiver: Receiver
) -> None:
    from training_helpers import submit, threes_and_eights

    from blueno.queue import JobQueue
    from blueno.scheduler import Scheduler, Slot

    configure(workspace, receiver.url)
    ref = threes_and_eights(workspace, store)
    experiment = submit(workspace, store, f"""
name = "announced"
dataset = "{ref}"
[params]
epochs = 2
monitor = "val_auc"
[models.mlp]
hidden_units = 4
""")
    Scheduler(workspace, [Slot("cpu0", None)]).run(until_empty=True)
    assert [job.state for job in JobQueue(store).jobs()] == ["succeeded"]
    wait_until(lambda: receiver.messages, timeout=10)  # the scheduler posts from a thread of its own

    (message,) = receiver.messages
    run = store.query_one("SELECT id FROM runs")["id"]
    assert message["text"].startswith(f"*Blueno: experiment announced (#{experiment}) finished*: 1 succeeded")
    assert f"1. run {run} mlp: val_auc " in message["text"] and "auc " in message["text"]


def test_that_the_url_may_live_in_the_credentials_folder_and_be_switched_off(
    workspace: Workspace, store: Store, receiver: Receiver
) -> None:
    path = workspace.save_secret(notify.SECRET_FILE, receiver.url)
    assert path.stat().st_mode & 0o077 == 0
    _, jobs = experiment_with_jobs(store, ["failed"])
    workspace.save_settings({"notify": {"enabled": False}})
    notify.on_job_finished(workspace, store, jobs[0], wait=True)
    assert receiver.messages == []
    workspace.save_settings({"notify": {"enabled": True}})
    notify.on_job_finished(workspace, store, jobs[0], wait=True)
    assert len(receiver.messages) == 2
