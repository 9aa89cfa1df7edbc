"""Trains emoji-sd: a small Stable Diffusion (AutoencoderKL + UNet2DConditionModel +
CLIPTextModel from scratch, standard CLIP tokenizer) on the 32x32 emoji set of data.py.

Stages (all in one run, fixed seeds): 1. the VAE as an autoencoder, 2. the VAE's latents of
every image, 3. the UNet and text encoder jointly (epsilon prediction, SD's noise schedule,
10% empty captions for classifier-free guidance), 4. save_pretrained as a
StableDiffusionPipeline folder under .cache/emoji-sd/emoji-sd.

Usage: python emoji_sd.py [--vae-minutes M] [--unet-minutes M] [--bench]
Budgets are in wall minutes, turned into step counts from the measured step time so the
learning-rate schedule is fixed before training starts (and logged, for reruns).
"""
import argparse, json, os, random, shutil, sys, time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from common import CACHE, LOGS, ROOT, captions_for, load_data, log, seed_all

OUT = os.path.join(CACHE, "emoji-sd")
TOKENIZER = os.path.join(ROOT, "www", "models", "sd-tiny", "tokenizer")
SEED = 13

VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
           block_out_channels=[32, 64], layers_per_block=1, latent_channels=4, norm_num_groups=16, sample_size=32)
TEXT = dict(vocab_size=49408, hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
            max_position_embeddings=77, hidden_act="gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=0, projection_dim=64)
# Attention only at 8x8 and 4x4: at 16x16 it cost 40% more time per step for little gain at 32 px.
UNET = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=[64, 128, 128],
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            cross_attention_dim=64, attention_head_dim=[4, 8, 8], norm_num_groups=16, use_linear_projection=True)
SCHED = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="epsilon", steps_offset=1)


def tokenize(tok, texts):
    return tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids


