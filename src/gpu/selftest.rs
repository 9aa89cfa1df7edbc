//! A end-to-end check of the GPU path: upload, compile, dispatch, read back, and compare
//! with the CPU backend (candle). Run at startup by the page and by `easel selftest`.

use serde::Serialize;

use super::{read_f32, GpuContext};
use crate::error::GpuError;
use crate::ops::cpu;

/// Outcome of [`self_test`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelfTestReport {
    /// Matmul shape checked: [m, k, n].
    pub shape: [usize; 3],
    /// Largest |gpu - cpu| over the output.
    pub max_abs_error: f32,
    /// ||gpu - cpu|| / ||cpu||.
    pub relative_error: f32,
    /// Wall time of the GPU part, compile included.
    pub millis: f64,
}

/// The acceptance bound on relative error: f32 sums of 19..64 products.
pub const SELF_TEST_TOLERANCE: f32 = 1e-5;

/// Deterministic pseudo-random values in [-1, 1) (an LCG: no RNG crate needed here).
pub fn test_values(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// Runs `a[m,k] @ b[k,n] + bias[n]` on the GPU with `shader` and returns the output.
/// The shader is a parameter so tests can prove that a wrong kernel is caught.
pub async fn run_matmul_kernel(ctx: &GpuContext, shader: &str, [m, k, n]: [usize; 3], a: &[f32], b: &[f32], bias: &[f32]) -> Result<Vec<f32>, GpuError> {
    use wgpu::util::DeviceExt;
    ctx.alive()?;
    let dev = &ctx.device;
    let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("selftest"), source: wgpu::ShaderSource::Wgsl(shader.into()) });
    let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("selftest"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let storage = |label, data: &[f32], extra| {
        dev.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: bytemuck::cast_slice(data), usage: wgpu::BufferUsages::STORAGE | extra })
    };
    let a_buf = storage("a", a, wgpu::BufferUsages::empty());
    let b_buf = storage("b", b, wgpu::BufferUsages::empty());
    let bias_buf = storage("bias", bias, wgpu::BufferUsages::empty());
    let c_buf = storage("c", &vec![0.0; m * n], wgpu::BufferUsages::COPY_SRC);
    let dims = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("dims"),
        contents: bytemuck::cast_slice(&[m as u32, k as u32, n as u32, 0]),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let bind_group = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("selftest"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: a_buf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: b_buf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 2, resource: bias_buf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 3, resource: c_buf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 4, resource: dims.as_entire_binding() },
        ],
    });
    let mut encoder = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("selftest") });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("selftest"), timestamp_writes: None });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(n.div_ceil(8) as u32, m.div_ceil(8) as u32, 1);
    }
    ctx.queue.submit([encoder.finish()]);
    if let Some(err) = scope.pop().await {
        return Err(GpuError::Validation { stage: "self-test dispatch", detail: err.to_string() });
    }
    read_f32(ctx, &c_buf, m * n).await
}

/// Relative error ||x - reference|| / ||reference|| and the largest absolute difference.
pub fn compare(x: &[f32], reference: &[f32]) -> (f32, f32) {
    let (mut diff2, mut ref2, mut max_abs) = (0f64, 0f64, 0f32);
    for (a, r) in x.iter().zip(reference) {
        let d = (a - r) as f64;
        diff2 += d * d;
        ref2 += (*r as f64) * (*r as f64);
        max_abs = max_abs.max((a - r).abs());
    }
    ((diff2.sqrt() / ref2.sqrt().max(f64::MIN_POSITIVE)) as f32, max_abs)
}

/// Checks a 37x19 @ 19x23 matmul with bias (sizes that are not multiples of the 8x8
/// workgroup) against the CPU backend.
pub async fn self_test(ctx: &GpuContext) -> Result<SelfTestReport, GpuError> {
    let shape = [37, 19, 23];
    let [m, k, n] = shape;
    let (a, b, bias) = (test_values(m * k, 1), test_values(k * n, 2), test_values(n, 3));
    let start = crate::platform::now_ms();
    let gpu = run_matmul_kernel(ctx, include_str!("selftest.wgsl"), shape, &a, &b, &bias).await?;
    let millis = crate::platform::now_ms() - start;
    let cpu = cpu::matmul_bias(&a, &b, &bias, m, k, n).map_err(|e| GpuError::SelfTest(e.to_string()))?;
    let (relative_error, max_abs_error) = compare(&gpu, &cpu);
    #[allow(clippy::neg_cmp_op_on_partial_ord)] // a NaN error must fail too
    if !(relative_error <= SELF_TEST_TOLERANCE) {
        return Err(GpuError::SelfTest(format!(
            "matmul {m}x{k}x{n} differs from the CPU backend: relative error {relative_error:e} \
             (max |diff| {max_abs_error:e}); this GPU driver computes wrong results"
        )));
    }
    Ok(SelfTestReport { shape, max_abs_error, relative_error, millis })
}
