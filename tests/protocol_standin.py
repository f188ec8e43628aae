"""A stand-in trainer that speaks only the trainer protocol: plain JSON lines, no database, no Keras.

Run by a scheduler with ``$BLUENO_JOB`` (its job spec) and ``$BLUENO_EVENTS``
(where its events go).  It "trains" ``params.steps`` steps of
``params.duration / steps`` seconds, writes a checkpoint after each one and
only then reports the epoch naming it, resumes from that checkpoint, writes
``model.bin`` into its run folder and reports the result.  Knobs in params:
``exit_code`` (crash with it after the steps), ``ignore_sigterm``.  A completion
appends ``job,attempt,resumed_from,start,end`` to ``$BLUENO_LEDGER``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path


def emit(handle, seq: list[int], type_: str, **fields) -> None:
    seq[0] += 1
    line = json.dumps({"v": 1, "seq": seq[0], "type": type_, "time": time.time(), **fields}) + "\n"
    handle.write(line)
    handle.flush()
    if type_ in ("epoch", "result", "error", "model"):
        os.fsync(handle.fileno())


def main() -> int:
    spec = json.loads(Path(os.environ["BLUENO_JOB"]).read_text())
    params = spec["config"]["params"]
    if params.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = run_dir / "checkpoint.json"
    done = json.loads(checkpoint.read_text())["step"] if checkpoint.exists() else 0
    steps = int(params.get("steps", 1))
    seq = [0]
    began = time.time()
    with open(os.environ["BLUENO_EVENTS"], "a") as events:
        emit(events, seq, "start", params=params, epochs=steps)
        for step in range(done, steps):
            time.sleep(float(params.get("duration", 0.0)) / steps)
            loss = 1.0 / (step + 1)
            emit(events, seq, "metrics", points=[["batch_loss", step + 1, loss]])
            tmp = checkpoint.with_suffix(".tmp")
            tmp.write_text(json.dumps({"step": step + 1}))
            os.replace(tmp, checkpoint)
            emit(events, seq, "epoch", epoch=step + 1, logs={"loss": loss}, checkpoint=str(checkpoint))
        if params.get("exit_code"):
            return int(params["exit_code"])
        model = run_dir / "model.bin"
        model.write_bytes(json.dumps({"job": spec["job_id"], "steps": steps}).encode() * 64)
        rel = model.relative_to(Path(spec["workspace"])).as_posix()
        emit(events, seq, "result", epochs_done=steps, final={"loss": 1.0 / steps}, best={"loss": 1.0 / steps},
             best_epoch=steps, monitor="loss", model_path=rel)
    ledger = os.environ.get("BLUENO_LEDGER")
    if ledger:
        with open(ledger, "a") as handle:
            handle.write(f"{spec['job_id']},{spec['attempt']},{done},{began},{time.time()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
