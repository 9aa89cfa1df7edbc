"""Prompt adherence of a converted model, measured through Easel's own engine (issue 13).

For 100 emoji (a fixed-seed sample of the training set), generates one image per prompt
"<name>, <style> style" with `easel generate --backend cpu` and a fixed seed, then looks up
the nearest training images in a fixed feature space (16x16 RGB on white, L2):
  top-1 / top-5: the prompted emoji (either style) is among the 1 / 5 nearest images;
  category: the nearest image's category is the prompted emoji's category.
Chance rates are what a generator ignoring the prompt would score on average.

Usage: python evaluate.py --model www/models/emoji-sd [--easel target/release/easel]
       [--steps 20] [--guidance 7.5] [--gallery docs/gallery-emoji-sd.png] [--json out.json]
"""
import argparse, json, os, random, subprocess, sys, tempfile

import numpy as np
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, ".cache", "emoji")


def features(rgb_uint8):
    """[N, H, W, 3] uint8 on white -> [N, 768] in [0, 1], by 16x16 box downsampling."""
    out = [np.asarray(Image.fromarray(a).resize((16, 16), Image.BOX), np.float32).reshape(-1) / 255 for a in rgb_uint8]
    return np.stack(out)


def on_white(path):
    im = Image.open(path).convert("RGBA")
    return np.asarray(Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im).convert("RGB"))


def prompts(meta, n=100, seed=0, names=None, chinese=False):
    if names:
        # Chosen emoji (for the page's suggested prompts) instead of the random sample.
        by_name = {e["names"][0]: e["id"] for e in meta["emoji"]}
        ids = [by_name[x] for x in names]
    else:
        ids = random.Random(seed).sample(range(len(meta["emoji"])), n)
    # Alternate the two styles so both are asked for equally.
    if chinese:
        # CLDR's Chinese name in a sentence: "请画一个<name>，<style>风格" ("please draw a <name>, <style> style").
        return [(i, f"请画一个{meta['emoji'][i]['names_zh'][0]}，{meta['styles'][k % 2]}风格") for k, i in enumerate(ids)]
    return [(i, f"{meta['emoji'][i]['names'][0]}, {meta['styles'][k % 2]} style") for k, i in enumerate(ids)]


def gallery(images, captions, path, cols=10, cell=64):
    pad = 26
    rows = (len(images) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * (cell + 8), rows * (cell + pad + 8)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (img, cap) in enumerate(zip(images, captions)):
        x, y = (k % cols) * (cell + 8) + 4, (k // cols) * (cell + pad + 8) + 4
        sheet.paste(Image.fromarray(img).resize((cell, cell), Image.NEAREST), (x, y))
        # Two short lines: the default bitmap font is ~6 px per character.
        words, lines = cap.replace(" style", "").split(), [""]
        for w in words:
            if len(lines[-1]) + len(w) + 1 > 11 and lines[-1]:
                lines.append("")
            lines[-1] = (lines[-1] + " " + w).strip()
        draw.text((x, y + cell + 1), "\n".join(lines[:2]), fill="black", spacing=1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sheet.save(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--easel", default=os.path.join(ROOT, "target", "release", "easel"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--names", help="comma-separated emoji names to ask for instead of the 100-emoji sample")
    ap.add_argument("--chinese", action="store_true", help="prompts from CLDR's Chinese names, in a Chinese sentence")
    ap.add_argument("--gallery")
    ap.add_argument("--json")
    a = ap.parse_args()

    data = np.load(os.path.join(CACHE, "emoji32.npz"))
    meta = json.load(open(os.path.join(CACHE, "meta.json"), encoding="utf-8"))
    train_f, train_ids = features(data["images"]), data["ids"]
    cats = np.array([meta["emoji"][i]["category"] for i in train_ids])
    asked = prompts(meta, a.count, names=a.names.split(",") if a.names else None, chinese=a.chinese)

    images = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (i, prompt) in enumerate(asked):
            out = os.path.join(tmp, f"{k}.png")
            cmd = [a.easel, "generate", "--model", a.model, "--prompt", prompt, "--seed", str(k), "--steps", str(a.steps),
                   "--guidance", str(a.guidance), "--width", "32", "--height", "32", "--backend", "cpu", "--out", out]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            images.append(on_white(out))
    gen_f = features(np.stack(images))

    d = ((gen_f[:, None, :] - train_f[None, :, :]) ** 2).sum(-1)
    order = np.argsort(d, axis=1)
    top1 = np.mean([train_ids[order[k, 0]] == i for k, (i, _) in enumerate(asked)])
    top5 = np.mean([i in train_ids[order[k, :5]] for k, (i, _) in enumerate(asked)])
    cat1 = np.mean([cats[order[k, 0]] == meta["emoji"][i]["category"] for k, (i, _) in enumerate(asked)])
    # Chance: a prompt-blind generator's nearest images are a random draw from the training set.
    n, per = len(train_ids), len(train_ids) / len(meta["emoji"])
    chance1 = per / n
    chance5 = 1 - np.prod([(n - per - j) / (n - j) for j in range(5)])
    chance_cat = np.mean([np.mean(cats == meta["emoji"][i]["category"]) for i, _ in asked])
    result = {"model": a.model, "steps": a.steps, "guidance": a.guidance, "prompts": len(asked),
              "top1": float(top1), "top5": float(top5), "category_top1": float(cat1),
              "chance_top1": float(chance1), "chance_top5": float(chance5), "chance_category": float(chance_cat),
              "hits_top5": [p for k, (i, p) in enumerate(asked) if i in train_ids[order[k, :5]]]}
    print(json.dumps(result, indent=1))
    if a.json:
        json.dump(result, open(a.json, "w"), indent=1)
    if a.gallery:
        gallery(images, [p for _, p in asked], a.gallery)


if __name__ == "__main__":
    sys.exit(main())
