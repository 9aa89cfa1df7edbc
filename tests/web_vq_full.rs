//! The VQ family at full size in headless Chrome (vq_full/setup.rs): a
//! vqgan_imagenet_f16_16384 decoder at 256x256 and aMUSEd-256's transformer, random q8_0
//! weights written tensor by tensor to WebGPU buffers, one pass each within the adapter's
//! limits; time and peak GPU bytes printed. The reference is the CPU backend on the same
//! weights, run natively (vq_full_native.rs keeps the committed file current).

#![cfg(target_arch = "wasm32")]

#[path = "vq_full/setup.rs"]
mod setup;

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::random::random_weight;
use easel::models::session::f32s;
use easel::models::{Session, ShapeMap};
use easel::ops::gpu::GpuWeights;
use easel::ops::{quant, StorageType};
use easel::platform::{now_ms, yield_now};
use easel::weights::safetensors;
use setup::{rel_err, sample, Shape};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn log(s: String) {
    web_sys::console::log_1(&s.into());
}

fn stored(storage: StorageType, values: &[f32]) -> Vec<u8> {
    match storage {
        StorageType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        q => quant::quantize(q, values),
    }
}

fn committed(bytes: &[u8]) -> Vec<f32> {
    let header = safetensors::parse("reference", bytes).unwrap();
    let info = &header.tensors["sample"];
    let raw = &bytes[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
    safetensors::to_f32("reference", "sample", info, raw).unwrap()
}

async fn check(shape: Shape, reference: &[u8]) {
    let specs = shape.weight_specs();
    let t0 = now_ms();
    let ctx = GpuContext::new(&GpuOptions::default()).await.expect("a WebGPU adapter (see webdriver.json)");
    let limit = ctx.device.limits().max_storage_buffer_binding_size;
    let mut weights = GpuWeights::allocate(&ctx, &specs, limit).unwrap();
    let mut last_yield = now_ms();
    for (name, dims, storage) in &specs {
        weights.write(&ctx, name, &stored(*storage, &random_weight(name, dims))).unwrap();
        // The test runner gives up on a page that stays busy for 30 s.
        if now_ms() - last_yield > 2000.0 {
            yield_now().await;
            last_yield = now_ms();
        }
    }
    weights.check_complete().unwrap();
    let weight_bytes = weights.bytes;
    log(format!("{}: weights {:.0} MB on the GPU as q8_0, written in {:.1} s", shape.name(), weight_bytes as f64 / 1e6, (now_ms() - t0) / 1e3));

    let list = specs.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect::<Vec<_>>();
    let mut session = Session::gpu_with(ctx, ShapeMap::from_list(list), weights);
    let mut c = session.compile(|g| shape.build(g)).await.unwrap();
    for (name, value) in shape.inputs() {
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
    assert_eq!(out.len(), shape.output_shape().iter().product::<usize>());
    let e = rel_err(&sample(&out), &committed(reference));
    log(format!("WebGPU vs CPU (q8_0): relative error {e:.2e}"));
    assert!(e <= 1e-3, "WebGPU and CPU differ by {e:e}");
}

#[wasm_bindgen_test]
async fn vqgan_f16_16384_decoder_decodes_256px_on_webgpu() {
    check(Shape::VqganDecoder, include_bytes!("fixtures/vq_full/vqgan_decoder_cpu.safetensors")).await;
}

#[wasm_bindgen_test]
async fn amused_256_transformer_runs_on_webgpu() {
    check(Shape::Amused256, include_bytes!("fixtures/vq_full/amused_256_cpu.safetensors")).await;
}
