#!/usr/bin/env bash
# Two models side by side on a corpus's validation split: every number of MODEL_CARD.md for each
# (scripts/evaluate_model.sh, resumable), then one comparison with issue 26's acceptance points and what each
# model's card says of its training (steps, hours of audio seen, what each part started from).
#
#   scripts/compare_models.sh BASE CANDIDATE CORPUS OUT [LABEL_BASE LABEL_CANDIDATE]
#
# BASE, CANDIDATE: model folders or `small` (the shipped model); e.g. `small ~/vampnet-data/runs/v3/model`.
# Writes OUT/LABEL/ for each model and OUT/comparison.md, OUT/accuracy_curve.png.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 BASE CANDIDATE CORPUS OUT [LABEL_BASE LABEL_CANDIDATE]" >&2
  exit 2
fi
BASE=$1 CANDIDATE=$2 CORPUS=$3 OUT=$4 A=${5:-base} B=${6:-candidate}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
mkdir -p "$OUT"
for pair in "$A=$BASE" "$B=$CANDIDATE"; do
  label=${pair%%=*} models=${pair#*=}
  [ -f "$OUT/$label/metrics.json" ] || "$HERE/scripts/evaluate_model.sh" "$models" "$CORPUS" "$OUT/$label"
done
"$PY" "$HERE/benchmarks/model_metrics.py" --compare "$OUT/$A/metrics.json" "$OUT/$B/metrics.json" --labels "$A" "$B" \
  --curve-figure "$OUT/accuracy_curve.png" > "$OUT/comparison.md"
echo "comparison: $OUT/comparison.md"
