"""diffusers' reference run for the emoji-sd parity test (tests/emoji_native.rs).

The bundled model is q8_0, so the reference must run on the same weights: every tensor is
read back from the converted shards (www/models/emoji-sd, dequantized exactly as Easel does:
f16 scale times int8) and loaded into diffusers' StableDiffusionPipeline. One prompt, one
seed, saved initial latents; the fixture holds only inputs and outputs, not the model.

Usage: python make_parity.py [--model www/models/emoji-sd] [--pipeline .cache/emoji-sd/emoji-sd]
"""
import argparse, json, os, platform

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "emoji-sd-parity")
RUN = "txt2img_euler"
CALL = dict(prompt="red heart, twemoji style", height=32, width=32, num_inference_steps=20, guidance_scale=7.5)


def easel_tensors(model_dir):
    """name -> float32 array, for every tensor of a converted model."""
    m = json.load(open(os.path.join(model_dir, "manifest.json")))
    shards = [open(os.path.join(model_dir, s["file"]), "rb").read() for s in m["shards"]]
    out = {}
    for t in m["tensors"]:
        raw = b"".join(shards[p["shard"]][p["offset"]:p["offset"] + p["length"]] for p in t["parts"])
        kind = t["storage"]
        if kind == "f32":
            v = np.frombuffer(raw, "<f4")
        elif kind == "f16":
            v = np.frombuffer(raw, "<f2").astype(np.float32)
        elif kind == "q8_0":
            blocks = np.frombuffer(raw, np.uint8).reshape(-1, 34)
            scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
            v = (blocks[:, 2:].copy().view(np.int8).astype(np.float32) * scale).reshape(-1)
        else:
            raise SystemExit(f"{t['name']}: storage {kind} not handled")
        out[t["name"]] = v.reshape(t["shape"])
    return m, out


def load_into(pipe, tensors, components=("unet", "vae", "text_encoder")):
    """Every weight of the pipeline's `components` from the converted tensors, all of which
    must be used."""
    used = set()
    for comp in components:
        module = getattr(pipe, comp)
        sd = module.state_dict()
        for key in sd:
            # transformers writes CLIP keys with or without "text_model."; a conversion keeps
            # its source's choice.
            name = next((n for n in (f"{comp}.{key}", f"{comp}.{key.removeprefix('text_model.')}", f"{comp}.text_model.{key}") if n in tensors), None)
            if name is None:
                raise SystemExit(f"{comp}.{key}: not in the converted model")
            assert tuple(tensors[name].shape) == tuple(sd[key].shape), name
            sd[key] = torch.from_numpy(tensors[name].copy())
            used.add(name)
        module.load_state_dict(sd)
    left = set(tensors) - used
    if left:
        raise SystemExit(f"converted tensors not used: {sorted(left)[:5]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "www", "models", "emoji-sd"))
    ap.add_argument("--pipeline", default=os.path.join(ROOT, ".cache", "emoji-sd", "emoji-sd"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    pipe = StableDiffusionPipeline.from_pretrained(a.pipeline, torch_dtype=torch.float32, safety_checker=None)
    manifest, tensors = easel_tensors(a.model)
    load_into(pipe, tensors)

    init = torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(1300))
    seen = {}
    def grab(p, i, t, kw):
        seen["latents"] = kw["latents"]
        return kw
    with torch.no_grad():
        out = pipe(**CALL, latents=init.clone(), output_type="np", callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"])
        final = seen["latents"]
        decoded = pipe.vae.decode(final / pipe.vae.config.scaling_factor).sample
    tensors_out = {f"{RUN}/init_latents": init.numpy(), f"{RUN}/final_latents": final.numpy(), f"{RUN}/decoded_raw": decoded.numpy(),
                   f"{RUN}/image_np": out.images.astype(np.float32)}
    os.makedirs(OUT, exist_ok=True)
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors_out.items()}, os.path.join(OUT, "reference.safetensors"))
    import diffusers, transformers
    meta = {
        "case": "emoji-sd-parity",
        "model": "www/models/emoji-sd",
        "model_content_sha256": manifest["content_sha256"],
        "weights": "every tensor read back from the converted shards (q8_0 dequantized as Easel does), so both sides run identical weights",
        "library_versions": {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
                             "transformers": transformers.__version__, "numpy": np.__version__, "torch_num_threads": 1, "device": "cpu"},
        "runs": [{"name": RUN, "pipeline": "StableDiffusionPipeline",
                  "call": {**{k: v for k, v in CALL.items() if k != "prompt"}, "prompt": [CALL["prompt"]], "negative_prompt": None,
                           "output_type": "np", "latents": f"{RUN}/init_latents"},
                  "scheduler": dict(pipe.scheduler.config), "init_noise_sigma": float(pipe.scheduler.init_noise_sigma),
                  "num_scheduler_steps": CALL["num_inference_steps"],
                  "description": "the bundled model's own scheduler (Euler, trailing), 20 steps, CFG 7.5; init latents torch.randn seed 1300"}],
        "tensors": {f"{RUN}/init_latents": "latents passed as `latents=` (unit variance; the pipeline multiplies by init_noise_sigma)",
                    f"{RUN}/final_latents": "latents after the last scheduler step (before 1/scaling_factor)",
                    f"{RUN}/decoded_raw": "vae.decode(final_latents / scaling_factor).sample, NCHW, not clamped",
                    f"{RUN}/image_np": "pipeline output, NHWC in [0, 1]"},
    }
    json.dump(meta, open(os.path.join(OUT, "reference.json"), "w"), indent=1, default=str)
    print(f"wrote {OUT}: final latents max |x| {final.abs().max():.3f}, image mean {out.images.mean():.3f}")


if __name__ == "__main__":
    main()
