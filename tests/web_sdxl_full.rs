//! The SDXL-Turbo shape at full size in headless Chrome: random weights made tensor by
//! tensor and written straight to WebGPU buffers as q4_0 (from fp16 files: norms and
//! embeddings f16), never the whole model in wasm memory; one 1-step 64x64 generation within
//! the adapter's limits, peak GPU bytes printed. The reference is our CPU backend on the same
//! weights, run natively (`setup::Q4_0_REFERENCE`, written by tests/sdxl_full_native.rs).
//!
//! Minutes on SwiftShader, so it runs on request:
//!   WASM_BINDGEN_TEST_TIMEOUT=1200 wasm-pack test --release --headless --chrome --test web_sdxl_full -- --include-ignored

#![cfg(target_arch = "wasm32")]

#[path = "sdxl_full/setup.rs"]
mod setup;

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::random::random_weight;
use easel::models::{Session, ShapeMap};
use easel::ops::gpu::GpuWeights;
use easel::ops::{quant, StorageType};
use easel::pipelines::Progress;
use easel::pipelines::{generate, StableDiffusion};
use easel::platform::{now_ms, yield_now};
use easel::weights::safetensors;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn log(s: String) {
    web_sys::console::log_1(&s.into());
}

/// Logs when each stage of a generation ends (the runs take minutes on SwiftShader).
fn stage(backend: &str, t0: f64, p: Progress) -> bool {
    let what = match p {
        Progress::Text { .. } => "prompt encoded".to_string(),
        Progress::Step { step, total, .. } => format!("step {step}/{total}"),
        Progress::Decoding => "decoding".to_string(),
    };
    log(format!("{backend}: {what} at {:.1} s", (now_ms() - t0) / 1e3));
    true
}

/// The bytes of a tensor as a manifest stores it.
fn stored(storage: StorageType, values: &[f32]) -> Vec<u8> {
    match storage {
        StorageType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        q => quant::quantize(q, values),
    }
}

#[wasm_bindgen_test]
#[ignore]
async fn sdxl_turbo_shape_runs_at_64px_with_q4_0_on_webgpu() {
    let configs = setup::configs();
    let list = setup::weight_list(&configs);
    let specs = setup::weight_specs(&configs, StorageType::Q4_0);
    let params: usize = list.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    assert!(params > 3_300_000_000, "UNet 2.6B + CLIP-L 0.12B + bigG 0.69B + VAE 0.08B");

    let t0 = now_ms();
    let ctx = GpuContext::new(&GpuOptions::default()).await.expect("a WebGPU adapter (see webdriver.json)");
    let limits = ctx.device.limits();
    let mut weights = GpuWeights::allocate(&ctx, &specs, limits.max_storage_buffer_binding_size).unwrap();
    let mut last_yield = now_ms();
    for (name, shape, storage) in &specs {
        weights.write(&ctx, name, &stored(*storage, &random_weight(name, shape))).unwrap();
        // Hand the page back to the event loop now and then: the test runner polls it, and
        // gives up on a page that stays busy for 30 s.
        if now_ms() - last_yield > 2000.0 {
            yield_now().await;
            last_yield = now_ms();
        }
    }
    weights.check_complete().unwrap();
    let weight_bytes = weights.bytes;
    log(format!(
        "SDXL-Turbo shape: {:.0}M parameters, {:.2} GB on the GPU as q4_0, written in {:.1} s (maxStorageBufferBindingSize {} MiB)",
        params as f64 / 1e6,
        weight_bytes as f64 / 1e9,
        (now_ms() - t0) / 1e3,
        limits.max_storage_buffer_binding_size >> 20
    ));

    let req = setup::request(64);
    let t = now_ms();
    let session = Session::gpu_with(ctx, ShapeMap::from_list(list.clone()), weights);
    let mut sd = StableDiffusion::new(session, &configs, &setup::files()).unwrap();
    let gpu = generate(&mut sd, &req, &mut |p| stage("WebGPU", t, p)).await.unwrap();
    let activations = sd.activation_bytes();
    drop(sd);
    log(format!(
        "WebGPU at 64x64 ({:.1} s): peak GPU bytes {:.2} GB = weights {:.2} GB + activations {:.1} MB",
        (now_ms() - t) / 1e3,
        (weight_bytes + activations) as f64 / 1e9,
        weight_bytes as f64 / 1e9,
        activations as f64 / 1e6
    ));

    // The page cannot also hold the CPU run (minutes of synchronous wasm): its outputs on
    // the same q4_0 weights were written natively (see setup::Q4_0_REFERENCE).
    let reference = include_bytes!("fixtures/sdxl_full/q4_0_cpu.safetensors");
    let header = safetensors::parse("q4_0_cpu.safetensors", reference).unwrap();
    let tensor = |name: &str| {
        let info = &header.tensors[name];
        let raw = &reference[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
        safetensors::to_f32("q4_0_cpu.safetensors", name, info, raw).unwrap()
    };
    let cpu = (tensor("latents"), tensor("decoded"));
    for (what, g, c) in [("final latents", &gpu.latents, &cpu.0), ("decoded image", &gpu.decoded, &cpu.1)] {
        assert!(c.iter().all(|v| v.is_finite()), "{what}: CPU values are finite");
        let e = setup::rel_err(g, c);
        log(format!("WebGPU vs CPU (q4_0) {what}: relative error {e:.2e}"));
        assert!(e <= 1e-3, "{what}: WebGPU and CPU differ by {e:e}");
    }
}
