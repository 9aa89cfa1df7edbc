#!/bin/sh
# One command per model: scripts/train/train.sh emoji-sd
# Runs at low priority so that builds on the same machine come first. Never run in .ci/run.
set -e
cd "$(dirname "$0")/../.."
case "$1" in
  emoji-sd) shift; exec nice -n 10 .venv/bin/python scripts/train/emoji_sd.py "$@" ;;
  *) echo "usage: $0 emoji-sd [--unet-steps N ...]" >&2; exit 2 ;;
esac
