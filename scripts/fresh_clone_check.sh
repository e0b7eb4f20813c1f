#!/usr/bin/env bash
# A new user's first minutes, as a check: clone this repository's committed HEAD into an empty temporary folder
# (nothing beside it), then run the README's two commands there verbatim, in order:
#   1. set up and vamp the example clip with the shipped model (must write vamp.wav),
#   2. set up and run the test suite.
# CI runs exactly this (.ci/run). The second command installs Debian packages, so run it as root or in a container.
# Uncommitted changes are not part of the check: commit first.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# the commands are the README's first two ```bash blocks, one line each
mapfile -t commands < <(awk '/^```bash$/ {inside = 1; next} /^```$/ {inside = 0} inside' "$repo/README.md" | head -n 2)
if [[ ${#commands[@]} -ne 2 || -z ${commands[0]} || -z ${commands[1]} ]]; then
    echo "error: the README's first screen must hold two one-line bash blocks (main command, test command)" >&2
    exit 1
fi

git clone -q "$repo" "$work/vampnet"
cd "$work/vampnet"
echo "fresh clone of $(git rev-parse --short HEAD) in an empty folder: $(ls -A "$work")"

echo "== README main command: ${commands[0]}"
bash -eo pipefail -c "${commands[0]}"
if [[ ! -s vamp.wav ]]; then
    echo "error: the main command wrote no vamp.wav" >&2
    exit 1
fi
echo "main command ok: vamp.wav $(stat -c %s vamp.wav) bytes"

echo "== README test command: ${commands[1]}"
bash -eo pipefail -c "${commands[1]}"
