"""Dispatch latency: from a job becoming runnable (its enqueue committed) to its work starting.

Jobs arrive one at a time after an idle gap (0.2-2.5 s, the same seeded sequence for both), as a
researcher queues them.  Blueno: a scheduler on one CPU slot, warm trainers off; the job's process is a ``bash`` that
waits on its gate (``$BLUENO_GATE``: the scheduler has recorded its pid), stamps the time and execs
the trainer stand-in, so the figure includes fork, exec and the record's commit.  Two ways of
queueing: from another process (the CLI: ``JobQueue.submit`` pokes the workspace's wake-up FIFO,
``blueno.wakeup``; measured also without it, where the scheduler notices on its next 20 ms
``data_version`` tick) and from the scheduler's own process (the GUI: it kicks the scheduler).
huey: ``SqliteHuey`` with a consumer
started with its default settings (``huey_consumer``: 1 worker thread, polling from 0.1 s with
back-off 1.15 up to 10 s); the task stamps the time when its body starts (a thread, no new process).
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from common import Row

SAMPLES = 25
SEED = 11


def gaps() -> list[float]:
    rng = random.Random(SEED)
    return [rng.uniform(0.2, 2.5) for _ in range(SAMPLES)]


def wait_file(path: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.001)
    raise TimeoutError(f"{path} never appeared")


def blueno_latencies(tmp: Path, kick: bool, poke: bool = True) -> list[float]:
    from standin_model import STANDIN_COMMAND, standin_grid

    from blueno.queue import JobQueue
    from blueno.scheduler import Scheduler, Slot
    from blueno.wakeup import wake_path
    from blueno.workspace import Workspace

    workspace = Workspace(tmp / f"dispatch-ws-{'kick' if kick else 'poke' if poke else 'poll'}").ensure()
    if not poke:  # the name taken by a folder: no wake-up FIFO, the scheduler falls back to data_version
        wake_path(workspace.root).mkdir()
    # The work starts once the trainer is let through its gate (the scheduler has recorded its pid):
    # bash reads the gate as blueno.client would, then stamps the time and becomes the stand-in.
    stamp = ('read -r -n1 -u "$BLUENO_GATE" go; unset BLUENO_GATE; date +%s.%N > "$BLUENO_HOME/started-$1"; '
             'exec ' + " ".join(STANDIN_COMMAND) + ' "$1" "$2"')
    # Cold trainers: a warm spare would run the stamp before its job exists (it is a spare of this command).
    scheduler = Scheduler(workspace, [Slot("cpu0", None)], trainer_command=["/bin/bash", "-c", stamp, "sh"],
                          warm=False)
    thread = threading.Thread(target=scheduler.run, daemon=True)
    thread.start()
    latencies = []
    with workspace.open_store() as store:  # another connection: as another process would queue
        queue = JobQueue(store)
        for i, gap in enumerate(gaps()):
            time.sleep(gap)
            (job_id,) = queue.submit(standin_grid(1, name=f"dispatch-{i}", steps=i + 1)).added
            queued = time.time()
            if kick:
                scheduler.kick()
            started = float(wait_file(workspace.root / f"started-{job_id}"))
            latencies.append(started - queued)
    scheduler.stop()
    thread.join(30)
    return latencies


def huey_latencies(tmp: Path) -> list[float]:
    folder = tmp / "huey"
    folder.mkdir()
    (folder / "bench_tasks.py").write_text(textwrap.dedent(f"""
        import time
        from huey import SqliteHuey

        huey = SqliteHuey(filename={str(folder / 'huey.db')!r})

        @huey.task()
        def job(path):
            stamp = time.time()
            with open(path, "w") as handle:
                handle.write(repr(stamp))
    """))
    consumer = subprocess.Popen(
        [sys.executable, "-m", "huey.bin.huey_consumer", "bench_tasks.huey"], cwd=folder,
        env={**os.environ, "PYTHONPATH": str(folder)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    sys.path.insert(0, str(folder))
    try:
        import bench_tasks

        time.sleep(2.0)  # let the consumer start before the first gap
        latencies = []
        for i, gap in enumerate(gaps()):
            time.sleep(gap)
            out = folder / f"started-{i}"
            bench_tasks.job(str(out))
            queued = time.time()
            latencies.append(float(wait_file(out)) - queued)
        return latencies
    finally:
        sys.path.remove(str(folder))
        consumer.terminate()
        consumer.wait(30)


def run(tmp: Path) -> list[Row]:
    huey = huey_latencies(tmp)
    poked = blueno_latencies(tmp, kick=False)
    polled = blueno_latencies(tmp, kick=False, poke=False)
    kicked = blueno_latencies(tmp, kick=True)
    median = statistics.median
    return [
        Row("dispatch latency, median (queued by another process)", "ms", median(poked) * 1000,
            median(huey) * 1000, "huey SqliteHuey, default consumer", False, target=1),
        Row(f"dispatch latency, worst of {SAMPLES} (another process)", "ms", max(poked) * 1000, max(huey) * 1000,
            "huey SqliteHuey, default consumer", False, target=1),
        Row("dispatch latency, median (another process), wake-up FIFO vs data_version polling only", "ms",
            median(poked) * 1000, median(polled) * 1000, "Blueno without the wake-up (20 ms polling)", False),
        Row("dispatch latency, median (queued in the GUI's process)", "ms", median(kicked) * 1000,
            median(huey) * 1000, "huey SqliteHuey, default consumer", False, target=1),
    ]
