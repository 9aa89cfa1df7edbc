"""Builds the emoji training set for issue 13 from the npm packages (Twemoji, Noto, emojilib,
and emojibase-data's Chinese names and tags, from Unicode CLDR, for prompts in Chinese).

Output: .cache/emoji/emoji32.npz with
  images   uint8 [N, 32, 32, 3]  composited on white (the page draws on white too)
  ids      int32 [N]             index of the emoji (same id in both styles)
  styles   int32 [N]             0 = twemoji, 1 = noto
  meta.json alongside: per emoji id its unified code, name, category, name variants and
  keywords, and its Chinese name and tags (names_zh, keywords_zh; empty where CLDR has none).
"""
import collections, json, os, sys
import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, ".cache", "emoji")
SETS = [("twitter", "twemoji"), ("google", "noto")]
SIZE = 32

# The licenses we rely on: reading the package's files, so a changed license stops the build.
LICENSE_CHECKS = {
    "emoji-datasource-twitter-16.0.0": ("README.md", "Creative Commons Attribution 4.0"),
    "emoji-datasource-google-16.0.0": ("README.md", "Apache License 2.0"),
    "emojilib-4.0.3": ("LICENSE", "MIT License"),
    "emojibase-data-17.0.0": ("LICENSE", "MIT License"),
}


def pkg(name):
    return os.path.join(CACHE, name, "package")


def check_licenses():
    for name, (file, needle) in LICENSE_CHECKS.items():
        text = open(os.path.join(pkg(name), file), encoding="utf-8").read()
        if needle not in text:
            sys.exit(f"{name}: '{needle}' not found in {file}; check the terms before training")
        print(f"license ok: {name}: {needle}")


def char_of(unified):
    return "".join(chr(int(h, 16)) for h in unified.split("-"))


def spaced(s):
    return s.replace("_", " ").replace("-", " ").strip().lower()


def main():
    check_licenses()
    lib = json.load(open(os.path.join(pkg("emojilib-4.0.3"), "dist", "emoji-en-US.json"), encoding="utf-8"))
    # Both data sources list the same emoji; take the list once, keep those drawn in both sets.
    emoji = json.load(open(os.path.join(pkg("emoji-datasource-twitter-16.0.0"), "emoji.json"), encoding="utf-8"))
    emoji = [e for e in emoji if e["has_img_twitter"] and e["has_img_google"] and e["category"] != "Component"]
    emoji.sort(key=lambda e: e["sort_order"])

    # Chinese names by code point sequence without U+FE0F (emoji-datasource writes "2764-FE0F",
    # emojibase "2764").
    bare = lambda code: "-".join(c for c in code.upper().split("-") if c != "FE0F")
    zh = {bare(z["hexcode"]): z for z in json.load(open(os.path.join(pkg("emojibase-data-17.0.0"), "zh", "data.json"), encoding="utf-8"))}

    meta, images, ids, styles = [], [], [], []
    for i, e in enumerate(emoji):
        keys = lib.get(char_of(e["unified"])) or lib.get(char_of(e["non_qualified"] or e["unified"])) or []
        names = []
        # emojilib's first keyword is the CLDR short name ("red_heart"): the natural prompt.
        for n in ([keys[0]] if keys else []) + [e["name"] or "", e["short_name"]]:
            n = spaced(n)
            if n and n not in names:
                names.append(n)
        z = zh.get(bare(e["unified"]), {})
        meta.append({"id": i, "unified": e["unified"], "image": e["image"], "category": e["category"], "names": names, "keywords": [spaced(k) for k in keys[1:6]],
                     "names_zh": [z["label"]] if z.get("label") else [], "keywords_zh": z.get("tags", [])[:5]})
        for s, (folder, _) in enumerate(SETS):
            path = os.path.join(pkg(f"emoji-datasource-{folder}-16.0.0"), "img", folder, "64", e["image"])
            rgba = Image.open(path).convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgb = Image.alpha_composite(white, rgba).convert("RGB").resize((SIZE, SIZE), Image.BOX)
            images.append(np.asarray(rgb, dtype=np.uint8))
            ids.append(i)
            styles.append(s)

    np.savez_compressed(os.path.join(CACHE, f"emoji{SIZE}.npz"), images=np.stack(images), ids=np.array(ids, np.int32), styles=np.array(styles, np.int32))
    json.dump({"styles": [s for _, s in SETS], "emoji": meta}, open(os.path.join(CACHE, "meta.json"), "w"), ensure_ascii=False, indent=0)
    print(f"{len(emoji)} emoji x {len(SETS)} styles = {len(images)} images of {SIZE}x{SIZE}")
    for cat, n in sorted(collections.Counter(e["category"] for e in emoji).items()):
        print(f"  {cat}: {n} per style")
    print("example captions:", [m["names"] for m in meta[:3]])
    print(f"Chinese names: {sum(1 for m in meta if m['names_zh'])} of {len(meta)} emoji")


if __name__ == "__main__":
    main()
