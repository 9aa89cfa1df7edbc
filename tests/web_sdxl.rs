//! SDXL in headless Chrome against diffusers (the sdxl-tiny fixture): prompt and pooled
//! embeddings of both text encoders, then every pipeline run (Turbo 1-step, CFG with and
//! without a negative prompt) on WebGPU (SwiftShader) and on the wasm CPU backend. Final
//! latents within 1e-3 relative error, as natively (tests/sdxl_native.rs). And an SDXL LoRA
//! in kohya's names (sdxl-tiny-lora: sgm UNet blocks, both text encoders) applied, rescaled
//! and removed in place, on both backends, against diffusers.

#![cfg(target_arch = "wasm32")]

#[path = "sd/lora_runs.rs"]
mod lora_runs;
#[path = "sd/refs.rs"]
mod refs;

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

macro_rules! component {
    ($name:literal, $file:literal) => {
        ($name, include_str!(concat!("fixtures/sdxl-tiny/", $name, "/config.json")), include_bytes!(concat!("fixtures/sdxl-tiny/", $name, "/", $file)) as &[u8])
    };
}

const COMPONENTS: [(&str, &str, &[u8]); 4] = [
    component!("text_encoder", "model.safetensors"),
    component!("text_encoder_2", "model.safetensors"),
    component!("unet", "diffusion_pytorch_model.safetensors"),
    component!("vae", "diffusion_pytorch_model.safetensors"),
];

/// The fixture as the engine holds a loaded model. Both tokenizers use CLIP's vocabulary
/// (sd2-tiny's copy, byte-identical; see tests/fixtures/sdxl-tiny/SOURCE.md).
fn load() -> (WeightStore, BTreeMap<String, serde_json::Value>, HashMap<String, Vec<u8>>) {
    let mut store = WeightStore::new();
    let mut configs = BTreeMap::new();
    for (component, config, bytes) in COMPONENTS {
        configs.insert(component.to_string(), serde_json::from_str(config).unwrap());
        let header = safetensors::parse(component, bytes).unwrap();
        for (name, info) in &header.tensors {
            let raw = &bytes[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
            store.insert_f32(&format!("{component}.{name}"), &info.shape, &safetensors::to_f32(component, name, info, raw).unwrap()).unwrap();
        }
    }
    configs.insert("scheduler".into(), serde_json::from_str(include_str!("fixtures/sdxl-tiny/scheduler/scheduler_config.json")).unwrap());
    configs.insert("model_index".into(), serde_json::from_str(include_str!("fixtures/sdxl-tiny/model_index.json")).unwrap());
    let vocab = include_bytes!("fixtures/sd2-tiny/tokenizer/vocab.json").to_vec();
    let files = HashMap::from([
        ("tokenizer/vocab.json".to_string(), vocab.clone()),
        ("tokenizer/tokenizer_config.json".to_string(), include_bytes!("fixtures/sdxl-tiny/tokenizer/tokenizer_config.json").to_vec()),
        ("tokenizer_2/vocab.json".to_string(), vocab),
        ("tokenizer_2/tokenizer_config.json".to_string(), include_bytes!("fixtures/sdxl-tiny/tokenizer_2/tokenizer_config.json").to_vec()),
    ]);
    (store, configs, files)
}

fn log(s: String) {
    web_sys::console::log_1(&s.into());
}

async fn check(session: Session) {
    let kind = session.kind();
    let (_, configs, files) = load();
    let mut sd = StableDiffusion::new(session, &configs, &files).unwrap();
    let refs = parse_references("sdxl-tiny", include_bytes!("fixtures/sdxl-tiny/reference.safetensors"));
    let prompts = ["a photo of an astronaut riding a horse on mars", "a watercolor painting of a red fox in the snow, highly detailed!", ""];
    let e = sd.encode_text(&prompts).await.unwrap();
    let (a, b) = (&refs["text/hidden_states_penultimate"].values, &refs["text_2/hidden_states_penultimate"].values);
    let want: Vec<f32> = a.chunks(8).zip(b.chunks(12)).flat_map(|(x, y)| x.iter().chain(y).copied()).collect();
    let (ctx, pooled) = (rel_err(&e.context, &want), rel_err(&e.pooled, &refs["text_2/text_embeds"].values));
    log(format!("sdxl-tiny [{kind}, wasm]: prompt embeddings {ctx:.2e}, pooled {pooled:.2e}"));
    assert!(ctx <= 1e-3 && pooled <= 1e-3, "text embeddings {ctx:e} / {pooled:e}");
    let meta: serde_json::Value = serde_json::from_str(include_str!("fixtures/sdxl-tiny/reference.json")).unwrap();
    for run in meta["runs"].as_array().unwrap() {
        let name = run["name"].as_str().unwrap();
        let out = generate(&mut sd, &fixture_request(run, &refs), &mut |_| true).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let latents = rel_err(&out.latents, &refs[&format!("{name}/final_latents")].values);
        let decoded = rel_err(&out.decoded, &refs[&format!("{name}/decoded_raw")].values);
        log(format!("sdxl-tiny {name} [{kind}, wasm]: final latents relative error {latents:.2e}, decoded image {decoded:.2e}"));
        assert!(latents <= 1e-3 && decoded <= 1e-3, "{name} on {kind}: latents {latents:e}, decoded {decoded:e}");
    }
}

#[wasm_bindgen_test]
async fn sdxl_tiny_matches_diffusers_on_webgpu() {
    let ctx = GpuContext::new(&GpuOptions::default()).await.expect("a WebGPU adapter (see webdriver.json)");
    let (store, _, _) = load();
    check(Session::gpu(ctx, &store).unwrap()).await;
}

#[wasm_bindgen_test]
async fn sdxl_tiny_matches_diffusers_on_the_wasm_cpu_backend() {
    let (store, _, _) = load();
    check(Session::cpu(store)).await;
}

#[wasm_bindgen_test]
async fn sdxl_kohya_lora_runs_match_diffusers_in_place_on_webgpu_and_wasm_cpu() {
    let (store, configs, files) = load();
    let refs = parse_references("sdxl-tiny-lora", include_bytes!("fixtures/sdxl-tiny-lora/reference.safetensors"));
    let meta: serde_json::Value = serde_json::from_str(include_str!("fixtures/sdxl-tiny-lora/reference.json")).unwrap();
    let lora = Lora::parse("kohya_sdxl_lora.safetensors", include_bytes!("fixtures/sdxl-tiny-lora/kohya_sdxl_lora.safetensors")).unwrap();
    let ctx = GpuContext::new(&GpuOptions::default()).await.expect("a WebGPU adapter (see webdriver.json)");
    for session in [Session::gpu(ctx, &store).unwrap(), Session::cpu(store.clone())] {
        let kind = session.kind();
        let mut sd = StableDiffusion::new(session, &configs, &files).unwrap();
        for (name, e) in lora_runs::errors(&mut sd, &lora, &meta, &refs).await {
            log(format!("sdxl-tiny-lora {name} [{kind}, wasm, applied in place]: final latents relative error {e:.2e}"));
            assert!(e <= 1e-3, "sdxl-tiny-lora {name} on {kind}: final latents relative error {e:e}");
        }
    }
}
