//! Tensors over WebGPU's default 128 MiB binding in Chrome, on a device opened with that
//! default: a weight split into chunks and an activation bound in windows.

#![cfg(target_arch = "wasm32")]

mod common;

use common::cases_limits::{self, DEFAULT_BINDING};
use easel::gpu::{GpuContext, GpuOptions};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn tensors_over_128_mib_match_cpu_at_the_default_binding() {
    let ctx = GpuContext::new(&GpuOptions { max_binding: Some(DEFAULT_BINDING), ..Default::default() }).await.expect("a WebGPU adapter");
    assert_eq!(ctx.device.limits().max_storage_buffer_binding_size, DEFAULT_BINDING);
    let failures = common::run_all(&ctx, cases_limits::cases()).await;
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
}
