//! Weights on the GPU. Block formats stay quantized (kernels dequantize on the fly); f16
//! linear and conv weights stay f16 (half the memory; the kernels read pairs with
//! `unpack2x16float`, which needs no `shader-f16`), other f16 tensors (norms, biases,
//! embeddings) are widened to f32 for the ops that read them; and any tensor
//! whose bytes exceed the binding limit is split along its first axis (rows of a linear
//! weight, output channels of a conv weight), each chunk bound separately.
//!
//! CLIP's token tables stay in host memory (`stays_on_host`): a prompt reads 77 of their
//! 49,408 rows, which the host gathers when the ids are set (`GpuProgram::set_input`).
//!
//! Buffers are allocated first from shapes alone; bytes then arrive in any pieces, in order
//! per tensor (`write`), so the browser can stream shards straight into GPU buffers
//! without ever holding a model in one allocation.

use std::collections::HashMap;
use std::ops::Range;

use crate::error::OpError;
use crate::gpu::read_bytes;
use crate::gpu::GpuContext;
use crate::ops::quant::{self, StorageType, BLOCK};
use crate::ops::weights::{HostWeight, WeightStore};

/// Whether an f16 tensor stays f16 on the GPU: linear and conv weights whose rows are whole
/// vec4s. Embeddings (sliced, added) and 1-D norm weights are widened.
pub fn keeps_f16(name: &str, shape: &[usize]) -> bool {
    let row: usize = shape.iter().skip(1).product();
    matches!(shape.len(), 2 | 4) && row.is_multiple_of(4) && name.ends_with(".weight") && !name.contains("embed")
}

/// Whether a tensor is kept in host memory instead of on the GPU: CLIP's token tables, read
/// only by the embedding lookup of the prompt's ids. At 49,408 rows they are most of a text
/// encoder's unquantized bytes: SDXL's two took 202 MB of GPU memory as f16.
pub fn stays_on_host(name: &str) -> bool {
    name.ends_with("token_embedding.weight")
}

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
    /// F32, F16 (linear/conv weights; see `keeps_f16`), Q8_0 or Q4_0.
    pub storage: StorageType,
    pub chunks: Vec<WeightChunk>,
    /// Storage of the bytes being written (F16 may be widened to F32 on the GPU).
    source: StorageType,
    /// Values (f32/f16) or blocks per row.
    units_per_row: usize,
    /// Values or blocks written so far.
    written: usize,
    /// Bytes of an incomplete value or block pair, kept until the rest arrives.
    carry: Vec<u8>,
}

impl GpuWeight {
    /// The tensor must fit one binding for ops that do not take split weights.
    pub fn single(&self, name: &str) -> Result<&WeightChunk, OpError> {
        match self.chunks.as_slice() {
            [c] => Ok(c),
            _ => Err(OpError::Limits { node: name.into(), message: format!("weight {:?} is split in {} chunks; this op needs it in one binding", self.shape, self.chunks.len()) }),
        }
    }

    fn total_units(&self) -> usize {
        self.chunks.last().map_or(0, |c| c.rows.end) * self.units_per_row
    }

    /// Whether every byte has arrived.
    pub fn is_complete(&self) -> bool {
        self.written == self.total_units() && self.carry.is_empty()
    }

    /// Appends the next bytes of the tensor (source storage layout, any split points).
    fn write(&mut self, ctx: &GpuContext, name: &str, bytes: &[u8]) -> Result<(), OpError> {
        // Straight from `bytes` unless part of a unit was carried over from the last call
        // (a tensor's part usually arrives whole: copying every shard's bytes into the carry
        // and out again doubled the host-side work of loading a model onto the GPU).
        let joined: Vec<u8>;
        let mut data = bytes;
        if !self.carry.is_empty() {
            self.carry.extend_from_slice(bytes);
            joined = std::mem::take(&mut self.carry);
            data = &joined;
        }
        let unit_bytes = self.source.byte_len(if self.source.is_quantized() { BLOCK } else { 1 });
        loop {
            let Some(chunk) = self.chunks.iter().find(|c| self.written < c.rows.end * self.units_per_row) else {
                if !data.is_empty() {
                    return Err(OpError::BadWeight { name: name.into(), message: format!("{} bytes more than its shape holds", data.len()) });
                }
                return Ok(());
            };
            let local = self.written - chunk.rows.start * self.units_per_row;
            let room = chunk.rows.len() * self.units_per_row - local;
            let mut n = (data.len() / unit_bytes).min(room);
            // Scales pair two blocks per word, f16 values two per word: keep an odd one
            // back unless the chunk ends.
            if (self.source.is_quantized() || self.storage == StorageType::F16) && n < room && n % 2 == 1 {
                n -= 1;
            }
            if n == 0 {
                self.carry = data.to_vec();
                return Ok(());
            }
            let (piece, rest) = data.split_at(n * unit_bytes);
            match self.source {
                StorageType::F32 => ctx.queue.write_buffer(&chunk.values, 4 * local as u64, piece),
                StorageType::F16 if self.storage == StorageType::F16 => ctx.queue.write_buffer(&chunk.values, 2 * local as u64, piece),
                StorageType::F16 => {
                    let wide = quant::dequantize(StorageType::F16, piece);
                    ctx.queue.write_buffer(&chunk.values, 4 * local as u64, bytemuck::cast_slice(&wide));
                }
                q => {
                    let packed = quant::pack_for_gpu(q, piece);
                    let words_per_block = packed.qs.len() / n;
                    ctx.queue.write_buffer(&chunk.values, (4 * words_per_block * local) as u64, bytemuck::cast_slice(&packed.qs));
                    let scales = chunk.scales.as_ref().expect("quantized chunks have scales");
                    ctx.queue.write_buffer(scales, (4 * (local / 2)) as u64, bytemuck::cast_slice(&packed.scales));
                }
            }
            data = rest;
            self.written += n;
        }
    }
}

