#!/usr/bin/env bash
# A real grid on a GPU box, one job per GPU: the check to run when a GPU machine is available.
#   bash benchmarks/gpu_grid.sh            (from the repository root; about 2 minutes after the install)
# It installs TensorFlow with CUDA into .venv-gpu, lists the GPUs NVML sees, runs the demo grid with
# every GPU as a slot in a scratch workspace, prints which GPU each job ran on, then times warm against
# cold trainers on those GPUs (benchmarks/makespan_keras.py).
set -euo pipefail
cd "$(dirname "$0")/.."
make .venv-gpu/.blueno-installed TF=gpu    # Blueno with tensorflow[and-cuda], in a venv of its own
home=$(mktemp -d)
.venv-gpu/bin/python - <<'PY'
from blueno.scheduler import detect_slots, gpu_stats
print("slots:", [s.name for s in detect_slots()])
for gpu in gpu_stats():
    print(f"gpu{gpu.index}: {gpu.name}, {gpu.memory_total / 2**30:.0f} GiB")
PY
.venv-gpu/bin/python main.py --home "$home" data demo
time .venv-gpu/bin/python main.py --home "$home" --batch resources/examples/demo.toml
.venv-gpu/bin/python main.py --home "$home" queue ls --all
grep -h "GPU\|gpu" "$home"/logs/run-*.log | head -20 || true
# Warm against cold trainers on the same GPUs (docs/benchmarks.md, "Warm trainers").
gpus=$(.venv-gpu/bin/python -c "from blueno.scheduler import detect_slots; print(','.join(s.gpu for s in detect_slots() if s.gpu))")
if [ -n "$gpus" ]; then .venv-gpu/bin/python benchmarks/makespan_keras.py --gpus "$gpus" --skip-interference; fi
