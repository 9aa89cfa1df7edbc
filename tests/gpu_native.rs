//! Native GPU tests (Vulkan; lavapipe on CI machines): open the device, check its report,
//! and run a compute shader whose numbers are checked against the CPU backend.

#![cfg(not(target_arch = "wasm32"))]

use easel::gpu::{self, GpuContext, GpuOptions};

fn context() -> GpuContext {
    pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (install mesa-vulkan-drivers)")
}

#[test]
fn device_gets_the_adapters_own_limits() {
    let ctx = context();
    let adapter = ctx.adapter.limits();
    let device = ctx.device.limits();
    assert_eq!(device.max_buffer_size, adapter.max_buffer_size);
    assert_eq!(device.max_storage_buffer_binding_size, adapter.max_storage_buffer_binding_size);
    assert_eq!(device.max_storage_buffers_per_shader_stage, adapter.max_storage_buffers_per_shader_stage);
    assert_eq!(device.max_compute_workgroup_storage_size, adapter.max_compute_workgroup_storage_size);
    // WebGPU's defaults are the floor any real adapter meets.
    assert!(device.max_storage_buffer_binding_size >= 128 << 20);
    assert_eq!(ctx.report.backend, "vulkan");
    assert_eq!(ctx.report.limits.max_buffer_size, device.max_buffer_size);
    assert_eq!(ctx.report.shader_f16, ctx.device.features().contains(wgpu::Features::SHADER_F16));
}

#[test]
fn self_test_matmul_matches_cpu_backend() {
    let ctx = context();
    let report = pollster::block_on(gpu::self_test(&ctx)).expect("self-test");
    assert_eq!(report.shape, [37, 19, 23]);
    assert!(report.relative_error <= gpu::SELF_TEST_TOLERANCE, "relative error {}", report.relative_error);
}

#[test]
fn kernel_output_equals_hand_computed_values() {
    // [[1,2,3],[4,5,6]] @ [[1,0],[0,1],[1,1]] + [10,20] = [[14,25],[20,31]].
    let ctx = context();
    let shader = include_str!("../src/gpu/selftest.wgsl");
    let out = pollster::block_on(gpu::run_matmul_kernel(&ctx, shader, [2, 3, 2], &[1., 2., 3., 4., 5., 6.], &[1., 0., 0., 1., 1., 1.], &[10., 20.])).unwrap();
    assert_eq!(out, vec![14., 25., 20., 31.]);
}

#[test]
fn a_wrong_kernel_is_caught() {
    // The same kernel with A's row stride off by one: the comparison must see it.
    let ctx = context();
    let broken = include_str!("../src/gpu/selftest.wgsl").replace("a[row * dims.k + i]", "a[row * (dims.k - 1u) + i]");
    let [m, k, n] = [37, 19, 23];
    let (a, b, bias) = (gpu::test_values(m * k, 1), gpu::test_values(k * n, 2), gpu::test_values(n, 3));
    let out = pollster::block_on(gpu::run_matmul_kernel(&ctx, &broken, [m, k, n], &a, &b, &bias)).unwrap();
    let reference = easel::ops::cpu::matmul_bias(&a, &b, &bias, m, k, n).unwrap();
    let (rel, _) = gpu::compare(&out, &reference);
    assert!(rel > 0.1, "broken kernel went unnoticed: relative error {rel}");
}

#[test]
fn invalid_wgsl_is_a_typed_validation_error() {
    let ctx = context();
    let err = pollster::block_on(gpu::run_matmul_kernel(&ctx, "this is not wgsl", [1, 1, 1], &[1.], &[1.], &[0.])).unwrap_err();
    assert!(matches!(err, easel::GpuError::Validation { .. }), "{err}");
    assert!(err.to_string().contains("GPU validation failed"), "{err}");
}

#[test]
fn a_lost_device_is_an_error_not_a_panic_or_a_hang() {
    let ctx = context();
    assert_eq!(ctx.lost(), None);
    let shader = include_str!("../src/gpu/selftest.wgsl");
    let run = |ctx: &GpuContext| pollster::block_on(gpu::run_matmul_kernel(ctx, shader, [2, 3, 2], &[1., 2., 3., 4., 5., 6.], &[1., 0., 0., 1., 1., 1.], &[10., 20.]));
    assert_eq!(run(&ctx).unwrap(), vec![14., 25., 20., 31.]);
    ctx.lose();
    let err = run(&ctx).expect_err("a destroyed device cannot compute");
    assert_eq!(err.to_string(), "the GPU device was lost (destroyed); the engine has to reopen the GPU and reload the model");
    // A fresh device works again: what the engine does after a loss.
    assert_eq!(run(&context()).unwrap(), vec![14., 25., 20., 31.]);
}
