//! The SD-Turbo shape at full size in headless Chrome: random weights made tensor by tensor
//! and written straight to WebGPU buffers as q8_0 (never the whole model in wasm memory),
//! one 64x64 generation within the adapter's limits, peak GPU bytes printed. The reference
//! is our CPU backend on the same q8_0 weights, run natively (`setup::Q8_0_REFERENCE`).

#![cfg(target_arch = "wasm32")]

#[path = "turbo/setup.rs"]
mod setup;
#[path = "web_full/mod.rs"]
mod web_full;

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::{Session, ShapeMap};
use easel::ops::StorageType;
use easel::pipelines::{generate, StableDiffusion};
use easel::platform::now_ms;
use wasm_bindgen_test::*;
use web_full::{log, random_gpu_weights, reference_tensor, stage};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn sd_turbo_shape_runs_at_64px_with_q8_0_on_webgpu() {
    let configs = setup::configs();
    let list = setup::weight_list(&configs);
    let specs = setup::weight_specs(&configs, StorageType::Q8_0);
    let params: usize = list.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    assert!(params > 1_200_000_000, "text encoder + UNet + VAE of SD 2.1 are about 1.3B parameters");

    let t0 = now_ms();
    let ctx = GpuContext::new(&GpuOptions::default()).await.expect("a WebGPU adapter (see webdriver.json)");
    let limits = ctx.device.limits();
    let weights = random_gpu_weights(&ctx, &specs).await;
    let weight_bytes = weights.bytes;
    log(format!(
        "SD-Turbo shape: {:.0}M parameters, {:.2} GB on the GPU as q8_0, written in {:.1} s (maxStorageBufferBindingSize {} MiB)",
        params as f64 / 1e6,
        weight_bytes as f64 / 1e9,
        (now_ms() - t0) / 1e3,
        limits.max_storage_buffer_binding_size >> 20
    ));

    let req = setup::request();
    let t = now_ms();
    let session = Session::gpu_with(ctx, ShapeMap::from_list(list.clone()), weights);
    let mut sd = StableDiffusion::new(session, &configs, &setup::files()).unwrap();
    let gpu = generate(&mut sd, &req, &mut |p| stage("WebGPU", t, p)).await.unwrap();
    let activations = sd.activation_bytes();
    drop(sd);
    log(format!(
        "WebGPU ({:.1} s): peak GPU bytes {:.2} GB = weights {:.2} GB + activations {:.1} MB",
        (now_ms() - t) / 1e3,
        (weight_bytes + activations) as f64 / 1e9,
        weight_bytes as f64 / 1e9,
        activations as f64 / 1e6
    ));

    // The page cannot also hold the CPU run (minutes of synchronous wasm): its outputs on
    // the same q8_0 weights were written natively (see setup::Q8_0_REFERENCE).
    let reference = include_bytes!("fixtures/turbo/q8_0_cpu.safetensors");
    let tensor = |name: &str| reference_tensor(reference, name);
    let cpu = (tensor("prompt_embeds"), tensor("latents"), tensor("decoded"));
    for (what, g, c) in [("prompt embeddings", &gpu.prompt_embeds, &cpu.0), ("final latents", &gpu.latents, &cpu.1), ("decoded image", &gpu.decoded, &cpu.2)] {
        assert!(c.iter().all(|v| v.is_finite()), "{what}: CPU values are finite");
        let e = setup::rel_err(g, c);
        log(format!("WebGPU vs CPU (q8_0) {what}: relative error {e:.2e}"));
        assert!(e <= 1e-3, "{what}: WebGPU and CPU differ by {e:e}");
    }
}
