//! Weights on the GPU. Block formats stay quantized (kernels dequantize on the fly), f16
//! is widened to f32 (SwiftShader and many adapters lack `shader-f16`), and any tensor
//! whose bytes exceed the binding limit is split along its first axis (rows of a linear
//! weight, output channels of a conv weight), each chunk bound separately.

use std::collections::HashMap;
use std::ops::Range;

use wgpu::util::DeviceExt;

use crate::error::OpError;
use crate::gpu::GpuContext;
use crate::ops::quant::{self, StorageType};
use crate::ops::weights::WeightStore;

/// Rows `rows` of a weight: f32 values, or quantized blocks (`qs` words + f16 `scales`).
pub struct WeightChunk {
    pub rows: Range<usize>,
    pub values: wgpu::Buffer,
    /// Scales buffer for block formats (two f16 per u32 word), None for f32.
    pub scales: Option<wgpu::Buffer>,
}

/// One uploaded tensor.
pub struct GpuWeight {
    pub shape: Vec<usize>,
    /// F32 (f16 sources are widened), Q8_0 or Q4_0.
    pub storage: StorageType,
    pub chunks: Vec<WeightChunk>,
}

impl GpuWeight {
    /// The tensor must fit one binding for ops that do not take split weights.
    pub fn single(&self, name: &str) -> Result<&WeightChunk, OpError> {
        match self.chunks.as_slice() {
            [c] => Ok(c),
            _ => Err(OpError::Limits {
                node: name.into(),
                message: format!("weight {:?} is split in {} chunks; this op needs it in one binding", self.shape, self.chunks.len()),
            }),
        }
    }
}

/// All weights of a model on the GPU.
pub struct GpuWeights {
    map: HashMap<String, GpuWeight>,
    /// Bytes uploaded.
    pub bytes: u64,
}

impl GpuWeights {
    /// Uploads every tensor of `store`, splitting at `ctx`'s maxStorageBufferBindingSize.
    pub fn upload(ctx: &GpuContext, store: &WeightStore) -> Result<Self, OpError> {
        Self::upload_with_limit(ctx, store, ctx.device.limits().max_storage_buffer_binding_size)
    }

    /// Like `upload` with an explicit per-binding byte limit (tests use small ones).
    pub fn upload_with_limit(ctx: &GpuContext, store: &WeightStore, max_binding: u64) -> Result<Self, OpError> {
        let mut map = HashMap::new();
        let mut bytes = 0u64;
        for name in store.names() {
            let w = store.get(name)?;
            let rows = w.shape.first().copied().unwrap_or(1).max(1);
            let row_len = w.numel() / rows;
            let (storage, row_bytes) = match w.storage {
                StorageType::F32 | StorageType::F16 => (StorageType::F32, 4 * row_len),
                q => (q, q.byte_len(row_len)),
            };
            let rows_per_chunk = ((max_binding as usize) / row_bytes.max(1)).max(1);
            if row_bytes as u64 > max_binding {
                return Err(OpError::Limits {
                    node: name.into(),
                    message: format!("one row of {row_bytes} bytes exceeds the {max_binding}-byte binding limit"),
                });
            }
            let mut chunks = Vec::new();
            let mut start = 0;
            while start < rows {
                let end = (start + rows_per_chunk).min(rows);
                let label = format!("{name}[{start}..{end}]");
                let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
                let chunk = match storage {
                    StorageType::F32 => {
                        let vals = if w.storage == StorageType::F32 {
                            w.bytes[start * row_len * 4..end * row_len * 4].to_vec()
                        } else {
                            bytemuck::cast_slice(&quant::dequantize(StorageType::F16, &w.bytes[start * row_len * 2..end * row_len * 2])).to_vec()
                        };
                        bytes += vals.len() as u64;
                        let values = ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(&label), contents: &vals, usage });
                        WeightChunk { rows: start..end, values, scales: None }
                    }
                    q => {
                        let packed = quant::pack_for_gpu(q, &w.bytes[start * row_bytes..end * row_bytes]);
                        bytes += 4 * (packed.qs.len() + packed.scales.len()) as u64;
                        let values = ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                            label: Some(&label),
                            contents: bytemuck::cast_slice(&packed.qs),
                            usage,
                        });
                        let scales = ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                            label: Some(&label),
                            contents: bytemuck::cast_slice(&packed.scales),
                            usage,
                        });
                        WeightChunk { rows: start..end, values, scales: Some(scales) }
                    }
                };
                chunks.push(chunk);
                start = end;
            }
            map.insert(name.to_string(), GpuWeight { shape: w.shape.clone(), storage, chunks });
        }
        Ok(Self { map, bytes })
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Result<&GpuWeight, OpError> {
        self.map.get(name).ok_or_else(|| OpError::MissingWeight { name: name.into() })
    }
}
