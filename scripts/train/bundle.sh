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
# The settings the page starts with (model_index.json's private `_easel_defaults`, which
# diffusers ignores): guidance 4 (7.5 oversaturates) and a prompt the model draws well.
.venv/bin/python - "$P/model_index.json" <<'PY'
import json, sys
path = sys.argv[1]
index = json.load(open(path))
index["_easel_defaults"] = {"steps": 20, "guidance": 4.0, "prompt": "red heart, twemoji style"}
json.dump(index, open(path, "w"), indent=2)
PY
rm -rf www/models/emoji-sd.new && mkdir -p www/models/emoji-sd.new
cp www/models/emoji-sd/MODEL_CARD.md www/models/emoji-sd.new/ 2>/dev/null || true
"$EASEL" convert "$P" --out www/models/emoji-sd.new --quant q8_0
rm -rf www/models/emoji-sd && mv www/models/emoji-sd.new www/models/emoji-sd
.venv/bin/python scripts/train/make_parity.py
