#!/usr/bin/env bash
# Retrain vampnet's shipped small model from a folder of audio in one command:
#   scripts/train_small_model.sh AUDIO_DIR RUN_DIR [DEVICE] [CODEC_SECONDS] [TRANSFORMER_SECONDS]
# e.g. `vampnet prepare-corpus corpus --install && scripts/train_small_model.sh corpus runs/small cuda 900 600`.
# Stages: codec (configs/small/codec.yaml) -> tokens -> coarse and coarse-to-fine (configs/small/*.yaml, side by
# side on a GPU) -> RUN_DIR/model, a model folder that `vampnet vamp --models RUN_DIR/model` and
# `Pipeline.from_pretrained(RUN_DIR/model)` load. Each stage resumes from its `latest` checkpoint when rerun.
set -euo pipefail
audio_dir=${1:?usage: train_small_model.sh AUDIO_DIR RUN_DIR [DEVICE] [CODEC_SECONDS] [TRANSFORMER_SECONDS]}
run=${2:?usage: train_small_model.sh AUDIO_DIR RUN_DIR [DEVICE] [CODEC_SECONDS] [TRANSFORMER_SECONDS]}
device=${3:-cpu}
codec_s=${4:-0}
transformer_s=${5:-0}
here=$(cd "$(dirname "$0")/.." && pwd)
vampnet=${VAMPNET:-vampnet}
mkdir -p "$run"
# the best validation checkpoint of a run (latest when it had no validation files)
pick() { if [[ -f $1/best/model.safetensors ]]; then echo "$1/best/model.safetensors"; else echo "$1/latest/model.safetensors"; fi; }

echo "== codec ($device, time limit ${codec_s}s)"
$vampnet train codec --config "$here/configs/small/codec.yaml" --resume -q \
  --set "audio=$audio_dir" --set "output=$run/codec" --set "device=$device" --set "time_limit_s=$codec_s"

echo "== tokens"
$vampnet tokenize "$audio_dir" -o "$run/tokens" --codec "$(pick "$run/codec")" --device "$device" \
  --batch-size 16 -q

echo "== coarse and coarse-to-fine ($device, time limit ${transformer_s}s each)"
common=(--resume -q --set "dataset=$run/tokens" --set "device=$device" --set "time_limit_s=$transformer_s")
if [[ $device == cuda* ]]; then
  $vampnet train coarse --config "$here/configs/small/coarse.yaml" --set "output=$run/coarse" "${common[@]}" &
  coarse_pid=$!
  $vampnet train c2f --config "$here/configs/small/c2f.yaml" --set "output=$run/c2f" "${common[@]}"
  wait $coarse_pid
else
  $vampnet train coarse --config "$here/configs/small/coarse.yaml" --set "output=$run/coarse" "${common[@]}"
  $vampnet train c2f --config "$here/configs/small/c2f.yaml" --set "output=$run/c2f" "${common[@]}"
fi

mkdir -p "$run/model"
cp "$(pick "$run/codec")" "$run/model/codec.safetensors"
cp "$(pick "$run/coarse")" "$run/model/coarse.safetensors"
cp "$(pick "$run/c2f")" "$run/model/c2f.safetensors"
echo "== model folder: $run/model"
