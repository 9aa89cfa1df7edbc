"""What every emoji training script shares: paths, seeding, the log, the data set."""
import json, os, random

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, ".cache")
LOGS = os.path.join(ROOT, "scripts", "train", "logs")


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def log(msg, file):
    print(msg, flush=True)
    file.write(msg + "\n")
    file.flush()


def load_data(unit=False):
    """Images [N, 3, 32, 32] in [-1, 1] (or [0, 1] with `unit`), emoji ids, styles, meta.json."""
    d = np.load(os.path.join(CACHE, "emoji", "emoji32.npz"))
    meta = json.load(open(os.path.join(CACHE, "emoji", "meta.json"), encoding="utf-8"))
    x = torch.from_numpy(d["images"]).permute(0, 3, 1, 2).float()
    x = x / 255.0 if unit else x / 127.5 - 1.0
    return x, d["ids"], d["styles"], meta


def captions_for(meta, emoji_id, style):
    """Every caption a training image may get: each name variant with and without the style."""
    names = meta["emoji"][emoji_id]["names"]
    style_name = meta["styles"][style]
    return [f"{n}, {style_name} style" for n in names] + names
