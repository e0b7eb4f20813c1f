#!/usr/bin/env bash
# The one command a lent GPU machine runs: train the small model's coarse (and/or coarse-to-fine) transformer
# from a token pack for a fixed wall-clock budget, exporting the best model into OUT every few minutes.
#
#   scripts/gpu_train.sh PACK OUT BUDGET_S [coarse|c2f|both] [INIT_DIR|none]
#
# PACK      a token pack (vampnet pack-tokens); 4 codebooks serve coarse, c2f needs 8
# OUT       export folder ($OUT on the device machine); OUT/<kind>/ receives model.safetensors.part-NN (the best
#           model, cut into 15 MiB parts: rejoin with cat), info.json (step, metrics, sha256 of the whole model)
#           and log.csv (every step's loss, validation rows); replaced as a whole, never a growing series
# BUDGET_S  wall seconds this script may take, all told; it stops the training in time to export and return
# INIT_DIR  folder with coarse.safetensors / c2f.safetensors to continue from (full fine-tuning; default: the
#           shipped weights); `none` trains from scratch
# Environment: DEVICE (cuda when torch sees a GPU, else cpu), EXPORT_EVERY (seconds, 120), VAL_EVERY (steps,
# 2000), MARGIN (seconds kept for start-up, the last validation and the export, 60), RUN_DIR (where full
# checkpoints with optimiser state go, /tmp/vampnet-gpu-run), SETS (more key=value run options, space-separated),
# PYTHON (python3). Wheels in .whl/ are installed first (the device's python lacks soundfile, soxr, pyloudnorm;
# training from a pack needs none of them). Training is `vampnet train` with configs/small/<kind>.yaml and bf16:
# its time limit, best/latest checkpoints and validation, nothing else. docs/TRAINING.md has the device procedure.
set -euo pipefail
usage="usage: gpu_train.sh PACK OUT BUDGET_S [coarse|c2f|both] [INIT_DIR|none]"
pack=${1:?$usage}
out=${2:?$usage}
budget=${3:?$usage}
kinds=${4:-coarse}
here=$(cd "$(dirname "$0")/.." && pwd)
init_dir=${5:-$here/src/vampnet/weights/small}
start=$(date +%s)
python=${PYTHON:-python3}
margin=${MARGIN:-60}
export_every=${EXPORT_EVERY:-120}
run_dir=${RUN_DIR:-/tmp/vampnet-gpu-run}

case $kinds in
  coarse|c2f) kinds=($kinds) ;;
  both) kinds=(coarse c2f) ;;
  *) echo "error: the kind must be coarse, c2f or both, got '$kinds'" >&2; exit 2 ;;
esac
[[ -f $pack ]] || { echo "error: token pack not found: $pack" >&2; exit 2; }
[[ $budget =~ ^[0-9]+$ ]] && (( budget > margin + 30 )) || { echo "error: BUDGET_S must be an integer above $((margin + 30))" >&2; exit 2; }

if compgen -G "$here/.whl/*.whl" > /dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/vampnet-site "$here"/.whl/*.whl
  export PYTHONPATH=/tmp/vampnet-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$here/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
device=${DEVICE:-$("$python" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
mkdir -p "$out" "$run_dir"

# the model a run would ship now: its best validation checkpoint, else its latest
pick() { if [[ -f $run_dir/$1/best/model.safetensors ]]; then echo best; elif [[ -f $run_dir/$1/latest/model.safetensors ]]; then echo latest; fi; }

export_kind() {  # copy one run's model into OUT/<kind>/ in parts, swapping the whole folder in at once
  local kind=$1 which new
  which=$(pick "$kind")
  [[ -n $which ]] || return 0
  new=$out/.$kind.new
  rm -rf "$new" && mkdir -p "$new"
  cp "$run_dir/$kind/$which/model.safetensors" "$new/model.safetensors" || { rm -rf "$new"; return 0; }
  cp "$run_dir/$kind/$which/trainer.json" "$new/trainer.json" 2>/dev/null || true
  [[ -f $run_dir/$kind/log.csv ]] && cp "$run_dir/$kind/log.csv" "$new/log.csv"
  "$python" - "$new" "$which" <<'EOF'
import hashlib, json, sys
from pathlib import Path
folder, which = Path(sys.argv[1]), sys.argv[2]
model = (folder / "model.safetensors").read_bytes()
state = json.loads((folder / "trainer.json").read_text()) if (folder / "trainer.json").exists() else {}
info = {"checkpoint": which, "step": state.get("step"), "best_val_loss": state.get("best_val_loss"),
        "metrics": state.get("metrics"), "bytes": len(model), "sha256": hashlib.sha256(model).hexdigest(),
        "join": "cat model.safetensors.part-* > model.safetensors"}
(folder / "info.json").write_text(json.dumps(info, indent=2, default=float))
(folder / "trainer.json").unlink(missing_ok=True)
EOF
  split -b 15M -d -a 2 "$new/model.safetensors" "$new/model.safetensors.part-"
  rm "$new/model.safetensors"
  rm -rf "$out/.$kind.old"
  [[ -d $out/$kind ]] && mv "$out/$kind" "$out/.$kind.old"
  mv "$new" "$out/$kind"
  rm -rf "$out/.$kind.old"
  echo "exported $kind ($which, step $("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["step"])' "$out/$kind/info.json")) after $(( $(date +%s) - start )) s"
}

elapsed=$(( $(date +%s) - start ))
limit=$(( budget - elapsed - margin ))
hard=$(( budget - elapsed - 15 ))
pids=()
for kind in "${kinds[@]}"; do
  init=()
  if [[ $init_dir != none ]]; then
    [[ -f $init_dir/$kind.safetensors ]] || { echo "error: no $kind.safetensors in $init_dir" >&2; exit 2; }
    init=(--set "init=$init_dir/$kind.safetensors")
  fi
  sets=()
  for s in ${SETS:-}; do sets+=(--set "$s"); done
  echo "== $kind on $device: time limit ${limit}s, hard stop ${hard}s, pack $pack"
  timeout -s INT "$hard" "$python" -m vampnet.cli train "$kind" --config "$here/configs/small/$kind.yaml" --resume -q \
    --set "dataset=$pack" --set "output=$run_dir/$kind" --set "device=$device" --set "time_limit_s=$limit" \
    --set "val_every=${VAL_EVERY:-2000}" --set bf16=true "${init[@]}" "${sets[@]}" &
  pids+=($!)
done

running() { for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
last_export=$(date +%s)
while running; do
  sleep 2
  if (( $(date +%s) - last_export >= export_every )); then
    for kind in "${kinds[@]}"; do export_kind "$kind"; done
    last_export=$(date +%s)
  fi
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
for kind in "${kinds[@]}"; do export_kind "$kind"; done
echo "== done in $(( $(date +%s) - start )) s (training exit status $status)"
exit $status
