//! A weight larger than WebGPU's default 128 MiB binding runs correctly when the device is
//! opened with that default: the weight is split into chunks, one dispatch each.

#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashMap;

use easel::gpu::{GpuContext, GpuOptions};
use easel::ops::check::{compare_backends, random_values};
use easel::ops::cpu::HostTensor;
use easel::ops::gpu::GpuWeights;
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
    let diffs = pollster::block_on(compare_backends(&ctx, &g, &weights, &inputs, None)).unwrap();
    println!("linear [{m}, {k}] x [{n}, {k}]^T over {chunks} chunks: relative error {:.2e}", diffs[0].relative_error);
    assert!(diffs[0].relative_error <= 1e-4, "{diffs:?}");
}
