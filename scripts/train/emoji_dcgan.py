"""Trains emoji-dcgan: a class- and style-conditional DCGAN generator on the 32x32 emoji set of
data.py, and saves it as an Easel `DCGANGenerator` folder (config.json + model.safetensors).

Generator (DCGAN, Radford et al. 2015): [z (64), class embedding (64), style embedding (16)] as
a 1x1 map -> ConvTranspose 4x4 s1 -> 4x4 -> three ConvTranspose 4x4 s2 p1 -> 32x32, batch norm
and ReLU between, tanh last. The class is the emoji (one of 1906), the style twemoji or noto.
Discriminator: strided convs with spectral norm and a projection head (Miyato & Koyama 2018)
for class and style; hinge loss; the same random translation on real and fake images
(DiffAugment) so the discriminator cannot memorise 3812 pictures too early.
Each (class, style) has exactly one training image, and with the adversarial loss alone the
generator had not learnt to use its class after 20 epochs (nearest-image top-1 0 of 200; log
of that run in logs/emoji-dcgan-gan-only.log). So the generator also gets an L1 term to the
image of the (class, style) it was asked for, weighted ANCHOR (as pix2pix pairs L1 with its
GAN loss): the class decides the picture, z and the GAN loss the details. With that alone
the generator still had not separated the classes after 10 epochs (top-1 0 of 200 again:
1906 free embeddings to memorise), so the class embeddings start from the classes' images:
the first 64 principal components of each class's mean image (16x16 RGB), scaled to unit
variance (as GLO's latent codes start from PCA). The generator then learns one decoder from
codes that already place similar emoji near each other.

Export: an exponential moving average of the generator's weights, its batch-norm statistics
recomputed over 64 batches, then batch norm folded into the transposed convs (inference needs
no norm op), written with the emoji's names as the class labels that prompts are matched to.

Usage: python emoji_dcgan.py [--minutes M | --steps N] [--threads 1] [--bench]
The budget in wall minutes becomes a step count from the measured step time (logged);
the bundled model: --steps 4500.
"""
import argparse, json, os, random, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

import common
from common import CACHE, LOGS, log, seed_all

OUT = os.path.join(CACHE, "emoji-dcgan", "emoji-dcgan")
SEED = 17
Z, CLASS_DIM, STYLE_DIM = 64, 64, 16
CHANNELS = [256, 128, 64]  # generator widths at 4x4, 8x8, 16x16
BATCH = 64
ANCHOR = 10.0  # weight of the L1 term to the asked-for image


class Generator(nn.Module):
    def __init__(self, classes, styles):
        super().__init__()
        self.class_embedding = nn.Embedding(classes, CLASS_DIM)
        self.style_embedding = nn.Embedding(styles, STYLE_DIM)
        widths = [Z + CLASS_DIM + STYLE_DIM] + CHANNELS + [3]
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(len(widths) - 1):
            first = i == 0
            self.convs.append(nn.ConvTranspose2d(widths[i], widths[i + 1], 4, 1 if first else 2, 0 if first else 1))
            if i < len(widths) - 2:
                self.norms.append(nn.BatchNorm2d(widths[i + 1]))

    def forward(self, z, c, s):
        h = torch.cat([z, self.class_embedding(c), self.style_embedding(s)], 1)[:, :, None, None]
        for i, conv in enumerate(self.convs):
            h = conv(h)
            h = F.relu(self.norms[i](h)) if i < len(self.norms) else torch.tanh(h)
        return h


class Discriminator(nn.Module):
    def __init__(self, classes, styles):
        super().__init__()
        sn = nn.utils.spectral_norm
        self.convs = nn.ModuleList([sn(nn.Conv2d(3, 64, 4, 2, 1)), sn(nn.Conv2d(64, 128, 4, 2, 1)), sn(nn.Conv2d(128, 256, 4, 2, 1))])
        self.out = sn(nn.Linear(256, 1))
        self.class_embedding = sn(nn.Embedding(classes, 256))
        self.style_embedding = sn(nn.Embedding(styles, 256))

    def forward(self, x, c, s):
        h = x
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
        h = h.sum((2, 3))
        return self.out(h).squeeze(1) + (h * (self.class_embedding(c) + self.style_embedding(s))).sum(1)


