//! A weight larger than WebGPU's default 128 MiB binding runs correctly when the device is
//! opened with that default: the weight is split into chunks, one dispatch each.

#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashMap;

use easel::gpu::{GpuContext, GpuOptions};
use easel::ops::check::{compare_backends, random_values, BindingLimits};
use easel::ops::cpu::HostTensor;
use easel::ops::gpu::{GpuProgram, GpuWeights, PipelineCache};
use easel::ops::{Graph, WeightStore};

const DEFAULT_BINDING: u64 = 128 << 20;

#[test]
fn linear_weight_over_128_mib_is_split_and_correct() {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions { max_binding: Some(DEFAULT_BINDING), ..Default::default() })).expect("Vulkan adapter");
    assert_eq!(ctx.device.limits().max_storage_buffer_binding_size, DEFAULT_BINDING);

    // [8200, 4096] f32 = 134.3 MB: one more row than fits in a binding... many more.
    let (n, k, m) = (8200, 4096, 3);
    let mut weights = WeightStore::new();
    weights.insert_f32("lm_head.weight", &[n, k], &random_values(n * k, 7)).unwrap();
    assert!(weights.byte_size() as u64 > DEFAULT_BINDING);

    let gpu_weights = GpuWeights::upload(&ctx, &weights).unwrap();
    let chunks = gpu_weights.get("lm_head.weight").unwrap().chunks.len();
    assert_eq!(chunks, 2, "134 MB at a 128 MiB binding limit splits in two");

    let mut g = Graph::new(&weights);
    let x = g.input("x", &[m, k]);
    let w = g.weight("lm_head.weight").unwrap();
    let y = g.linear(x, w, None).unwrap();
    g.output(y);
    let inputs = HashMap::from([("x".to_string(), HostTensor::F32(random_values(m * k, 8)))]);
    let diffs = pollster::block_on(compare_backends(&ctx, &g, &weights, &inputs, BindingLimits::default())).unwrap();
    println!("linear [{m}, {k}] x [{n}, {k}]^T over {chunks} chunks: relative error {:.2e}", diffs[0].relative_error);
    assert!(diffs[0].relative_error <= 1e-4, "{diffs:?}");
}

/// A VAE-decoder-sized activation (160 MiB, over WebGPU's default 128 MiB binding) through
/// GroupNorm + SiLU, a 1x1 conv and a residual add, on a device opened with that default.
#[test]
fn activations_over_128_mib_are_bound_in_windows_and_correct() {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions { max_binding: Some(DEFAULT_BINDING), ..Default::default() })).expect("Vulkan adapter");
    let (c, side, o) = (160, 512, 4);
    let n = c * side * side;
    assert!((n * 4) as u64 > DEFAULT_BINDING);
    let mut weights = WeightStore::new();
    weights.insert_f32("norm.weight", &[c], &random_values(c, 11)).unwrap();
    weights.insert_f32("norm.bias", &[c], &random_values(c, 12)).unwrap();
    weights.insert_f32("conv.weight", &[o, c, 1, 1], &random_values(o * c, 13)).unwrap();
    weights.insert_f32("conv.bias", &[o], &random_values(o, 14)).unwrap();

    let mut g = Graph::new(&weights);
    let x = g.input("x", &[1, c, side, side]);
    let (gamma, beta) = (g.weight("norm.weight").unwrap(), g.weight("norm.bias").unwrap());
    let h = g.group_norm(x, gamma, beta, 32, 1e-6, true).unwrap();
    let h = g.add(h, x).unwrap();
    let (w, b) = (g.weight("conv.weight").unwrap(), g.weight("conv.bias").unwrap());
    let y = g.conv2d(h, w, Some(b), 1, [0; 4]).unwrap();
    g.output(y);
    let inputs = HashMap::from([("x".to_string(), HostTensor::F32(random_values(n, 15)))]);
    let diffs = pollster::block_on(compare_backends(&ctx, &g, &weights, &inputs, BindingLimits::default())).unwrap();
    println!("[1, {c}, {side}, {side}] ({} MiB) norm, add, 1x1 conv: relative error {:.2e}", (n * 4) >> 20, diffs[0].relative_error);
    assert!(diffs[0].relative_error <= 1e-4, "{diffs:?}");
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
