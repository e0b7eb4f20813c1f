#!/usr/bin/env bash
# The shipped model's long CPU training (v3), one resumable command: start it first thing whenever work on the
# model begins, leave it running in the background, and start it again in the next session (or after a crash or
# a kill): every stage continues from its latest checkpoint, or from the shipped weights when it has none.
#
#   nohup scripts/train_background.sh [DATA_DIR] > DATA_DIR/train.log 2>&1 &
#
# DATA_DIR (default ~/vampnet-data) holds corpus/ (built here when missing) and runs/v3/: codec/, tokens/, coarse/,
# c2f/. The stages, in the order issue 26 asks (a new codec means new tokens and retrained transformers, so the long
# runs happen once):
#   1. corpus   `vampnet prepare-corpus` (skipped when DATA_DIR/corpus/sources.json exists; needs root for --install)
#   2. codec    `vampnet train codec`, from the shipped codec, until CODEC_STEPS steps (bf16 where the CPU has it)
#   3. tokens   `vampnet tokenize` of the whole corpus with the new codec (resumable)
#   4. coarse   `vampnet train coarse` (configs/small/coarse_v3.yaml, a larger architecture than the shipped one),
#               until COARSE_STEPS: from runs/v3/coarse_pre when that run exists (the same architecture trained on
#               the v2 tokens while the codec stage ran; see docs/TRAINING.md), else from scratch
#   5. c2f      `vampnet train c2f`, from the shipped coarse-to-fine model, without its dropout, until C2F_STEPS
#               (with PARALLEL_STAGES=1 stages 4 and 5 run at the same time, each pinned to a core of its own)
# Every stage trains compiled (torch.compile) where a C++ compiler exists; the model folder runs/v3/model gets a
# card.json from scripts/model_card.py (steps, hours seen, starting points).
# The transformers' init models were trained on tokens of the shipped codec, which the new one was fine-tuned from:
# they take the new codec's codebook vectors (init_new_codec) and learn its tokens from there.
# A stage whose run has reached its steps is skipped; the script then goes on to the next. Each stage runs as one
# process that saves its `latest` checkpoint every SAVE_MINUTES minutes (`save_every_s`), so a kill loses at most
# that much; a process that dies (say, killed for memory) is started again from there (RETRY_S later, default 60).
# Settings (environment): VAMPNET_THREADS (default 1: one core stays free for the person at the machine; idle
# threads sleep, see vampnet.threads), CODEC_STEPS (1500), COARSE_STEPS (12000), C2F_STEPS (6000), CODEC_BATCH (16),
# SAVE_MINUTES (10), MUSIC21_PIECES (0: renders are slow on a CPU), PARALLEL_STAGES (empty: one stage after the
# other), VAMPNET (the command, default `vampnet`).
set -euo pipefail
data=${1:-$HOME/vampnet-data}
here=$(cd "$(dirname "$0")/.." && pwd)
vampnet=${VAMPNET:-vampnet}
export VAMPNET_THREADS=${VAMPNET_THREADS:-1}
# 1500 codec steps: its round trip kept the tempo of 19, 23 and 21 of 24 validation excerpts at steps 500, 637 and
# 816 (the shipped codec 18), and at 8-15 s a step on one core it cannot take the CPU time the transformers need more
codec_steps=${CODEC_STEPS:-1500}
# 12000 coarse steps (0.7 s each compiled) take about as long as 6000 c2f steps (1.5 s), so parallel stages end together
coarse_steps=${COARSE_STEPS:-12000}
c2f_steps=${C2F_STEPS:-6000}
codec_batch=${CODEC_BATCH:-16}
save_s=$(( ${SAVE_MINUTES:-10} * 60 ))
run=$data/runs/v3
shipped=$here/src/vampnet/weights/small
mkdir -p "$run"
bf16=$(python3 -c "print('true' if any(f in open('/proc/cpuinfo').read().split() for f in ('amx_bf16', 'avx512_bf16')) else 'false')")
# training passes compiled (torch.compile needs a C++ compiler): codec 1.5x, coarse 1.6x, c2f 1.5x a step
compile=false
if command -v g++ >/dev/null || command -v c++ >/dev/null; then compile=true; fi
say() { echo "== $(date -u +%FT%TZ) $*"; }

# the step a run folder's latest checkpoint reached (0 when it has none)
latest_step() { python3 - "$1" <<'EOF'
import json, sys, pathlib
meta = pathlib.Path(sys.argv[1]) / "latest" / "trainer.json"
print(json.loads(meta.read_text()).get("step", 0) if meta.is_file() else 0)
EOF
}
# the best validation checkpoint of a run (latest when it had no validation yet)
pick() { if [[ -f $1/best/model.safetensors ]]; then echo "$1/best/model.safetensors"; else echo "$1/latest/model.safetensors"; fi; }

