#!/usr/bin/env bash
# The one command a lent GPU machine runs for issue 17: the captured sampler's CUDA tests (CUDA graph replays give
# the eager tokens), then benchmarks/bench_gpu.py (full size, fp32 and bf16, samplers off / static / graph), then,
# while time is left, torch.compile in bf16. Results land in OUT as they are made.
#
#   scripts/gpu_bench.sh OUT [BUDGET_S]
#
# OUT       folder for the results ($OUT on the device machine): cuda_tests.log, gpu.md / gpu.json (the table for
#           BENCHMARKS.md and its raw numbers), gpu_compile.md / .json, bench.log
# BUDGET_S  wall seconds the script may take, all told (default 540); each part is cut off in time
# BENCH_ARGS (environment): more options for both bench_gpu.py runs (`--quick` tries the script on a CPU).
# Wheels in .whl/ are installed first (the device's python lacks soundfile, soxr, pyloudnorm, cffi, pycparser; see the
# device notes in docs/TRAINING.md for fetching them with `pip download`).
set -uo pipefail
usage="usage: gpu_bench.sh OUT [BUDGET_S]"
out=${1:?$usage}
budget=${2:-540}
[[ $budget =~ ^[0-9]+$ ]] && (( budget >= 120 )) || { echo "error: BUDGET_S must be an integer >= 120" >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
start=$(date +%s)
python=${PYTHON:-python3}
mkdir -p "$out"
left() { echo $(( budget - ($(date +%s) - start) )); }

if compgen -G "$here/.whl/*.whl" > /dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/vampnet-site "$here"/.whl/*.whl
  export PYTHONPATH=/tmp/vampnet-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$here/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
cd "$here"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"; } 2>&1 | tee "$out/bench.log"

timeout $(( $(left) / 4 )) "$python" -m pytest -q -p no:cacheprovider tests/test_capture.py -k "cuda or static_sampler" \
  2>&1 | tail -n 30 > "$out/cuda_tests.log"
tail -n 3 "$out/cuda_tests.log"

timeout $(( $(left) - 30 )) "$python" benchmarks/bench_gpu.py --modes off,static,graph ${BENCH_ARGS:-} \
  --json "$out/gpu.json" --output "$out/gpu.md" 2>&1 | tee -a "$out/bench.log"

if (( $(left) > 150 )); then
  timeout $(( $(left) - 20 )) "$python" benchmarks/bench_gpu.py --precisions bf16 --modes off,static,compile --reps 2 ${BENCH_ARGS:-} \
    --json "$out/gpu_compile.json" --output "$out/gpu_compile.md" 2>&1 | tee -a "$out/bench.log"
fi
echo "gpu_bench: done in $(( $(date +%s) - start )) s"