def translate(x, g, shift=4):
    """The same random integer shift (zero padded: white is 1.0 here) for a whole batch pair."""
    dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=g))
    p = F.pad(x, (shift, shift, shift, shift), value=1.0)
    return p[:, :, shift + dy : shift + dy + x.shape[2], shift + dx : shift + dx + x.shape[3]]


def load_data():
    """The data set with ids and styles as tensors (they index embeddings here)."""
    x, ids, styles, meta = common.load_data()
    return x, torch.from_numpy(ids).long(), torch.from_numpy(styles).long(), meta


def pca_codes(x, ids, classes):
    """[classes, CLASS_DIM]: each class's mean image (16x16) on the top principal components,
    each component scaled to unit variance."""
    f = F.avg_pool2d(x, 2).flatten(1)
    means = torch.zeros(classes, f.shape[1]).index_add_(0, ids, f) / torch.bincount(ids, minlength=classes)[:, None].clamp(min=1)
    centred = means - means.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    codes = centred @ v[:CLASS_DIM].T
    return codes / codes.std(0)


def adherence(g_ema, x, ids, styles, n=200):
    """Share of n samples whose nearest training image (16x16 box features) is the class's."""
    gen = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(x), generator=gen)[:n]
    with torch.no_grad():
        fake = g_ema(torch.randn(n, Z, generator=gen), ids[pick], styles[pick])
    feat = lambda t: F.avg_pool2d(t, 2).flatten(1)
    d = torch.cdist(feat(fake), feat(x))
    return (ids[d.argmin(1)] == ids[pick]).float().mean().item()


def step_fn(G, D, opt_g, opt_d, x, ids, styles, g):
    idx = torch.randint(0, len(x), (BATCH,), generator=g)
    real, c, s = x[idx], ids[idx], styles[idx]
    z = torch.randn(BATCH, Z, generator=g)
    fake = G(z, c, s)
    seed = int(torch.randint(0, 2**31, (1,), generator=g))
    aug = lambda t: translate(t, torch.Generator().manual_seed(seed))
    d_loss = F.relu(1 - D(aug(real), c, s)).mean() + F.relu(1 + D(aug(fake.detach()), c, s)).mean()
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    g_loss = -D(aug(fake), c, s).mean() + ANCHOR * F.l1_loss(fake, real)
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    return d_loss.item(), g_loss.item()


def recalibrate(G, x, ids, styles, batches=64):
    """Batch-norm running statistics of the EMA weights: a cumulative average over batches."""
    g = torch.Generator().manual_seed(SEED + 1)
    for m in G.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    G.train()
    with torch.no_grad():
        for _ in range(batches):
            idx = torch.randint(0, len(x), (BATCH,), generator=g)
            G(torch.randn(BATCH, Z, generator=g), ids[idx], styles[idx])
    G.eval()


def export(G, meta, path):
    """BN folded into each transposed conv: w' = w * s (per output channel, axis 1),
    b' = (b - mean) * s + beta with s = gamma / sqrt(var + eps)."""
    tensors = {"class_embedding.weight": G.class_embedding.weight, "style_embedding.weight": G.style_embedding.weight}
    for i, conv in enumerate(G.convs):
        w, b = conv.weight.detach().clone(), conv.bias.detach().clone()
        if i < len(G.norms):
            n = G.norms[i]
            s = n.weight / torch.sqrt(n.running_var + n.eps)
            w = w * s[None, :, None, None]
            b = (b - n.running_mean) * s + n.bias
        tensors[f"blocks.{i}.weight"], tensors[f"blocks.{i}.bias"] = w, b
    os.makedirs(path, exist_ok=True)
    save_file({k: v.detach().contiguous().float() for k, v in tensors.items()}, os.path.join(path, "model.safetensors"))
    write_config(meta, path)


