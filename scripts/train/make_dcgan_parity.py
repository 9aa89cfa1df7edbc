"""PyTorch's reference run for the emoji-dcgan parity test (tests/emoji_native.rs).

The bundled model is q8_0, so the reference runs on the same weights: every tensor is read
back from the converted shards (www/models/emoji-dcgan, dequantized as Easel does) and run
through torch's `F.conv_transpose2d` / `relu` / `tanh` in the generator's layer order. The
class and style ids come from the same prompt lookup the engine does (checked by the test).
Saved: z (the starting noise), class and style ids, and the images in [-1, 1].

Usage: python make_dcgan_parity.py [--model www/models/emoji-dcgan]
"""
import argparse, json, os, platform

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

from make_parity import easel_tensors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "emoji-dcgan-parity")
RUNS = [("red_heart", "red heart, twemoji style", 2, 1), ("grinning_noto", "grinning face, noto style", 1, 2)]


def generate(t, cfg, z, cls, style):
    h = torch.cat([z, t["class_embedding.weight"][cls], t["style_embedding.weight"][style]], 1)[:, :, None, None]
    last = len(cfg["block_out_channels"]) - 1
    for i in range(last + 1):
        stride, pad = (1, 0) if i == 0 else (2, 1)
        h = F.conv_transpose2d(h, t[f"blocks.{i}.weight"], t[f"blocks.{i}.bias"], stride=stride, padding=pad)
        h = torch.tanh(h) if i == last else F.relu(h)
    return h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "www", "models", "emoji-dcgan"))
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args()
    torch.set_num_threads(1)
    manifest, arrays = easel_tensors(a.model)
    t = {k.removeprefix("generator."): torch.from_numpy(v.copy()) for k, v in arrays.items()}
    cfg = manifest["configs"]["generator"]
    by_name = {n: i for i, c in enumerate(cfg["classes"]) for n in c["names"][:1]}
    tensors, runs = {}, []
    for name, prompt, batch, seed in RUNS:
        cls = by_name[prompt.split(",")[0]]
        style = cfg["styles"].index(prompt.split(", ")[1].removesuffix(" style"))
        z = torch.randn(batch, cfg["z_dim"], generator=torch.Generator().manual_seed(seed))
        ids = torch.full((batch,), cls, dtype=torch.long)
        sts = torch.full((batch,), style, dtype=torch.long)
        with torch.no_grad():
            img = generate(t, cfg, z, ids, sts)
        tensors[f"{name}/z"] = z.numpy()
        tensors[f"{name}/images"] = img.numpy()
        runs.append({"name": name, "prompt": prompt, "batch": batch, "class": cls, "style": style})
    os.makedirs(a.out, exist_ok=True)
    save_file(tensors, os.path.join(a.out, "reference.safetensors"))
    meta = {
        "case": "emoji-dcgan-parity",
        "model": os.path.relpath(a.model, ROOT),
        "model_content_sha256": manifest["content_sha256"],
        "weights": "every tensor read back from the converted shards (q8_0 dequantized as Easel does)",
        "reference": "torch.nn.functional.conv_transpose2d / relu / tanh in the generator's layer order",
        "library_versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__, "torch_num_threads": 1},
        "runs": runs,
    }
    json.dump(meta, open(os.path.join(a.out, "reference.json"), "w"), indent=1)
    print(f"wrote {a.out}: {[r['name'] for r in runs]}")


if __name__ == "__main__":
    main()
