//! The VQ family at full size in headless Chrome (vq_full/setup.rs): a
//! vqgan_imagenet_f16_16384 decoder and aMUSEd-256's transformer, random q8_0 weights
//! written tensor by tensor to WebGPU buffers, one pass each over an 8x8 grid (WEB_SIDE:
//! 128 px; 256 px runs natively on both backends in vq_full_native.rs) within the adapter's
//! limits; time and peak GPU bytes printed. The reference is the CPU backend on the same
//! weights and grid, run natively (vq_full_native.rs keeps the committed file current).

#![cfg(target_arch = "wasm32")]

#[path = "vq_full/setup.rs"]
mod setup;
#[path = "web_full/mod.rs"]
mod web_full;

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::session::f32s;
use easel::models::{Session, ShapeMap};
use easel::platform::now_ms;
use setup::{rel_err, sample, Shape, WEB_SIDE};
use wasm_bindgen_test::*;
use web_full::{log, random_gpu_weights, reference_tensor};

wasm_bindgen_test_configure!(run_in_browser);

async fn check(shape: Shape, reference: &[u8]) {
    let specs = shape.weight_specs();
    let t0 = now_ms();
    let ctx = GpuContext::new(&GpuOptions::default()).await.expect("a WebGPU adapter (see webdriver.json)");
    let weights = random_gpu_weights(&ctx, &specs).await;
    let weight_bytes = weights.bytes;
    log(format!("{}: weights {:.0} MB on the GPU as q8_0, written in {:.1} s", shape.name(WEB_SIDE), weight_bytes as f64 / 1e6, (now_ms() - t0) / 1e3));

    let list = specs.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect::<Vec<_>>();
    let mut session = Session::gpu_with(ctx, ShapeMap::from_list(list), weights);
    let mut c = session.compile(|g| shape.build(g, WEB_SIDE)).await.unwrap();
    for (name, value) in shape.inputs(WEB_SIDE) {
        session.set_input(&mut c, name, value).unwrap();
    }
    let t = now_ms();
    let out = f32s(session.run(&c).await.unwrap().into_iter().next().unwrap());
    let activations = c.activation_bytes();
    log(format!(
        "WebGPU: {:.1} s; peak GPU bytes {:.0} MB = weights {:.0} MB + activations {:.0} MB",
        (now_ms() - t) / 1e3,
        (weight_bytes + activations) as f64 / 1e6,
        weight_bytes as f64 / 1e6,
        activations as f64 / 1e6
    ));
    assert_eq!(out.len(), shape.output_shape(WEB_SIDE).iter().product::<usize>());
    let e = rel_err(&sample(&out), &reference_tensor(reference, "sample"));
    log(format!("WebGPU vs CPU (q8_0): relative error {e:.2e}"));
    assert!(e <= 1e-3, "WebGPU and CPU differ by {e:e}");
}

#[wasm_bindgen_test]
async fn vqgan_f16_16384_decoder_decodes_128px_on_webgpu() {
    check(Shape::VqganDecoder, include_bytes!("fixtures/vq_full/vqgan_decoder_8x8_cpu.safetensors")).await;
}

#[wasm_bindgen_test]
async fn amused_256_transformer_runs_on_webgpu() {
    check(Shape::Amused256, include_bytes!("fixtures/vq_full/amused_256_8x8_cpu.safetensors")).await;
}