# train one stage until it reaches its steps, in one process that saves `latest` every SAVE_MINUTES; a process
# that stops early (killed for memory beside other jobs, a crash) is started again from its latest checkpoint,
# and the stage gives up only after three tries in a row that made no progress
train_stage() {  # kind output steps init config [--set ...]   (init "": from scratch)
  local kind=$1 out=$2 steps=$3 init=$4 config=$5; shift 5
  local failures=0 before rc
  while (( $(latest_step "$out") < steps )); do
    local resume=() start=()
    [[ -n $init ]] && start=(--set "init=$init")
    if [[ -f $out/latest/trainer.json ]]; then resume=(--resume); start=(); fi
    before=$(latest_step "$out")
    say "$kind: step $before of $steps"
    rc=0
    $vampnet train "$kind" --config "$config" "${resume[@]}" -q "${start[@]}" --set "output=$out" \
      --set "max_steps=$steps" --set "save_every_s=$save_s" --set "bf16=$bf16" "$@" || rc=$?
    if (( rc != 0 )); then
      if (( $(latest_step "$out") > before )); then failures=0; else failures=$((failures + 1)); fi
      if (( failures >= 3 )); then say "$kind: stopped three times in a row without progress (exit $rc)"; exit 1; fi
      say "$kind: the run stopped (exit $rc); going on from its latest checkpoint in ${RETRY_S:-60} s"
      sleep "${RETRY_S:-60}"
    fi
  done
  say "$kind: done ($(latest_step "$out") steps)"
}

if [[ ! -f $data/corpus/sources.json ]]; then
  say "corpus"
  install=(); [[ $(id -u) == 0 ]] && install=(--install)
  $vampnet prepare-corpus "$data/corpus" --music21-pieces "${MUSIC21_PIECES:-0}" -q "${install[@]}"
fi

train_stage codec "$run/codec" "$codec_steps" "$shipped/codec.safetensors" "$here/configs/small/codec.yaml" \
  --set "audio=$data/corpus" --set "batch_size=$codec_batch" --set "num_workers=0" --set "val_every=500" \
  --set "compile=$compile"

say "tokens"
$vampnet tokenize "$data/corpus" -o "$run/tokens" --codec "$(pick "$run/codec")" -q

coarse_init=""
[[ -f $run/coarse_pre/latest/model.safetensors ]] && coarse_init=$(pick "$run/coarse_pre")
coarse_stage() {
  train_stage coarse "$run/coarse" "$coarse_steps" "$coarse_init" "$here/configs/small/coarse_v3.yaml" \
    --set "dataset=$run/tokens" --set "init_new_codec=true" --set "compile=$compile"
}
# without the shipped c2f's dropout: 0.1 cost a third of an eager CPU step and more compiled (inductor's random
# numbers; 3.4 s eager with it, 1.5 s compiled without), and 32 hours of tokens need less regularising than 2.9
c2f_stage() {
  train_stage c2f "$run/c2f" "$c2f_steps" "$shipped/c2f.safetensors" "$here/configs/small/c2f.yaml" \
    --set "dataset=$run/tokens" --set "init_new_codec=true" --set "compile=$compile" --set "model.dropout=0.0"
}
# PARALLEL_STAGES=1: the two transformers train at the same time, each pinned to a core of its own where taskset
# exists (both cores busy: for a machine nobody is working at); otherwise one after the other
pin() { if command -v taskset >/dev/null && (( $(nproc) > $1 )); then taskset -p -c "$1" "$BASHPID" >/dev/null; fi; }
if [[ -n ${PARALLEL_STAGES:-} ]]; then
  ( pin 0; coarse_stage ) & coarse_job=$!
  ( pin 1; c2f_stage ) & c2f_job=$!
  rc=0
  wait "$coarse_job" || rc=$?
  wait "$c2f_job" || rc=$?
  if (( rc != 0 )); then say "a transformer stage failed (exit $rc)"; exit "$rc"; fi
else
  coarse_stage
  c2f_stage
fi

mkdir -p "$run/model"
cp "$(pick "$run/codec")" "$run/model/codec.safetensors"
cp "$(pick "$run/coarse")" "$run/model/coarse.safetensors"
cp "$(pick "$run/c2f")" "$run/model/c2f.safetensors"
# the card (steps, hours, what each part started from) is written by the Python that runs vampnet (it reads YAML)
py=python3
first=$(command -v "${vampnet%% *}" || true)
if [[ -n $first && -x $(dirname "$first")/python ]]; then py=$(dirname "$first")/python; fi
"$py" "$here/scripts/model_card.py" "$run" "$run/model" --version "v3 $(date -u +%F)"
say "model folder: $run/model (compare it with the shipped one: scripts/evaluate_model.sh)"
