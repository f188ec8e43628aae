"""The same stand-in grid on a 2-node x 2-fake-GPU Ray cluster and on 4 local slots: makespan and dispatch.

A real multi-node Ray cluster inside this machine (``ray.cluster_utils``,
every address on 127.0.0.1, the head takes no work) and the local backend
run the same grid of ``--jobs`` stand-in trainers (real subprocesses that
"train" ``--duration`` seconds in 4 checkpointed steps and report through
the trainer protocol; each reads the same small dataset, which reaches each
node once through Ray's object store).  Printed, for both, in one run:

* makespan / ideal, where ideal = total work / slots (the stand-ins' own
  start→end, so Python start-up counts as overhead);
* the Ray backend's connect (version check of every node, a worker started
  per slot), which happens once before the grid and is not in its makespan;
* the same ratio with the stand-in's mean Python start-up taken out (as
  ``scheduler_overhead.py`` does): what the scheduling itself costs;
* dispatch latency: a job's claim → its trainer process started on a node
  (``jobs.claimed`` → ``runs.started``, written when the node reports it),
  median and worst.

    .venv/bin/python benchmarks/ray_makespan.py [--jobs 24] [--duration 4.0]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from cluster_helpers import LocalCluster  # noqa: E402  (sets Ray's loopback-only variables first)
from standin_model import standin_grid_text  # noqa: E402
from training_helpers import submit, threes_and_eights  # noqa: E402

from blueno.cluster.backend import RayBackend  # noqa: E402
from blueno.scheduler import Scheduler, Slot  # noqa: E402
from blueno.workspace import Workspace  # noqa: E402

TRAINER = [sys.executable, str(ROOT / "tests" / "cluster_trainer.py")]
SLOTS = 4  # 2 nodes x 2 fake GPUs; locally 4 CPU slots


def run_grid(root: Path, jobs: int, duration: float, backend_for=None) -> dict[str, float]:
    workspace = Workspace(root).ensure()
    ledger = root / "ledger.csv"
    os.environ["BLUENO_LEDGER"] = str(ledger)
    with workspace.open_store() as store:
        data = threes_and_eights(workspace, store)
        submit(workspace, store, standin_grid_text(jobs, dataset=data, steps=4, duration=duration))
        connecting = time.time()
        backend = backend_for(workspace) if backend_for else None
        connect = time.time() - connecting
        slots = [] if backend else [Slot(f"cpu{i}", None) for i in range(SLOTS)]
        began = time.time()
        try:
            Scheduler(workspace, slots, trainer_command=TRAINER, backend=backend).run(until_empty=True)
        finally:
            if backend is not None:
                backend.close()
        makespan = time.time() - began
        rows = store.query("SELECT jobs.id, jobs.state, jobs.claimed, runs.started FROM jobs "
                           "JOIN runs ON runs.job_id = jobs.id")
        assert all(row["state"] == "succeeded" for row in rows), [row["state"] for row in rows]
        dispatch = [row["started"] - row["claimed"] for row in rows]
        started = {row["id"]: row["started"] for row in rows}
    entries = [line.split(",") for line in ledger.read_text().split()]
    work = [float(end) - float(start) for *_, start, end in entries]
    startup = statistics.mean(float(start) - started[int(job)] for job, _a, _r, start, _e in entries)
    ideal = sum(work) / SLOTS
    return {"connect": connect, "makespan": makespan, "ideal": ideal, "ratio": makespan / ideal,
            "ratio_no_startup": (makespan - startup * len(entries) / SLOTS) / ideal, "startup": startup,
            "dispatch_median": statistics.median(dispatch), "dispatch_worst": max(dispatch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of 'training' per job")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bray-bench-") as tmp:
        local = run_grid(Path(tmp) / "local", args.jobs, args.duration)
        cluster = LocalCluster()
        try:
            cluster.add_node(gpus=2)
            cluster.add_node(gpus=2)
            remote = run_grid(Path(tmp) / "ray", args.jobs, args.duration,
                              lambda ws: RayBackend(ws, cluster.address).connect())
        finally:
            cluster.shutdown()
    print(f"Ray backend vs local — {args.jobs} stand-in jobs x {args.duration:g} s on {SLOTS} slots "
          f"(2 nodes x 2 fake GPUs) — {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| figure | local, 4 slots | Ray, 2 nodes x 2 GPUs | target |")
    print("| --- | --- | --- | --- |")
    print(f"| connect, version check, a worker started per slot (before the grid) | - | {remote['connect']:.2f} s | |")
    print(f"| makespan | {local['makespan']:.2f} s | {remote['makespan']:.2f} s | |")
    print(f"| ideal (total work / slots) | {local['ideal']:.2f} s | {remote['ideal']:.2f} s | |")
    print(f"| makespan / ideal | {local['ratio']:.3f} | **{remote['ratio']:.3f}** | ≤ 1.10 |")
    print(f"| makespan / ideal, the stand-in's Python start-up excluded | {local['ratio_no_startup']:.3f} | "
          f"{remote['ratio_no_startup']:.3f} | |")
    print(f"| mean Python start-up of the stand-in (trainer started → its own first line) | "
          f"{local['startup'] * 1000:.0f} ms | {remote['startup'] * 1000:.0f} ms | |")
    print(f"| dispatch latency, median (claim → trainer started) | {local['dispatch_median'] * 1000:.1f} ms | "
          f"{remote['dispatch_median'] * 1000:.1f} ms | |")
    print(f"| dispatch latency, worst | {local['dispatch_worst'] * 1000:.1f} ms | "
          f"{remote['dispatch_worst'] * 1000:.1f} ms | |")


if __name__ == "__main__":
    main()