def train_vae(x, steps, logf, batch=32):
    seed_all(SEED)
    vae = AutoencoderKL(**VAE)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(SEED)
    per_epoch = max(1, len(x) // batch)
    t0, acc = time.time(), []
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        xb = x[idx]
        post = vae.encode(xb).latent_dist
        rec = vae.decode(post.sample(generator=g)).sample
        # L1 keeps edges crisp, L2 the colours; a small KL keeps the latents near N(0, 1)-ish.
        kl = post.kl().mean() / (4 * 16 * 16)
        loss = F.l1_loss(rec, xb) + F.mse_loss(rec, xb) + 1e-4 * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        acc.append(loss.item())
        if (step + 1) % per_epoch == 0 or step + 1 == steps:
            log(f"vae epoch {(step + 1) / per_epoch:.2f} step {step + 1} loss {np.mean(acc):.4f} kl {kl.item():.2f} {time.time() - t0:.0f}s", logf)
            acc = []
    return vae.eval()


@torch.no_grad()
def encode_all(vae, x):
    means, stds = [], []
    for i in range(0, len(x), 256):
        d = vae.encode(x[i:i + 256]).latent_dist
        means.append(d.mean)
        stds.append(d.std)
    return torch.cat(means), torch.cat(stds)


def train_unet(mean, std, scale, ids, styles, meta, tok, steps, logf, deadline, batch=32):
    seed_all(SEED + 1)
    unet = UNet2DConditionModel(**UNET)
    text = CLIPTextModel(CLIPTextConfig(**TEXT))
    noise_sched = DDPMScheduler(**SCHED, clip_sample=False)
    alphas = noise_sched.alphas_cumprod
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.03)
    # Pre-tokenize every caption variant; a step picks one per image at random.
    variants = [tokenize(tok, captions_for(meta, int(i), int(s))) for i, s in zip(ids, styles)]
    empty = tokenize(tok, [""])[0]
    g = torch.Generator().manual_seed(SEED + 2)
    per_epoch = max(1, len(mean) // batch)
    t0, acc = time.time(), []
    for step in range(steps):
        idx = torch.randint(0, len(mean), (batch,), generator=g)
        lat = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g)) * scale
        pick = torch.rand(batch, generator=g)
        drop = torch.rand(batch, generator=g) < 0.1
        input_ids = torch.stack([empty if drop[k] else variants[i][int(pick[k] * len(variants[i]))] for k, i in enumerate(idx.tolist())])
        t = torch.randint(0, 1000, (batch,), generator=g)
        noise = torch.randn(lat.shape, generator=g)
        noisy = noise_sched.add_noise(lat, noise, t)
        cond = text(input_ids).last_hidden_state
        pred = unet(noisy, t, encoder_hidden_states=cond).sample
        # Min-SNR-5 weighting (epsilon form): less weight on the near-clean steps, faster convergence.
        snr = alphas[t] / (1 - alphas[t])
        w = torch.clamp(snr, max=5.0) / snr
        loss = (w * ((pred - noise) ** 2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        acc.append(loss.item())
        if time.time() > deadline:
            log(f"unet: wall-time limit reached, stopping at step {step + 1} of {steps}", logf)
            break
        if (step + 1) % per_epoch == 0 or step + 1 == steps:
            log(f"unet epoch {(step + 1) / per_epoch:.2f} step {step + 1} loss {np.mean(acc):.4f} lr {sched.get_last_lr()[0]:.2e} {time.time() - t0:.0f}s", logf)
            acc = []
    return unet.eval(), text.eval()


def bench():
    """Seconds per training step of each stage, to size a run to its wall-time budget."""
    x, ids, styles, meta = load_data()
    tok = CLIPTokenizer.from_pretrained(TOKENIZER)
    out = {}
    for name, fn in [("vae", lambda n: train_vae(x, n, sys.stdout)), ]:
        t = time.time(); fn(3); out[name] = (time.time() - t) / 3
    mean = torch.randn(len(x), 4, 16, 16); std = torch.full_like(mean, 0.1)
    t = time.time(); train_unet(mean, std, 1.0, ids, styles, meta, tok, 4, sys.stdout, time.time() + 600); out["unet"] = (time.time() - t) / 4
    n = sum(p.numel() for p in UNet2DConditionModel(**UNET).parameters())
    m = sum(p.numel() for p in CLIPTextModel(CLIPTextConfig(**TEXT)).parameters())
    v = sum(p.numel() for p in AutoencoderKL(**VAE).parameters())
    print(json.dumps(out), f"params unet {n} text {m} vae {v}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vae-steps", type=int, default=500)
    ap.add_argument("--unet-steps", type=int, default=2400)
    # A guard only: the step counts above are sized to finish well inside it.
    ap.add_argument("--max-minutes", type=float, default=62)
    # One thread: on 2 shared cores, two threads spin-waiting on a busy core ran 2-7x slower.
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=OUT, help="where the pipeline folder goes (a smoke run may use another)")
    ap.add_argument("--log", default=os.path.join(LOGS, "emoji-sd.log"))
    ap.add_argument("--bench", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.bench:
        return bench()
    os.makedirs(LOGS, exist_ok=True)
    logf = open(a.log, "w")
    log(f"emoji-sd: torch {torch.__version__}, vae steps {a.vae_steps}, unet steps {a.unet_steps}, seed {SEED}", logf)
    start = time.time()
    x, ids, styles, meta = load_data()
    tok = CLIPTokenizer.from_pretrained(TOKENIZER)
    vae = train_vae(x, a.vae_steps, logf)
    mean, std = encode_all(vae, x)
    # SD's convention: scale the latents to unit variance for the UNet.
    scale = float(1.0 / mean.std())
    vae.register_to_config(scaling_factor=scale)
    with torch.no_grad():
        rec = vae.decode(mean[:512]).sample
    log(f"vae done: latent std {mean.std():.3f} -> scaling_factor {scale:.5f}, recon mse {F.mse_loss(rec, x[:512]).item():.5f}, {time.time() - start:.0f}s", logf)
    unet, text = train_unet(mean, std, scale, ids, styles, meta, tok, a.unet_steps, logf, start + 60 * a.max_minutes)
    # The text encoder is stored in f16: its 49408-row token table is most of the bundle and
    # Easel keeps embeddings unquantized; the half-rounded weights are the model from here on.
    text = text.half()
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                   scheduler=EulerDiscreteScheduler(**SCHED, timestep_spacing="trailing"),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    # The folder's name becomes the converted manifest's name.
    pipe.save_pretrained(os.path.join(a.out, "emoji-sd"))
    # transformers 5 writes only tokenizer.json; ship the standard CLIP files instead, as
    # users' SD repositories carry them (vocab.json, merges.txt, ...).
    tok_dir = os.path.join(a.out, "emoji-sd", "tokenizer")
    shutil.rmtree(tok_dir)
    shutil.copytree(TOKENIZER, tok_dir)
    log(f"saved {os.path.join(a.out, 'emoji-sd')}; total {time.time() - start:.0f}s", logf)


if __name__ == "__main__":
    main()
