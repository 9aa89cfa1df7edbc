//! Shared by the full-size browser tests (web_turbo, web_vq_full, web_sdxl_full): random
//! weights written tensor by tensor straight to WebGPU buffers (never a whole model in wasm
//! memory), a generation's stages logged as they end, and the natively written CPU
//! references read back.

#![allow(dead_code)] // each test binary uses a different part of this file

use easel::gpu::GpuContext;
use easel::models::random::random_weight;
use easel::ops::gpu::GpuWeights;
use easel::ops::{quant, StorageType};
use easel::pipelines::Progress;
use easel::platform::{now_ms, yield_now};
use easel::weights::safetensors;

pub fn log(s: String) {
    web_sys::console::log_1(&s.into());
}

/// Logs when each stage of a generation ends (the runs take minutes on SwiftShader).
pub fn stage(backend: &str, t0: f64, p: Progress) -> bool {
    let what = match p {
        Progress::Text { .. } => "prompt encoded".to_string(),
        Progress::Step { step, total, .. } => format!("step {step}/{total}"),
        Progress::Decoding { .. } => "decoding".to_string(),
    };
    log(format!("{backend}: {what} at {:.1} s", (now_ms() - t0) / 1e3));
    true
}

/// The bytes of a tensor as a manifest stores it.
pub fn stored(storage: StorageType, values: &[f32]) -> Vec<u8> {
    match storage {
        StorageType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        q => quant::quantize(q, values),
    }
}

/// Every weight of `specs` with its random values, written to GPU buffers one at a time.
pub async fn random_gpu_weights(ctx: &GpuContext, specs: &[(String, Vec<usize>, StorageType)]) -> GpuWeights {
    let mut weights = GpuWeights::allocate(ctx, specs, ctx.device.limits().max_storage_buffer_binding_size).unwrap();
    let mut last_yield = now_ms();
    for (name, shape, storage) in specs {
        weights.write(ctx, name, &stored(*storage, &random_weight(name, shape))).unwrap();
        // Hand the page back to the event loop now and then: the test runner polls it, and
        // gives up on a page that stays busy for 30 s.
        if now_ms() - last_yield > 2000.0 {
            yield_now().await;
            last_yield = now_ms();
        }
    }
    weights.check_complete().unwrap();
    weights
}

/// Tensor `name` of a committed reference safetensors file.
pub fn reference_tensor(bytes: &[u8], name: &str) -> Vec<f32> {
    let header = safetensors::parse("reference", bytes).unwrap();
    let info = &header.tensors[name];
    let raw = &bytes[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
    safetensors::to_f32("reference", name, info, raw).unwrap()
}