/// All weights of a model on the GPU.
pub struct GpuWeights {
    map: HashMap<String, GpuWeight>,
    /// Tensors kept on the host (`stays_on_host`), in their source storage.
    host: HashMap<String, HostWeight>,
    /// Bytes of GPU buffers allocated for weights.
    pub bytes: u64,
    /// Bytes written since the queue last flushed them (see `write`).
    unflushed: u64,
}

/// wgpu holds each `write_buffer`'s staging copy until the next submit: loading a model
/// without one held a second copy of every weight in host memory (15.1 GB peak for SD-Turbo
/// f32 on lavapipe, whose buffers are host memory too). Flushing every 256 MB bounds it.
const FLUSH_BYTES: u64 = 256 << 20;

fn buffer(ctx: &GpuContext, label: &str, words: usize) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (4 * words.max(1)) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

impl GpuWeights {
    /// Uploads every tensor of `store`, splitting at `ctx`'s maxStorageBufferBindingSize.
    pub fn upload(ctx: &GpuContext, store: &WeightStore) -> Result<Self, OpError> {
        Self::upload_with_limit(ctx, store, ctx.device.limits().max_storage_buffer_binding_size)
    }

    /// Like `upload` with an explicit per-binding byte limit (tests use small ones).
    pub fn upload_with_limit(ctx: &GpuContext, store: &WeightStore, max_binding: u64) -> Result<Self, OpError> {
        let specs: Vec<_> = store.names().into_iter().map(|n| store.get(n).map(|w| (n.to_string(), w.shape.clone(), w.storage))).collect::<Result<_, _>>()?;
        let mut weights = Self::allocate(ctx, &specs, max_binding)?;
        for name in store.names() {
            weights.write(ctx, name, &store.get(name)?.bytes)?;
        }
        weights.check_complete()?;
        Ok(weights)
    }

    /// Bytes the weights `(name, shape, storage)` will take on the GPU, or the first tensor
    /// that cannot be placed (a row wider than a binding): known from the manifest alone,
    /// so a model that cannot run is refused before it is downloaded.
    pub fn plan(specs: &[(String, Vec<usize>, StorageType)], max_binding: u64) -> Result<u64, OpError> {
        let mut bytes = 0u64;
        for (name, shape, source) in specs.iter().filter(|(n, _, _)| !stays_on_host(n)) {
            for c in Layout::of(name, shape, *source, max_binding)?.chunks() {
                bytes = bytes.saturating_add(c.bytes());
            }
        }
        Ok(bytes)
    }

    /// Creates empty buffers for `(name, shape, storage)` tensors, chunked at `max_binding`.
    pub fn allocate(ctx: &GpuContext, specs: &[(String, Vec<usize>, StorageType)], max_binding: u64) -> Result<Self, OpError> {
        let mut map = HashMap::new();
        let mut host = HashMap::new();
        let mut bytes = 0u64;
        for (name, shape, source) in specs {
            if stays_on_host(name) {
                let len = source.checked_byte_len(shape.iter().product()).ok_or_else(|| OpError::BadWeight { name: name.clone(), message: format!("{shape:?} is too large") })?;
                host.insert(name.clone(), HostWeight { shape: shape.clone(), storage: *source, bytes: Vec::with_capacity(len) });
                continue;
            }
            let layout = Layout::of(name, shape, *source, max_binding)?;
            let mut chunks = Vec::new();
            for c in layout.chunks() {
                bytes += c.bytes();
                let label = format!("{name}[{}..{}]", c.rows.start, c.rows.end);
                let scales = (c.scale_words > 0).then(|| buffer(ctx, &label, c.scale_words));
                chunks.push(WeightChunk { rows: c.rows, values: buffer(ctx, &label, c.words), scales });
            }
            let units_per_row = layout.units_per_row;
            map.insert(name.clone(), GpuWeight { shape: shape.clone(), storage: layout.storage, chunks, source: *source, units_per_row, written: 0, carry: Vec::new() });
        }
        Ok(Self { map, host, bytes, unflushed: 0 })
    }

