//! Copying results from the GPU to the host without ever blocking the browser.

use super::GpuContext;
use crate::error::GpuError;

/// Copies `len` f32 values from the start of `src` (which needs COPY_SRC) into a new Vec.
///
/// Natively the map callback only fires while the device is polled, so we poll; in the
/// browser the event loop drives it and we simply await.
pub async fn read_f32(ctx: &GpuContext, src: &wgpu::Buffer, len: usize) -> Result<Vec<f32>, GpuError> {
    let bytes = read_bytes(ctx, src, 0, (len * std::mem::size_of::<f32>()) as u64).await?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}

/// Copies `size` bytes at `offset` of `src` (which needs COPY_SRC) to the host.
pub async fn read_bytes(ctx: &GpuContext, src: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>, GpuError> {
    ctx.alive()?;
    if size == 0 {
        return Ok(Vec::new());
    }
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
    encoder.copy_buffer_to_buffer(src, offset, &staging, 0, size);
    ctx.queue.submit([encoder.finish()]);

    let slice = staging.slice(..);
    let (tx, rx) = futures_channel::oneshot::channel();
    slice.map_async(wgpu::MapMode::Read, move |result| {
        let _ = tx.send(result);
    });
    #[cfg(not(target_arch = "wasm32"))]
    let polled = ctx.device.poll(wgpu::PollType::wait_indefinitely());
    // A device lost mid-copy fails the map (or drops its callback): say that, not the symptom.
    let lost = |detail: String| match (ctx.lost(), ctx.first_uncaptured_error()) {
        (Some(why), _) => GpuError::DeviceLost(why),
        (None, Some(cause)) => GpuError::Readback(format!("{detail} (after an earlier GPU error: {cause})")),
        (None, None) => GpuError::Readback(detail),
    };
    #[cfg(not(target_arch = "wasm32"))]
    polled.map_err(|e| lost(e.to_string()))?;
    rx.await.map_err(|_| lost("the map request was dropped".into()))?.map_err(|e| lost(e.to_string()))?;
    let values = {
        let view = slice.get_mapped_range().map_err(|e| GpuError::Readback(e.to_string()))?;
        view.to_vec()
    };
    staging.unmap();
    Ok(values)
}

/// Resolves when all work submitted so far has finished on the GPU (for timing).
pub async fn wait_idle(ctx: &GpuContext) -> Result<(), GpuError> {
    let (tx, rx) = futures_channel::oneshot::channel();
    ctx.queue.on_submitted_work_done(move || {
        let _ = tx.send(());
    });
    #[cfg(not(target_arch = "wasm32"))]
    ctx.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::Readback(e.to_string()))?;
    rx.await.map_err(|_| GpuError::Readback("the device was lost while waiting".into()))
}
