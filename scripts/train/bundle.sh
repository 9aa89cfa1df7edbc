#!/bin/sh
# Converts the trained emoji-sd pipeline into the bundled model, exactly as a user's model
# would be (easel convert, q8_0), then rebuilds the parity fixture that the native test reads.
# EASEL: the release CLI (default target/release/easel).
set -e
cd "$(dirname "$0")/../.."
EASEL=${EASEL:-target/release/easel}
P=.cache/emoji-sd/emoji-sd  # the folder name becomes the manifest name
# Runs trained before emoji_sd.py copied the standard CLIP tokenizer files get them here.
if [ ! -f "$P/tokenizer/vocab.json" ]; then
  rm -rf "$P/tokenizer" && cp -r www/models/sd-tiny/tokenizer "$P/tokenizer"
fi
"$EASEL" convert "$P" --out www/models/emoji-sd --quant q8_0
.venv/bin/python scripts/train/make_parity.py
