"""PyTorch CPU beside `easel bench unet`: one UNet step of the SD-Turbo shape (SD 2.1-base's
UNet2DConditionModel, random weights) at 256x256, batch 1, on N threads; prints the median
of the timed steps. Run it in the same session as Easel's bench:

    .venv/bin/python scripts/bench/torch_unet.py [--size 256] [--threads 2] [--runs 3]
    cargo run --release -- bench unet --size 256 --backend cpu --runs 3
"""
import argparse
import json
import os
import time

import torch
from diffusers import UNet2DConditionModel

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "..", "..", "tests", "fixtures", "configs", "stable-diffusion-2-1-base", "unet", "config.json")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with open(CONFIG) as f:
        config = json.load(f)
    unet = UNet2DConditionModel.from_config(config).eval()
    h = a.size // 8
    x = torch.randn(1, 4, h, h)
    ctx = torch.randn(1, 77, config["cross_attention_dim"])
    t = torch.tensor([999])
    times = []
    with torch.inference_mode():
        for i in range(a.runs + 1):
            t0 = time.perf_counter()
            unet(x, t, encoder_hidden_states=ctx)
            if i > 0:
                times.append(time.perf_counter() - t0)
    times.sort()
    print(f"PyTorch {torch.__version__} CPU, {a.threads} threads: UNet step at {a.size}x{a.size}: {1000 * times[len(times) // 2]:.0f} ms (median of {a.runs})")


if __name__ == "__main__":
    main()