    /// Appends the next bytes of tensor `name` (pieces in order; any split points).
    pub fn write(&mut self, ctx: &GpuContext, name: &str, bytes: &[u8]) -> Result<(), OpError> {
        if let Some(h) = self.host.get_mut(name) {
            let len = h.storage.byte_len(h.shape.iter().product());
            if h.bytes.len() + bytes.len() > len {
                return Err(OpError::BadWeight { name: name.into(), message: format!("more than the {len} bytes of {:?}", h.shape) });
            }
            h.bytes.extend_from_slice(bytes);
            return Ok(());
        }
        let w = self.map.get_mut(name).ok_or_else(|| OpError::MissingWeight { name: name.into() })?;
        w.write(ctx, name, bytes)?;
        self.unflushed += bytes.len() as u64;
        if self.unflushed >= FLUSH_BYTES {
            self.flush(ctx);
        }
        Ok(())
    }

    /// Submits the writes so far and (natively) waits for them, which frees their staging
    /// memory. In the browser the submit alone hands them to the GPU process.
    fn flush(&mut self, ctx: &GpuContext) {
        ctx.queue.submit([]);
        // A device lost here fails the next run or readback, which names it (GpuContext::lost).
        #[cfg(not(target_arch = "wasm32"))]
        let _ = ctx.device.poll(wgpu::PollType::wait_indefinitely());
        self.unflushed = 0;
    }

    /// Fails naming the first tensor whose bytes did not all arrive.
    pub fn check_complete(&self) -> Result<(), OpError> {
        let full = |h: &HostWeight| h.bytes.len() == h.storage.byte_len(h.shape.iter().product());
        let mut names: Vec<&String> = self.map.keys().chain(self.host.keys()).collect();
        names.sort();
        match names.into_iter().find(|n| self.map.get(*n).map_or_else(|| !full(&self.host[*n]), |w| !w.is_complete())) {
            Some(n) => Err(OpError::BadWeight { name: n.clone(), message: "not all of its bytes arrived".into() }),
            None => Ok(()),
        }
    }

    /// Replaces every byte of tensor `name` (its source storage, as `write` takes them): a
    /// LoRA merged in, or the base weight put back. Programs bind the same buffers, so the
    /// next run sees the new values without compiling anything again.
    pub fn rewrite(&mut self, ctx: &GpuContext, name: &str, bytes: &[u8]) -> Result<(), OpError> {
        if let Some(h) = self.host.get_mut(name) {
            if bytes.len() != h.storage.byte_len(h.shape.iter().product()) {
                return Err(OpError::BadWeight { name: name.into(), message: format!("{} bytes do not fill {:?}", bytes.len(), h.shape) });
            }
            h.bytes = bytes.to_vec();
            return Ok(());
        }
        let w = self.map.get_mut(name).ok_or_else(|| OpError::MissingWeight { name: name.into() })?;
        (w.written, w.carry) = (0, Vec::new());
        w.write(ctx, name, bytes)?;
        if !w.is_complete() {
            return Err(OpError::BadWeight { name: name.into(), message: format!("{} bytes do not fill {:?}", bytes.len(), w.shape) });
        }
        Ok(())
    }

