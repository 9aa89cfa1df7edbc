//! Shared by the SD fidelity tests: the fixture models (diffusers folders converted in a
//! temp dir, the way `easel convert` does) and their diffusers reference tensors (refs.rs,
//! shared with the browser suite).

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use easel::ops::{StorageType, WeightStore};
use easel::weights::convert::{convert, ConvertOptions};
use easel::weights::folder::load_folder;
use easel::weights::manifest::Manifest;

#[path = "refs.rs"]
mod refs;
pub use refs::*;
#[allow(dead_code)] // used by the LoRA tests only
pub mod lora_runs;

/// The Stable Diffusion pipeline of the model in `dir` (loaded as `quant`), on the GPU
/// (lavapipe without one) or the CPU backend.
#[allow(dead_code)]
pub fn sd_pipeline(dir: &Path, quant: StorageType, gpu: bool) -> easel::pipelines::StableDiffusion {
    sd_pipeline_with(dir, quant, gpu.then(easel::gpu::GpuOptions::default))
}

/// `sd_pipeline` on the GPU opened with `gpu`, or on the CPU.
pub fn sd_pipeline_with(dir: &Path, quant: StorageType, gpu: Option<easel::gpu::GpuOptions>) -> easel::pipelines::StableDiffusion {
    use easel::gpu::GpuContext;
    use easel::models::Session;
    let model = easel::pipelines::native::load_model_dir(dir, quant).unwrap();
    let session = if let Some(options) = gpu {
        let ctx = pollster::block_on(GpuContext::new(&options)).expect("a Vulkan adapter (mesa-vulkan-drivers)");
        Session::gpu(ctx, &model.weights).unwrap()
    } else {
        Session::cpu(model.weights)
    };
    easel::pipelines::StableDiffusion::new(session, &model.configs, &model.files).unwrap()
}

pub fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(case)
}

/// A fixture converted to Easel's format at `quant`, and loaded back.
pub fn converted(case: &str, quant: StorageType) -> (Manifest, WeightStore, PathBuf) {
    // Unique per call: the tests of a binary run in parallel threads.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = std::env::temp_dir().join(format!("easel-test-{case}-{quant:?}-{}-{call}", std::process::id()));
    convert(&fixture(case), &out, &ConvertOptions { quant, shard_bytes: 32 << 20 }).expect("fixture converts");
    let (m, s) = load_folder(&out).expect("converted fixture loads");
    (m, s, out)
}

/// Every tensor of a fixture's `reference.safetensors`.
pub fn references(case: &str) -> HashMap<String, Ref> {
    let path = fixture(case).join("reference.safetensors");
    parse_references(&path.display().to_string(), &std::fs::read(&path).expect("reference.safetensors"))
}

/// The sdxl-tiny fixture as a complete diffusers repository (in a temp folder): the
/// fixture keeps no vocab.json / merges.txt of its own, they are sd2-tiny's (the same CLIP
/// vocabulary, byte for byte).
pub fn sdxl_repo() -> PathBuf {
    static REPO: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    REPO.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("easel-sdxl-tiny-{}", std::process::id()));
        copy_dir(&fixture("sdxl-tiny"), &out);
        for tok in ["tokenizer", "tokenizer_2"] {
            for f in ["vocab.json", "merges.txt"] {
                std::fs::copy(fixture("sd2-tiny").join("tokenizer").join(f), out.join(tok).join(f)).unwrap();
            }
        }
        out
    })
    .clone()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