def write_config(meta, path):
    """config.json: the architecture, and each class's emoji, names and keywords in English and
    Chinese (prompts pick a class by these; see Easel's text/labels.rs). bundle.sh rewrites
    it from meta.json."""
    emoji = lambda unified: "".join(chr(int(cp, 16)) for cp in unified.split("-"))
    config = {
        "_class_name": "DCGANGenerator",
        "z_dim": Z,
        "image_size": 32,
        "kernel_size": 4,
        "block_out_channels": CHANNELS + [3],
        "class_embedding_dim": CLASS_DIM,
        "style_embedding_dim": STYLE_DIM,
        "styles": meta["styles"],
        # English names first (the first is what the page says was drawn), then CLDR's Chinese.
        "classes": [{"emoji": emoji(e["unified"]), "names": e["names"] + e.get("names_zh", []), "keywords": e["keywords"] + e.get("keywords_zh", [])}
                    for e in meta["emoji"]],
        "_easel_defaults": {"prompt": "red heart, twemoji style"},
    }
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, separators=(",", ":"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=45)
    # One thread: on 2 shared cores, two threads spin-waiting on a busy core ran 2-7x slower.
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bench", action="store_true")
    # A fixed step count (the budget's estimate swings 3x with a noisy first 20 steps).
    ap.add_argument("--steps", type=int)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    seed_all(SEED)
    x, ids, styles, meta = load_data()
    classes, nstyles = len(meta["emoji"]), len(meta["styles"])
    G, D = Generator(classes, nstyles), Discriminator(classes, nstyles)
    G_ema = Generator(classes, nstyles)
    G_ema.load_state_dict(G.state_dict())
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.0, 0.99))
    g = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    for _ in range(20):
        step_fn(G, D, opt_g, opt_d, x, ids, styles, g)
    per_step = (time.time() - t0) / 20
    steps = a.steps or int(a.minutes * 60 / per_step)
    if a.bench:
        print(f"{per_step:.3f} s/step; {a.minutes} min -> {steps} steps ({steps * BATCH / len(x):.0f} epochs)")
        return
    # Restart from the seed so the run depends only on the step count (logged).
    seed_all(SEED)
    G, D = Generator(classes, nstyles), Discriminator(classes, nstyles)
    with torch.no_grad():
        G.class_embedding.weight.copy_(pca_codes(x, ids, classes))
    G_ema.load_state_dict(G.state_dict())
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.0, 0.99))
    g = torch.Generator().manual_seed(SEED)
    os.makedirs(LOGS, exist_ok=True)
    logf = open(os.path.join(LOGS, "emoji-dcgan.log"), "w")
    log(f"emoji-dcgan: {len(x)} images, {classes} classes x {nstyles} styles; {per_step:.3f} s/step -> {steps} steps of {BATCH} ({a.minutes} min budget), seed {SEED}", logf)
    per_epoch = len(x) // BATCH
    t0, acc = time.time(), []
    stop = os.path.join(os.path.dirname(OUT), "STOP")
    for step in range(steps):
        # The learning rate is constant, so stopping here equals a run of --steps step + 1.
        if os.path.exists(stop):
            os.remove(stop)
            log(f"stopped at step {step} (a STOP file): rerun with --steps {step} to reproduce", logf)
            break
        acc.append(step_fn(G, D, opt_g, opt_d, x, ids, styles, g))
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for pe, p in zip(G_ema.parameters(), G.parameters()):
                pe.lerp_(p, 1 - decay)
            for be, b in zip(G_ema.buffers(), G.buffers()):
                be.copy_(b)
        if (step + 1) % (per_epoch * 5) == 0 or step + 1 == steps:
            d_l, g_l = np.mean(acc, 0)
            acc = []
            G_ema.eval()
            top1 = adherence(G_ema, x, ids, styles)
            log(f"epoch {(step + 1) / per_epoch:.0f} step {step + 1}: d_loss {d_l:.4f} g_loss {g_l:.4f} ema top-1 {top1:.3f} ({time.time() - t0:.0f} s)", logf)
    recalibrate(G_ema, x, ids, styles)
    log(f"after batch-norm recalibration: ema top-1 {adherence(G_ema, x, ids, styles):.3f}", logf)
    export(G_ema, meta, OUT)
    log(f"saved {OUT} in {time.time() - t0:.0f} s", logf)


if __name__ == "__main__":
    main()
