"""Trains emoji-amused: a small aMUSEd (VQModel + UVit2DModel + CLIPTextModelWithProjection
from scratch, standard CLIP tokenizer, AmusedScheduler) on the 32x32 emoji set of data.py.

Stages (one run, fixed seeds): 1. the VQModel as an autoencoder on images in [0, 1] (aMUSEd's
pipeline neither normalizes inputs nor un-normalizes outputs), L1 + MSE + the quantizer's
codebook/commitment loss, with unused codes re-seeded from encoder outputs; 2. every image's
8x8 token grid; 3. the transformer and text encoder jointly as MaskGIT: a cosine-scheduled
share of tokens replaced by the mask token, cross-entropy on the masked ones, the text
encoder's penultimate hidden states and projected pooled output as the pipeline feeds them,
micro-conditioning [32, 32, 0, 0, 6], 10% empty captions for guidance; 4. save_pretrained as an
AmusedPipeline folder under .cache/emoji-amused/emoji-amused.

Usage: python emoji_amused.py [--vq-minutes M | --vq-steps N] [--transformer-minutes M |
       --transformer-steps N] [--threads 1] [--bench]
Budgets in wall minutes become step counts from the measured step time (logged).
"""
import argparse, json, math, os, random, shutil, time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AmusedPipeline, AmusedScheduler, UVit2DModel, VQModel
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

from common import CACHE, LOGS, ROOT, captions_for, load_data, log, seed_all

OUT = os.path.join(CACHE, "emoji-amused", "emoji-amused")
TOKENIZER = os.path.join(ROOT, "www", "models", "sd-tiny", "tokenizer")
SEED = 19
CODES = 256

VQ = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
          block_out_channels=[32, 64, 64], layers_per_block=1, latent_channels=16, num_vq_embeddings=CODES, norm_num_groups=16,
          sample_size=32, mid_block_add_attention=False, lookup_from_codebook=True, force_upcast=False)
TEXT = dict(vocab_size=49408, hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
            max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, projection_dim=64)
UVIT = dict(hidden_size=128, use_bias=False, cond_embed_dim=64, micro_cond_encode_dim=16, micro_cond_embed_dim=80, encoder_hidden_size=64,
            vocab_size=CODES + 1, codebook_size=CODES, in_channels=64, block_out_channels=128, num_res_blocks=1, downsample=False,
            upsample=False, block_num_heads=4, num_hidden_layers=4, num_attention_heads=4, intermediate_size=384, sample_size=8)
MICRO = [32.0, 32.0, 0.0, 0.0, 6.0]


def vq_step(vq, opt, x, g, batch=32):
    idx = torch.randint(0, len(x), (batch,), generator=g)
    xb = x[idx]
    h = vq.encode(xb).latents
    quant, commit, _ = vq.quantize(h)
    rec = vq.decoder(vq.post_quant_conv(quant), quant if vq.config.norm_type == "spatial" else None)
    loss = F.l1_loss(rec, xb) + F.mse_loss(rec, xb) + commit.mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item(), h.detach()


def reseed_dead_codes(vq, recent, counts):
    """Codes no image used since the last check take random recent encoder outputs."""
    dead = (counts == 0).nonzero().flatten()
    if len(dead) and len(recent):
        pool = torch.cat(recent).permute(0, 2, 3, 1).reshape(-1, recent[0].shape[1])
        pick = torch.randint(0, len(pool), (len(dead),))
        with torch.no_grad():
            vq.quantize.embedding.weight[dead] = pool[pick]
    return len(dead)


