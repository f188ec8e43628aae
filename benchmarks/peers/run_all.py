"""Blueno head to head with MLflow and huey, in one run on one machine: prints the ratio table.

    make bench-peers                 # creates .venv-bench with the [bench] extra, then runs this
    .venv-bench/bin/python benchmarks/peers/run_all.py [--only metrics,listing,dispatch,makespan]

MLflow and huey live in their own virtual environment (.venv-bench) so that they never change the
packages TensorFlow needs in .venv.  Takes about 5 minutes, most of it filling MLflow's database.
Results and how to read them: docs/benchmarks-peers.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, print_table, versions  # noqa: E402

SUITES = ("metrics", "listing", "dispatch", "makespan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SUITES), help="comma-separated subset of " + ", ".join(SUITES))
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(SUITES)
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(sorted(unknown))}")
    try:
        import huey  # noqa: F401
        import mlflow  # noqa: F401
    except ImportError as exc:
        print(f"run_all.py: {exc.name} is not installed here; run `make bench-peers`, which installs the "
              "[bench] extra into .venv-bench", file=sys.stderr)
        return 2
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {machine()}")
    print("; ".join(f"{name} {version}" for name, version in versions().items()), flush=True)
    rows = []
    for name in chosen:
        module = __import__(f"bench_{name}")
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            rows.extend(module.run(Path(tmp)))
        print(f"  {name}: done in {time.monotonic() - started:.0f} s", flush=True)
    print()
    print_table(rows)
    missed = [row for row in rows if row.verdict == "MISSED"]
    if missed:
        print(f"\n{len(missed)} target(s) missed: " + "; ".join(f"{r.measure} vs {r.peer_name}" for r in missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
