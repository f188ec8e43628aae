"""A trainer stand-in: a real subprocess that speaks the trainer's contract, fast.

``python tests/standin_trainer.py JOB ATTEMPT`` reads its job like the real
trainer, "trains" for ``params.duration`` seconds in ``params.steps`` steps,
checkpoints after each step (a retried attempt resumes from there), appends
``job,attempt,start,end`` to the ledger named by ``$BLUENO_LEDGER`` when it
completes, and marks the job succeeded guarded by its attempt.  Knobs in the
job's params: ``exit_code`` (crash with it), ``ignore_sigterm``,
``grandchildren`` (spawn that many sleeping grandchildren, one in its own session).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blueno.queue import EXIT_STALE, finish_success  # noqa: E402
from blueno.store import Store, add_outbox, dumps, now  # noqa: E402


class StaleAttempt(Exception):
    """This attempt was abandoned; roll back what it wrote."""


def main(job_id: int, attempt: int) -> int:
    home = Path(os.environ["BLUENO_HOME"])
    store = Store(home / "blueno.db", migrate=False)
    job = store.query_one("SELECT config, attempt, state FROM jobs WHERE id = ?", (job_id,))
    if job is None or job["attempt"] != attempt or job["state"] != "running":
        return EXIT_STALE
    params = json.loads(job["config"])["params"]
    run_id = store.query_one("SELECT id FROM runs WHERE job_id = ?", (job_id,))["id"]
    if params.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for i in range(int(params.get("grandchildren", 0))):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=(i == 0))
    checkpoint = home / "models" / f"run-{run_id}" / "standin.json"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(checkpoint.read_text())["step"] if checkpoint.exists() else 0
    steps = int(params.get("steps", 1))
    start = now()
    with store.write() as conn:
        conn.execute("UPDATE runs SET started = COALESCE(started, ?) WHERE id = ?", (start, run_id))
    for step in range(done, steps):
        time.sleep(float(params.get("duration", 0.0)) / steps)
        tmp = checkpoint.with_suffix(".tmp")
        tmp.write_text(json.dumps({"step": step + 1}))
        os.replace(tmp, checkpoint)
    if params.get("exit_code"):
        return int(params["exit_code"])
    end = now()
    try:
        with store.write() as conn:
            if not finish_success(conn, job_id, attempt):
                raise StaleAttempt
            conn.execute(
                "UPDATE runs SET ended = ?, epochs_done = ?, final = ? WHERE id = ?",
                (end, steps, dumps({"resumed_from": done}), run_id),
            )
            add_outbox(conn, "run", run_id)
    except StaleAttempt:
        return EXIT_STALE
    ledger = os.environ.get("BLUENO_LEDGER")
    if ledger:
        with open(ledger, "a") as handle:  # append-only: one line per completion
            handle.write(f"{job_id},{attempt},{start},{end}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
