#!/bin/sh
# One command per model: scripts/train/train.sh emoji-sd | emoji-dcgan | emoji-amused
# Runs at low priority so that builds on the same machine come first. Never run in .ci/run.
set -e
cd "$(dirname "$0")/../.."
case "$1" in
  emoji-sd) shift; exec nice -n 10 .venv/bin/python scripts/train/emoji_sd.py "$@" ;;
  emoji-dcgan) shift; exec nice -n 10 .venv/bin/python scripts/train/emoji_dcgan.py "$@" ;;
  emoji-amused) shift; exec nice -n 10 .venv/bin/python scripts/train/emoji_amused.py "$@" ;;
  *) echo "usage: $0 emoji-sd|emoji-dcgan|emoji-amused [--minutes M ...]" >&2; exit 2 ;;
esac
