"""The app in a real X window (Xvfb, Qt's ``xcb`` platform): a grid driven to success, a clean exit.

The other GUI tests run offscreen in this process; this one runs ``main.py``'s
path as a subprocess on a virtual X server, so window mapping, focus, real
key and mouse events and the quit path are the ones a user gets.
``tests/gui/real_window_driver.py`` does the clicking.  ``make test``
installs Xvfb and the xcb libraries (``make system-gui-libs``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("real_window_driver.py")


def processes_marked(mark: str) -> list[str]:
    """Processes (other than zombies) whose environment carries ``BLUENO_TEST_MARK=mark``."""
    found = []
    needle = f"BLUENO_TEST_MARK={mark}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                status = (entry / "status").read_text()
                if "State:\tZ" not in status:
                    command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    found.append(f"{entry.name}: {command}")
        except OSError:
            continue
    return found


@pytest.mark.skipif(shutil.which("xvfb-run") is None,
                    reason="Xvfb is not installed (make system-gui-libs, or apt-get install xvfb xauth)")
def test_that_the_app_in_a_real_x_window_trains_a_grid_and_quits_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "workspace"
    mark = uuid.uuid4().hex
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "xcb",
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),  # the app's QSettings land here, not in the user's config
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "BLUENO_TEST_MARK": mark,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    env.pop("BLUENO_HOME", None)
    home.mkdir()
    (home / "settings.toml").write_text("[scheduler]\nslots = 1\n")
    command = ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", sys.executable, str(DRIVER), str(home)]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the app did not finish within 600 s:\n{output}")
    print(output)
    assert process.returncode == 0, output
    assert "driver: succeeded" in output
    assert "driver: event loop left with 0" in output
    assert "Traceback" not in output, output
    deadline = time.monotonic() + 10  # xvfb-run signals its Xvfb and exits without waiting for it
    while processes_marked(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_marked(mark) == []