def train_vq(x, steps, logf):
    seed_all(SEED)
    vq = VQModel(**VQ)
    opt = torch.optim.AdamW(vq.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(SEED)
    t0, acc, recent, counts = time.time(), [], [], torch.zeros(CODES)
    for step in range(steps):
        loss, h = vq_step(vq, opt, x, g)
        sched.step()
        acc.append(loss)
        with torch.no_grad():
            _, _, (_, _, idx) = vq.quantize(h)
            counts += torch.bincount(idx.flatten(), minlength=CODES).float()
        recent = (recent + [h])[-8:]
        if (step + 1) % 200 == 0 or step + 1 == steps:
            used = int((counts > 0).sum())
            reseeded = reseed_dead_codes(vq, recent, counts) if step + 1 < steps * 0.8 else 0
            counts.zero_()
            log(f"vq step {step + 1}/{steps}: loss {np.mean(acc):.4f}, codes used {used}/{CODES}, re-seeded {reseeded} ({time.time() - t0:.0f} s)", logf)
            acc = []
    return vq


@torch.no_grad()
def encode_all(vq, x):
    vq.eval()
    out = []
    for i in range(0, len(x), 256):
        _, _, (_, _, idx) = vq.quantize(vq.encode(x[i:i + 256]).latents)
        out.append(idx.reshape(-1, 8, 8))
    rec = vq.decode(torch.cat(out)[:256].reshape(-1), force_not_quantize=True, shape=(256, 8, 8, VQ["latent_channels"])).sample.clip(0, 1)
    return torch.cat(out), F.l1_loss(rec, x[:256]).item()


def encode_text(te, ids):
    out = te(ids, output_hidden_states=True)
    return out.hidden_states[-2], out.text_embeds


def transformer_step(model, te, opt, tokens, ids, styles, meta, tok, g, batch=64):
    idx = torch.randint(0, len(tokens), (batch,), generator=g)
    caps = []
    for i in idx.tolist():
        options = captions_for(meta, int(ids[i]), int(styles[i]))
        caps.append("" if torch.rand(1, generator=g).item() < 0.1 else options[int(torch.randint(0, len(options), (1,), generator=g))])
    input_ids = tok(caps, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    ehs, pooled = encode_text(te, input_ids)
    target = tokens[idx]
    # MaskGIT: mask ratio cos(pi/2 * u), u ~ U(0, 1), at least one token per image.
    ratio = torch.cos(math.pi / 2 * torch.rand(batch, generator=g))
    n = (ratio * 64).clamp(min=1).long()
    scores = torch.rand(batch, 64, generator=g)
    mask = scores.argsort(1).argsort(1) < n[:, None]
    mask = mask.reshape(batch, 8, 8)
    inp = torch.where(mask, torch.full_like(target, CODES), target)
    micro = torch.tensor(MICRO).expand(batch, -1)
    logits = model(inp, encoder_hidden_states=ehs, pooled_text_emb=pooled, micro_conds=micro)
    loss = F.cross_entropy(logits.permute(0, 2, 3, 1)[mask], target[mask])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(te.parameters()), 1.0)
    opt.step()
    return loss.item()


def make_transformer():
    seed_all(SEED + 1)
    te = CLIPTextModelWithProjection(CLIPTextConfig(**TEXT))
    model = UVit2DModel(**UVIT)
    return model, te


def bench(x, meta, tok):
    g = torch.Generator().manual_seed(0)
    vq = VQModel(**VQ)
    opt = torch.optim.AdamW(vq.parameters(), lr=1e-3)
    t0 = time.time()
    for _ in range(5):
        vq_step(vq, opt, x, g)
    vq_s = (time.time() - t0) / 5
    model, te = make_transformer()
    opt = torch.optim.AdamW(list(model.parameters()) + list(te.parameters()), lr=5e-4)
    tokens = torch.randint(0, CODES, (len(x), 8, 8))
    d = np.load(os.path.join(CACHE, "emoji", "emoji32.npz"))
    t0 = time.time()
    for _ in range(5):
        transformer_step(model, te, opt, tokens, d["ids"], d["styles"], meta, tok, g)
    tr_s = (time.time() - t0) / 5
    return vq_s, tr_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vq-minutes", type=float, default=12)
    ap.add_argument("--transformer-minutes", type=float, default=35)
    # One thread: on 2 shared cores, two threads spin-waiting on a busy core ran 2-7x slower.
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bench", action="store_true")
    # Fixed step counts (the budgets' estimates swing 2-3x on a shared machine); the bundled
    # model: --vq-steps 900 --transformer-steps 1500.
    ap.add_argument("--vq-steps", type=int)
    ap.add_argument("--transformer-steps", type=int)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    x, ids, styles, meta = load_data(unit=True)
    tok = CLIPTokenizer.from_pretrained(TOKENIZER)
    vq_s, tr_s = bench(x, meta, tok)
    vq_steps = a.vq_steps or int(a.vq_minutes * 60 / vq_s)
    tr_steps = a.transformer_steps or int(a.transformer_minutes * 60 / tr_s)
    print(f"{vq_s:.3f} s per VQ step -> {vq_steps}; {tr_s:.3f} s per transformer step -> {tr_steps}")
    if a.bench:
        return
    os.makedirs(LOGS, exist_ok=True)
    logf = open(os.path.join(LOGS, "emoji-amused.log"), "w")
    log(f"emoji-amused: {len(x)} images; VQ {vq_steps} steps ({vq_s:.3f} s each), transformer {tr_steps} steps ({tr_s:.3f} s each), seed {SEED}", logf)
    vq = train_vq(x, vq_steps, logf)
    tokens, l1 = encode_all(vq, x)
    log(f"tokens: {tokens.shape[0]} grids, {len(tokens.unique())} codes in use, reconstruction L1 {l1:.4f}", logf)
    model, te = make_transformer()
    params = list(model.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-4, total_steps=tr_steps, pct_start=0.05)
    g = torch.Generator().manual_seed(SEED + 2)
    t0, acc = time.time(), []
    for step in range(tr_steps):
        acc.append(transformer_step(model, te, opt, tokens, ids, styles, meta, tok, g))
        sched.step()
        if (step + 1) % 300 == 0 or step + 1 == tr_steps:
            log(f"transformer step {step + 1}/{tr_steps}: loss {np.mean(acc):.4f} ({time.time() - t0:.0f} s)", logf)
            acc = []
    scheduler = AmusedScheduler(mask_token_id=CODES, masking_schedule="cosine")
    pipe = AmusedPipeline(vqvae=vq.eval(), tokenizer=tok, text_encoder=te.eval(), transformer=model.eval(), scheduler=scheduler)
    shutil.rmtree(OUT, ignore_errors=True)
    pipe.save_pretrained(OUT)
    log(f"saved {OUT}", logf)


if __name__ == "__main__":
    main()