    /// Tensor `name` read back in its source storage (the bytes `write` took), exactly.
    pub async fn read_stored(&self, ctx: &GpuContext, name: &str) -> Result<HostWeight, OpError> {
        if let Some(h) = self.host.get(name) {
            return Ok(h.clone());
        }
        let w = self.get(name)?;
        let gpu_err = |e: crate::error::GpuError| OpError::BadWeight { name: name.into(), message: format!("reading it back: {e}") };
        let mut bytes = Vec::with_capacity(w.source.byte_len(w.shape.iter().product()));
        for c in &w.chunks {
            let units = c.rows.len() * w.units_per_row;
            match (w.source, w.storage) {
                (StorageType::F32, _) => bytes.extend(read_bytes(ctx, &c.values, 0, 4 * units as u64).await.map_err(gpu_err)?),
                // Kept f16: two values per word; an odd count leaves half a word unused.
                (StorageType::F16, StorageType::F16) => {
                    let raw = read_bytes(ctx, &c.values, 0, 4 * units.div_ceil(2) as u64).await.map_err(gpu_err)?;
                    bytes.extend_from_slice(&raw[..2 * units]);
                }
                // Widened f16: every value came from an f16, so narrowing is exact.
                (StorageType::F16, _) => {
                    let raw = read_bytes(ctx, &c.values, 0, 4 * units as u64).await.map_err(gpu_err)?;
                    bytes.extend(raw.chunks_exact(4).flat_map(|v| half::f16::from_f32(f32::from_le_bytes([v[0], v[1], v[2], v[3]])).to_le_bytes()));
                }
                (q, _) => {
                    let words_per_block = quant::gpu_words_per_block(q);
                    let qs = read_bytes(ctx, &c.values, 0, 4 * (units * words_per_block) as u64).await.map_err(gpu_err)?;
                    let scales = c.scales.as_ref().expect("quantized chunks have scales");
                    let scales = read_bytes(ctx, scales, 0, 4 * units.div_ceil(2) as u64).await.map_err(gpu_err)?;
                    bytes.extend(quant::unpack_from_gpu(q, &quant::GpuBlocks { qs: bytemuck::pod_collect_to_vec(&qs), scales: bytemuck::pod_collect_to_vec(&scales) }, units));
                }
            }
        }
        Ok(HostWeight { shape: w.shape.clone(), storage: w.source, bytes })
    }

    /// The tensor called `name` if it is kept on the host (`stays_on_host`).
    pub fn host(&self, name: &str) -> Option<&HostWeight> {
        self.host.get(name)
    }

    /// Bytes of host memory the tensors kept there take.
    pub fn host_bytes(&self) -> u64 {
        self.host.values().map(|h| h.bytes.capacity() as u64).sum()
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Result<&GpuWeight, OpError> {
        self.map.get(name).ok_or_else(|| OpError::MissingWeight { name: name.into() })
    }
}

/// How one tensor is laid out on the GPU: its storage there and its chunks of whole rows.
struct Layout {
    storage: StorageType,
    rows: usize,
    row_len: usize,
    units_per_row: usize,
    rows_per_chunk: usize,
}

/// One chunk's rows and buffer sizes in u32 words (values, and scales for block formats).
struct ChunkPlan {
    rows: Range<usize>,
    words: usize,
    scale_words: usize,
}

impl ChunkPlan {
    fn bytes(&self) -> u64 {
        4 * (self.words + self.scale_words) as u64
    }
}

impl Layout {
    fn of(name: &str, shape: &[usize], source: StorageType, max_binding: u64) -> Result<Self, OpError> {
        let rows = shape.first().copied().unwrap_or(1).max(1);
        let numel: usize = shape.iter().product();
        let row_len = numel / rows;
        let (storage, row_bytes, units_per_row) = match source {
            StorageType::F16 if keeps_f16(name, shape) => (StorageType::F16, 2 * row_len, row_len),
            StorageType::F32 | StorageType::F16 => (StorageType::F32, 4 * row_len, row_len),
            q => {
                if !row_len.is_multiple_of(BLOCK) {
                    return Err(OpError::BadWeight { name: name.into(), message: format!("{} rows of {row_len} values are not whole blocks", q.name()) });
                }
                (q, q.byte_len(row_len), row_len / BLOCK)
            }
        };
        if row_bytes as u64 > max_binding {
            return Err(OpError::Limits { node: name.into(), message: format!("one row of {row_bytes} bytes exceeds the {max_binding}-byte binding limit") });
        }
        let rows_per_chunk = ((max_binding as usize) / row_bytes.max(1)).max(1);
        Ok(Self { storage, rows, row_len, units_per_row, rows_per_chunk })
    }

    fn chunks(&self) -> Vec<ChunkPlan> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < self.rows || out.is_empty() {
            let end = (start + self.rows_per_chunk).min(self.rows);
            let n = end - start;
            out.push(match self.storage {
                StorageType::Q8_0 | StorageType::Q4_0 => {
                    let blocks = n * self.units_per_row;
                    let words = blocks * BLOCK / if self.storage == StorageType::Q8_0 { 4 } else { 8 };
                    ChunkPlan { rows: start..end, words, scale_words: blocks.div_ceil(2) }
                }
                StorageType::F16 => ChunkPlan { rows: start..end, words: n * self.row_len / 2, scale_words: 0 },
                StorageType::F32 => ChunkPlan { rows: start..end, words: n * self.row_len, scale_words: 0 },
            });
            start = end;
        }
        out
    }
}
