#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run of under 8 minutes: the CUDA-marked tests, then the GPU benchmarks.
# Usage (from the repository root, with the project installed): bash bench/gpu_check.sh [OUT_DIR]
# Each benchmark prints its own figures (ratios against a reference measured in the same run); OUT_DIR keeps the logs.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-bench-gpu-out}}"
mkdir -p "$out"
python - <<'PY' | tee "$out/device.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0))
PY
status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep the log, remember a failure
  local name="$1" limit="$2"; shift 2
  echo "== $name"
  timeout "$limit" "$@" > "$out/$name.log" 2>&1; local rc=$?
  tail -n 25 "$out/$name.log"
  [ "$rc" -eq 0 ] || { echo "!! $name exited $rc"; status=1; }
}
step cuda-tests 150 python -m pytest -m cuda -q -p no:cacheprovider
step metrics_vs_fairlearn 60 python bench/metrics_vs_fairlearn.py --device cuda --rows 1000000 --boot-rows 200000
step audit_throughput 60 python bench/audit_throughput.py --device cuda --n 8192 --arch resnet18
step explain 60 python bench/explain.py --device cuda
step faap_step 45 python bench/faap_step.py --device cuda --batch-size 256
step embed 45 python bench/embed.py --n 10000 --skip-sklearn
exit $status
