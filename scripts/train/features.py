"""Writes the emoji training set's features for the page test of issue 13.

tests/e2e/emoji.test.mjs checks that the page's first Generate draws the prompted emoji:
the canvas's nearest training image (16x16 RGB on white, L2, the feature space of
evaluate.py) must be the prompted one. The test cannot read the training set (it is built
from npm packages into .cache/), so this script stores what it needs, small:
  tests/fixtures/emoji-sd/features.bin.gz  N x 16 x 16 x 3 uint8 (box-downsampled), gzip
  tests/fixtures/emoji-sd/features.json    per row: the emoji's first name and its style

Usage (after scripts/train/data.sh): .venv/bin/python scripts/train/features.py
"""
import gzip, json, os

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, ".cache", "emoji")
OUT = os.path.join(ROOT, "tests", "fixtures", "emoji-sd")


def main():
    data = np.load(os.path.join(CACHE, "emoji32.npz"))
    meta = json.load(open(os.path.join(CACHE, "meta.json")))
    small = np.stack([np.asarray(Image.fromarray(a).resize((16, 16), Image.BOX), np.uint8) for a in data["images"]])
    os.makedirs(OUT, exist_ok=True)
    # mtime=0: the same bytes on every run.
    with open(os.path.join(OUT, "features.bin.gz"), "wb") as f:
        f.write(gzip.compress(small.tobytes(), mtime=0))
    rows = [{"name": meta["emoji"][i]["names"][0], "style": meta["styles"][s]} for i, s in zip(data["ids"].tolist(), data["styles"].tolist())]
    json.dump({"size": 16, "rows": rows}, open(os.path.join(OUT, "features.json"), "w"), ensure_ascii=False, separators=(",", ":"))
    print(f"{len(rows)} training images -> {OUT}")


if __name__ == "__main__":
    main()
