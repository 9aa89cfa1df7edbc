"""diffusers' reference run for the emoji-amused parity test (tests/emoji_native.rs).

The bundled model is q8_0, so the reference runs on the same weights: every tensor is read
back from the converted shards (www/models/emoji-amused, dequantized as Easel does) into
diffusers' AmusedPipeline. aMUSEd samples with torch.multinomial and Gumbel noise; as in the
shared amused-tiny fixture, both are replaced during the run by inverse-CDF sampling and
Gumbel noise from saved uniforms (run/multinomial_u_<step>, run/gumbel_u_<step>), which
Easel reads as its draws: the final tokens must then agree exactly.

Usage: python make_amused_parity.py [--model www/models/emoji-amused] [--pipeline .cache/emoji-amused/emoji-amused]
"""
import argparse, json, os, platform

import numpy as np
import torch
import diffusers.schedulers.scheduling_amused as sa
from diffusers import AmusedPipeline
from safetensors.numpy import save_file

from make_parity import easel_tensors, load_into

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "emoji-amused-parity")
CALL = dict(prompt="red heart, twemoji style", height=32, width=32, num_inference_steps=12, guidance_scale=4.0, output_type="np")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "www", "models", "emoji-amused"))
    ap.add_argument("--pipeline", default=os.path.join(ROOT, ".cache", "emoji-amused", "emoji-amused"))
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args()
    torch.set_num_threads(1)
    manifest, tensors = easel_tensors(a.model)
    pipe = AmusedPipeline.from_pretrained(a.pipeline)
    load_into(pipe, tensors, ("transformer", "vqvae", "text_encoder"))
    saved, calls = {}, {"multinomial": 0, "gumbel": 0}

    # One multinomial draw per step, one Gumbel draw per step but the last: call k is step k.
    def multinomial(probs, n, generator=None):
        k = calls["multinomial"]
        calls["multinomial"] += 1
        u = torch.rand(probs.shape[0], generator=torch.Generator().manual_seed(9300 + k))
        saved[f"run/multinomial_u_{k}"] = u.numpy()
        idx = (probs.cumsum(-1) <= u[:, None]).sum(-1).clamp(max=probs.shape[-1] - 1)
        return idx[:, None]

    def gumbel(t, generator=None):
        k = calls["gumbel"]
        calls["gumbel"] += 1
        u = torch.rand(t.shape, generator=torch.Generator().manual_seed(9400 + k))
        saved[f"run/gumbel_u_{k}"] = u.numpy()
        return -torch.log((-torch.log(u.clamp(1e-20))).clamp(1e-20))

    sa.torch.multinomial = multinomial
    sa.gumbel_noise = gumbel
    tokens = pipe(**{**CALL, "output_type": "latent"}).images
    tensors_out = {k: v for k, v in saved.items()}
    tensors_out["run/final_tokens"] = tokens.numpy().astype(np.int64)
    os.makedirs(a.out, exist_ok=True)
    save_file(tensors_out, os.path.join(a.out, "reference.safetensors"))
    meta = {
        "case": "emoji-amused-parity",
        "model": os.path.relpath(a.model, ROOT),
        "model_content_sha256": manifest["content_sha256"],
        "weights": "every tensor read back from the converted shards (q8_0 dequantized as Easel does)",
        "library_versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__, "torch_num_threads": 1},
        "runs": [{"name": "run", "pipeline": "AmusedPipeline", "call": {k: v for k, v in CALL.items() if k != "output_type"}}],
        "determinism": "torch.multinomial replaced by inverse-CDF sampling with run/multinomial_u_<step>, gumbel_noise by Gumbel noise from run/gumbel_u_<step> (as in the shared amused-tiny fixture)",
    }
    json.dump(meta, open(os.path.join(a.out, "reference.json"), "w"), indent=1)
    print(f"wrote {a.out}: tokens {tuple(tokens.shape)}, {len(saved)} draws")


if __name__ == "__main__":
    main()
