//! The adapter's memory ceiling: a large buffer-to-buffer copy.

use crate::error::OpError;
use crate::gpu::{wait_idle, GpuContext};
use crate::platform::now_ms;

/// GB/s of copying `mib` MiB between two buffers (read + write counted once each).
pub async fn copy_bandwidth(ctx: &GpuContext, mib: u64) -> Result<f64, OpError> {
    let size = (mib << 20).min(ctx.device.limits().max_buffer_size) & !3;
    let make = |usage| ctx.device.create_buffer(&wgpu::BufferDescriptor { label: Some("copy bench"), size, usage, mapped_at_creation: false });
    let src = make(wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST);
    let dst = make(wgpu::BufferUsages::COPY_DST);
    let mut best = f64::MAX;
    for i in 0..4 {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&src, 0, &dst, 0, size);
        let start = now_ms();
        ctx.queue.submit([enc.finish()]);
        wait_idle(ctx).await?;
        if i > 0 {
            best = best.min(now_ms() - start);
        }
    }
    Ok(2.0 * size as f64 / best / 1e6)
}
