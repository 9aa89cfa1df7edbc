//! The full Stable Diffusion pipelines in headless Chrome on the GPU backend (WebGPU on
//! SwiftShader) against diffusers: every run of the sd1-tiny, sd2-tiny and sd-inpaint-tiny
//! fixtures. Final latents within 1e-3 relative error. Also the TAESD decoder (taesd-tiny)
//! on WebGPU and on the wasm CPU backend against its numpy reference, within 1e-4. And the
//! sd1-tiny-lora runs (scales 1 and 0.6, then the base) with the LoRA applied, rescaled and
//! removed in place, as the page does, on WebGPU and the wasm CPU.

#![cfg(target_arch = "wasm32")]

#[path = "sd/lora_runs.rs"]
mod lora_runs;
#[path = "sd/refs.rs"]
mod refs;
#[path = "sd/taesd.rs"]
mod taesd;

use std::collections::{BTreeMap, HashMap};

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::Session;
use easel::ops::WeightStore;
use easel::pipelines::{generate, StableDiffusion};
use easel::weights::lora::Lora;
use easel::weights::safetensors;
use refs::{fixture_request, parse_references, rel_err};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// A diffusers fixture folder's files, embedded in the test binary.
struct Fixture {
    components: [(&'static str, &'static str, &'static [u8]); 3],
    scheduler: &'static str,
    vocab: &'static [u8],
    tokenizer_config: &'static [u8],
    reference: &'static [u8],
    reference_json: &'static str,
}

macro_rules! fixture {
    ($case:literal) => {
        Fixture {
            components: [
                (
                    "text_encoder",
                    include_str!(concat!("fixtures/", $case, "/text_encoder/config.json")),
                    include_bytes!(concat!("fixtures/", $case, "/text_encoder/model.safetensors")),
                ),
                ("unet", include_str!(concat!("fixtures/", $case, "/unet/config.json")), include_bytes!(concat!("fixtures/", $case, "/unet/diffusion_pytorch_model.safetensors"))),
                ("vae", include_str!(concat!("fixtures/", $case, "/vae/config.json")), include_bytes!(concat!("fixtures/", $case, "/vae/diffusion_pytorch_model.safetensors"))),
            ],
            scheduler: include_str!(concat!("fixtures/", $case, "/scheduler/scheduler_config.json")),
            vocab: include_bytes!(concat!("fixtures/", $case, "/tokenizer/vocab.json")),
            tokenizer_config: include_bytes!(concat!("fixtures/", $case, "/tokenizer/tokenizer_config.json")),
            reference: include_bytes!(concat!("fixtures/", $case, "/reference.safetensors")),
            reference_json: include_str!(concat!("fixtures/", $case, "/reference.json")),
        }
    };
}

/// The fixture as the engine holds a loaded model: f32 weights named `component.tensor`,
/// the configs, the tokenizer files.
fn load(f: &Fixture) -> (WeightStore, BTreeMap<String, serde_json::Value>, HashMap<String, Vec<u8>>) {
    let mut store = WeightStore::new();
    let mut configs = BTreeMap::new();
    for (component, config, bytes) in f.components {
        configs.insert(component.to_string(), serde_json::from_str(config).unwrap());
        let header = safetensors::parse(component, bytes).unwrap();
        for (name, info) in &header.tensors {
            let raw = &bytes[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
            store.insert_f32(&format!("{component}.{name}"), &info.shape, &safetensors::to_f32(component, name, info, raw).unwrap()).unwrap();
        }
    }
    configs.insert("scheduler".into(), serde_json::from_str(f.scheduler).unwrap());
    let files = HashMap::from([("tokenizer/vocab.json".to_string(), f.vocab.to_vec()), ("tokenizer/tokenizer_config.json".to_string(), f.tokenizer_config.to_vec())]);
    (store, configs, files)
}

async fn check(case: &str, f: Fixture) {
    let ctx = GpuContext::new(&GpuOptions::default()).await.expect("a WebGPU adapter (see webdriver.json)");
    let (store, configs, files) = load(&f);
    let mut sd = StableDiffusion::new(Session::gpu(ctx, &store).unwrap(), &configs, &files).unwrap();
    let refs = parse_references(case, f.reference);
    let meta: serde_json::Value = serde_json::from_str(f.reference_json).unwrap();
    for run in meta["runs"].as_array().unwrap() {
        let name = run["name"].as_str().unwrap();
        let req = fixture_request(run, &refs);
        let out = generate(&mut sd, &req, &mut |_| true).await.unwrap_or_else(|e| panic!("{case} {name}: {e}"));
        let latents = rel_err(&out.latents, &refs[&format!("{name}/final_latents")].values);
        let decoded = rel_err(&out.decoded, &refs[&format!("{name}/decoded_raw")].values);
        web_sys::console::log_1(&format!("{case} {name} [webgpu]: final latents relative error {latents:.2e}, decoded image {decoded:.2e}").into());
        assert!(latents <= 1e-3, "{case} {name}: final latents relative error {latents:e}");
    }
}

#[wasm_bindgen_test]
async fn sd2_tiny_pipelines_match_diffusers_on_webgpu() {
    check("sd2-tiny", fixture!("sd2-tiny")).await;
}

#[wasm_bindgen_test]
async fn inpainting_pipeline_matches_diffusers_on_webgpu() {
    check("sd-inpaint-tiny", fixture!("sd-inpaint-tiny")).await;
}

#[wasm_bindgen_test]
async fn sd1_tiny_pipelines_match_diffusers_on_webgpu() {
    // SD 1.x: quick_gelu CLIP, conv projections; Euler, DDIM, DPM++ 2M, PLMS, LCM, img2img.
    check("sd1-tiny", fixture!("sd1-tiny")).await;
}

#[wasm_bindgen_test]
async fn taesd_decoder_matches_the_numpy_reference_on_webgpu_and_wasm_cpu() {
    let weights = taesd::taesd_store(include_bytes!("fixtures/taesd-tiny/diffusion_pytorch_model.safetensors"));
    let ctx = GpuContext::new(&GpuOptions::default()).await.expect("a WebGPU adapter (see webdriver.json)");
    for mut session in [Session::gpu(ctx, &weights).unwrap(), Session::cpu(weights.clone())] {
        let kind = session.kind();
        let errors = taesd::taesd_errors(&mut session, include_str!("fixtures/taesd-tiny/config.json"), include_bytes!("fixtures/taesd-tiny/reference.safetensors")).await;
        for (case, e) in errors {
            web_sys::console::log_1(&format!("taesd-tiny {case} [{kind}, wasm]: relative error {e:.2e}").into());
            assert!(e <= taesd::TAESD_TOL, "taesd-tiny {case} on {kind}: relative error {e:e}");
        }
    }
}

#[wasm_bindgen_test]
async fn sd1_tiny_lora_runs_match_diffusers_in_place_on_webgpu_and_wasm_cpu() {
    let (store, configs, files) = load(&fixture!("sd1-tiny"));
    let refs = parse_references("sd1-tiny-lora", include_bytes!("fixtures/sd1-tiny-lora/reference.safetensors"));
    let meta: serde_json::Value = serde_json::from_str(include_str!("fixtures/sd1-tiny-lora/reference.json")).unwrap();
    let lora = Lora::parse("pytorch_lora_weights.safetensors", include_bytes!("fixtures/sd1-tiny-lora/pytorch_lora_weights.safetensors")).unwrap();
    let ctx = GpuContext::new(&GpuOptions::default()).await.expect("a WebGPU adapter (see webdriver.json)");
    for session in [Session::gpu(ctx, &store).unwrap(), Session::cpu(store.clone())] {
        let kind = session.kind();
        let mut sd = StableDiffusion::new(session, &configs, &files).unwrap();
        for (name, e) in lora_runs::errors(&mut sd, &lora, &meta, &refs).await {
            web_sys::console::log_1(&format!("sd1-tiny-lora {name} [{kind}, wasm, applied in place]: final latents relative error {e:.2e}").into());
            assert!(e <= 1e-3, "sd1-tiny-lora {name} on {kind}: final latents relative error {e:e}");
        }
    }
}
