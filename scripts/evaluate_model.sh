#!/usr/bin/env bash
# Every number MODEL_CARD.md and docs/evaluation.md report for one model, measured on a corpus's validation split.
#
#   scripts/evaluate_model.sh MODELS CORPUS OUT [EXCERPTS]
#
# MODELS: a model folder (codec/coarse/c2f safetensors) or `small` (the shipped model); CORPUS: the folder
# `vampnet prepare-corpus` made; OUT: where results go (created; reruns resume the experiments); EXCERPTS: excerpts
# per paper experiment (default 12). Writes OUT/metrics.json (benchmarks/model_metrics.py: codec vs Opus,
# masked-token accuracy and its curve, the periodic-prompt ladder and the rhythm-and-key table on 24 vamped
# excerpts x RHYTHM_SEEDS seeds (default 3: issue 26's counts, pooled), Fréchet distances) and OUT/<experiment>/ for the
# three experiments of `vampnet eval` (audio, results.md, CSVs, plots) and OUT/spectrograms.png (one validation excerpt:
# input, codec round trip, Opus, vamps with P = 8 and 32). Compare two models afterwards with
#   python benchmarks/model_metrics.py --compare A/metrics.json B/metrics.json --labels A B
# (scripts/compare_models.sh runs this script for both models and then the comparison)
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 MODELS CORPUS OUT [EXCERPTS]" >&2
  exit 2
fi
MODELS=$1 CORPUS=$2 OUT=$3 EXCERPTS=${4:-12}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
mkdir -p "$OUT/val"
# the validation files (split_of(path, 0.05) == "val", the rule every training stage used), linked into one folder
"$PY" - "$CORPUS" "$OUT/val" <<'PYEOF'
import sys
from pathlib import Path
from vampnet.audio import find_audio
from vampnet.splits import split_of
corpus, out = Path(sys.argv[1]), Path(sys.argv[2])
for path, rel in find_audio([corpus]):
    link = out / str(rel).replace("/", "__")
    if split_of(rel, 0.05) == "val" and not link.exists():
        link.symlink_to(Path(path).resolve())
PYEOF
"$PY" "$HERE/benchmarks/model_metrics.py" "$CORPUS" --models "$MODELS" --excerpts-per-file 3 --vamp-excerpts 24 --no-timing \
  --rhythm-seeds "${RHYTHM_SEEDS:-3}" --json "$OUT/metrics.json" --figure "$OUT/spectrograms.png" > "$OUT/metrics.md"
for e in sampling-steps gen-compression musical-sampling; do
  vampnet eval run --data "$OUT/val" --experiment "$e" -o "$OUT/$e" --models "$MODELS" --max-excerpts "$EXCERPTS" -q
  vampnet eval score "$OUT/$e" > /dev/null
done
echo "results: $OUT/metrics.md and $OUT/*/results.md"
