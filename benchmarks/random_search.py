"""``grid validate`` of a random search of 100,000 samples: CPU time and distinct configurations.

Times ``blueno.grid.parse_grid`` (what ``grid validate`` runs) on one log-uniform parameter over three
decades, whose 4-significant-digit draws hold about 27,000 distinct values, next to the same function
as it was before the hardening (read from git at ``--before``, default 6e99a38), in the same process.

Run: ``.venv/bin/python benchmarks/random_search.py [--samples 100000] [--before REV]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from blueno import grid  # noqa: E402

GRID = """name = "rs"
dataset = "digits"
[search]
mode = "random"
samples = {samples}
seed = 1
[params]
learning_rate = {{loguniform = [0.0001, 0.1]}}
[models.mlp]
"""


def timed(parse, text: str) -> tuple[float, int]:
    started = time.process_time()
    parsed = parse(text, source="<bench>")
    return time.process_time() - started, parsed.count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--before", default="6e99a38", help="git revision of the old blueno/grid.py")
    args = parser.parse_args()
    text = GRID.format(samples=args.samples)
    cpu, count = timed(grid.parse_grid, text)
    note = grid.parse_grid(text, source="<bench>").notes
    print(f"now:    {cpu:6.2f} s CPU, {count:,} distinct configurations of {args.samples:,} samples")
    print(f"        note: {note[0] if note else '(none)'}")
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{args.before}:blueno/grid.py"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        print(f"before: revision {args.before} not available")
        return
    old = types.ModuleType("blueno.grid_before")
    old.__dict__["__name__"] = "blueno.grid_before"
    sys.modules["blueno.grid_before"] = old
    exec(compile(source, "grid_before.py", "exec"), old.__dict__)
    before, old_count = timed(old.parse_grid, text)
    print(f"before: {before:6.2f} s CPU, {old_count:,} distinct configurations (no note) -> "
          f"{before / cpu:.1f}x the CPU")


if __name__ == "__main__":
    main()
