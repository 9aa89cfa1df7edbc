//! Tensors larger than WebGPU's default 128 MiB binding run correctly when the device is
//! opened with that default: weights are split into chunks, activations bound in windows.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::cases_limits::{self, DEFAULT_BINDING};
use easel::gpu::{GpuContext, GpuOptions};
use easel::ops::gpu::{GpuProgram, GpuWeights, PipelineCache};
use easel::ops::{Graph, WeightStore};

fn default_limit_context() -> GpuContext {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions { max_binding: Some(DEFAULT_BINDING), ..Default::default() })).expect("Vulkan adapter");
    assert_eq!(ctx.device.limits().max_storage_buffer_binding_size, DEFAULT_BINDING);
    ctx
}

#[test]
fn linear_weight_over_128_mib_is_split_and_correct() {
    let ctx = default_limit_context();
    let case = cases_limits::big_weight();
    assert!(case.weights.byte_size() as u64 > DEFAULT_BINDING);
    let chunks = GpuWeights::upload(&ctx, &case.weights).unwrap().get("lm_head.weight").unwrap().chunks.len();
    assert_eq!(chunks, 2, "134 MB at a 128 MiB binding limit splits in two");
    let failures = pollster::block_on(common::run_all(&ctx, vec![case]));
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn activations_over_128_mib_are_bound_in_windows_and_correct() {
    let ctx = default_limit_context();
    let failures = pollster::block_on(common::run_all(&ctx, vec![cases_limits::big_activation()]));
    assert!(failures.is_empty(), "{failures:?}");
}

/// An op without a split plan says which node and which binding broke the limit.
#[test]
fn an_op_that_cannot_split_names_the_node() {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("Vulkan adapter");
    let weights = WeightStore::new();
    let mut g = Graph::new(&weights);
    let x = g.input("x", &[64, 64]);
    let y = g.scoped("block", |g| g.matmul(x, x, false)).unwrap();
    g.output(y);
    let gpu_weights = GpuWeights::upload(&ctx, &weights).unwrap();
    let mut cache = PipelineCache::new();
    let err = pollster::block_on(GpuProgram::compile_with_limit(&ctx, &g, &gpu_weights, &mut cache, Some(4096))).err().expect("16 KiB operands at a 4 KiB limit");
    let text = err.to_string();
    assert!(text.contains("block.matmul") && text.contains("4096"), "{text}");
}
