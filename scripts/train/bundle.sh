#!/bin/sh
# Converts a trained emoji model into the bundled one, exactly as a user's model would be
# (easel convert, q8_0), then rebuilds the parity fixture that the native test reads.
# Usage: scripts/train/bundle.sh [emoji-sd|emoji-dcgan|emoji-amused]   (default emoji-sd)
# EASEL: the release CLI (default target/release/easel).
set -e
cd "$(dirname "$0")/../.."
EASEL=${EASEL:-target/release/easel}
MODEL=${1:-emoji-sd}
P=.cache/$MODEL/$MODEL  # the folder name becomes the manifest name

# The settings the page starts with: model_index.json's private `_easel_defaults` (diffusers
# ignores it): suggest STEPS GUIDANCE, with a prompt every emoji model draws well.
suggest() {
  .venv/bin/python - "$P/model_index.json" "$1" "$2" <<'PY'
import json, sys
path, steps, guidance = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
index = json.load(open(path))
index["_easel_defaults"] = {"steps": steps, "guidance": guidance, "prompt": "red heart, twemoji style"}
json.dump(index, open(path, "w"), indent=2)
PY
}
case "$MODEL" in
  emoji-sd)
    # Runs trained before emoji_sd.py copied the standard CLIP tokenizer files get them here.
    if [ ! -f "$P/tokenizer/vocab.json" ]; then
      rm -rf "$P/tokenizer" && cp -r www/models/sd-tiny/tokenizer "$P/tokenizer"
    fi
    # Guidance 4 (7.5 oversaturates) and a prompt the model draws well.
    suggest 20 4.0
    PARITY=make_parity.py ;;
  emoji-dcgan)
    # config.json's classes (emoji, names, keywords) from the data set's meta.json.
    ROOT=$(pwd)
    (cd scripts/train && ../../.venv/bin/python -c "import json, emoji_dcgan as m; m.write_config(json.load(open('$ROOT/.cache/emoji/meta.json', encoding='utf-8')), '$ROOT/$P')")
    PARITY=make_dcgan_parity.py ;;
  emoji-amused)
    # transformers 5 saves only tokenizer.json; the converter carries the standard CLIP files.
    cp www/models/sd-tiny/tokenizer/vocab.json www/models/sd-tiny/tokenizer/merges.txt "$P/tokenizer/" 2>/dev/null || true
    # Guidance 4 scores best (scripts/train/logs/eval-emoji-amused-g*.json); 12 steps as aMUSEd.
    suggest 12 4.0
    PARITY=make_amused_parity.py ;;
  *) echo "usage: $0 [emoji-sd|emoji-dcgan|emoji-amused]" >&2; exit 2 ;;
esac
rm -rf "www/models/$MODEL.new" && mkdir -p "www/models/$MODEL.new"
cp "www/models/$MODEL/MODEL_CARD.md" "www/models/$MODEL.new/" 2>/dev/null || true
"$EASEL" convert "$P" --out "www/models/$MODEL.new" --quant q8_0
rm -rf "www/models/$MODEL" && mv "www/models/$MODEL.new" "www/models/$MODEL"
(cd scripts/train && ../../.venv/bin/python "$PARITY")
