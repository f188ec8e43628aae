"""A trainer stand-in: a real subprocess that speaks the trainer protocol, fast.

``python tests/standin_trainer.py JOB ATTEMPT`` reads its job spec (``$BLUENO_JOB``)
like the real trainer, "trains" for ``params.duration`` seconds in ``params.steps``
steps, checkpoints after each step and reports it (``epoch`` event; a retried
attempt resumes from there), reports its ``result``, then appends
``job,attempt,start,end`` to the ledger named by ``$BLUENO_LEDGER``.  It never
opens the database: it reports through :mod:`blueno.client`, as a user's script
would.  Knobs in the job's params: ``exit_code`` (crash with it),
``ignore_sigterm``, ``grandchildren`` (spawn that many sleeping grandchildren,
one in its own session).

``python tests/standin_trainer.py --spare`` is its warm mode (:mod:`blueno.spare`):
it waits for its job like a real spare trainer.  ``$BLUENO_STANDIN_IMPORT_S``
makes the spare's "import" (and a cold start's) take that much CPU time, like TensorFlow's.
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

from blueno import client  # noqa: E402
from blueno.queue import EXIT_STALE  # noqa: E402


def main(job_id: int, attempt: int) -> int:
    spec = client.job()
    if (spec.get("job_id"), spec.get("attempt")) != (job_id, attempt):
        return EXIT_STALE
    params = spec["config"]["params"]
    seen = os.environ.get("BLUENO_STANDIN_SEEN")
    if seen:  # what this job's trainer sees of its slot, whether it started cold or as a spare
        with open(seen, "a") as handle:
            handle.write(f"{os.environ.get('BLUENO_SLOT')}={os.environ.get('CUDA_VISIBLE_DEVICES')}\n")
    if params.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for i in range(int(params.get("grandchildren", 0))):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=(i == 0))
    checkpoint = Path(spec["run_dir"]) / "standin.json"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(checkpoint.read_text())["step"] if checkpoint.exists() else 0
    steps = int(params.get("steps", 1))
    start = time.time()
    for step in range(done, steps):
        time.sleep(float(params.get("duration", 0.0)) / steps)
        client.log_metrics({"loss": 1.0 / (step + 1)}, step=step + 1)
        tmp = checkpoint.with_suffix(".tmp")
        tmp.write_text(json.dumps({"step": step + 1}))
        os.replace(tmp, checkpoint)
        client.epoch_done(step + 1, {"val_loss": 1.0 / (step + 2)}, checkpoint=str(checkpoint))
    if params.get("exit_code"):
        if params.get("message"):
            print(params["message"], flush=True)
        return int(params["exit_code"])
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stop now would only lose the finished work
    client.result(final={"resumed_from": done}, epochs_done=steps)
    end = time.time()
    ledger = os.environ.get("BLUENO_LEDGER")
    if ledger:
        with open(ledger, "a") as handle:  # append-only: one line per completion
            handle.write(f"{job_id},{attempt},{start},{end}\n")
    return 0


def imports() -> None:
    """The stand-in's TensorFlow import: ``$BLUENO_STANDIN_IMPORT_S`` seconds of CPU work, if set."""
    deadline = time.process_time() + float(os.environ.get("BLUENO_STANDIN_IMPORT_S", "0"))
    while time.process_time() < deadline:
        pass


if __name__ == "__main__":
    if sys.argv[1:2] == ["--spare"]:
        from blueno.spare import Step, serve

        sys.exit(serve(lambda argv: main(int(argv[0]), int(argv[1])), [Step(imports)]))
    imports()
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
