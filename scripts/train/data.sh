#!/bin/sh
# Fetches the emoji packages with npm into .cache/emoji (outside git) and builds the training set.
set -e
cd "$(dirname "$0")/../.."
mkdir -p .cache/emoji
cd .cache/emoji
for p in emoji-datasource-twitter@16.0.0 emoji-datasource-google@16.0.0 emojilib@4.0.3 emojibase-data@17.0.0; do
  name=$(echo "$p" | tr '@' '-')
  if [ ! -d "$name/package" ]; then
    npm pack --silent "$p" >/dev/null
    mkdir -p "$name" && tar xzf "$name.tgz" -C "$name"
  fi
done
cd ../..
.venv/bin/python scripts/train/data.py
