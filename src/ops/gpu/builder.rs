//! Recording dispatches at compile time: pipelines (cached by kernel variant), one shared
//! uniform buffer holding every dispatch's parameters, and bind groups made once.
//!
//! Kernel convention: storage bindings 0..n-1 in the order given, then binding n is
//! `var<uniform> params: Params`, the kernel's named struct (kernels/params.rs; at most 64
//! words), put in front of its source with the shared prelude. Dispatches use a 2D grid of workgroups when one
//! dimension would pass 65535; kernels rebuild the flat id from `num_workgroups`.

use std::collections::HashMap;

use super::kernels::kernel_source;
use super::kernels::params::{CopyWords, KernelParams};
use crate::error::{GpuError, OpError};
use crate::gpu::GpuContext;

/// Words of parameters a dispatch may have.
pub const PARAM_WORDS: usize = 64;
const PARAM_BYTES: u64 = (PARAM_WORDS * 4) as u64;

/// A region of a buffer bound to a kernel.
#[derive(Debug, Clone)]
pub struct Buf {
    pub buffer: wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl Buf {
    /// The whole of `buffer`.
    pub fn whole(buffer: &wgpu::Buffer) -> Self {
        Self { buffer: buffer.clone(), offset: 0, size: buffer.size() }
    }

    /// f32 elements `start..start + len` of this region (`start * 4` must keep the
    /// binding offset aligned; the split planners guarantee it).
    pub fn window(&self, start: usize, len: usize) -> Self {
        Self { buffer: self.buffer.clone(), offset: self.offset + start as u64 * 4, size: (len as u64 * 4).max(4) }
    }
}

/// Compiled pipelines by variant key, shared by every program on a device.
#[derive(Default)]
pub struct PipelineCache {
    pipelines: HashMap<String, wgpu::ComputePipeline>,
}

impl PipelineCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of compiled pipelines.
    pub fn len(&self) -> usize {
        self.pipelines.len()
    }

    /// Whether nothing was compiled yet.
    pub fn is_empty(&self) -> bool {
        self.pipelines.is_empty()
    }
}

/// One recorded dispatch.
pub struct Step {
    pub label: String,
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
}

struct Pending {
    label: String,
    pipeline: wgpu::ComputePipeline,
    bindings: Vec<Buf>,
    params_slot: usize,
    workgroups: [u32; 3],
}

/// One `shared_scratch` purpose: dispatches bind a stand-in until `finish` knows the
/// largest size any node asked for and puts one buffer of that size in its place.
struct SharedScratch {
    stand_in: wgpu::Buffer,
    size: u64,
}

/// Collects a program's dispatches; `finish` makes the parameter buffer and bind groups.
pub struct KernelBuilder<'a> {
    pub ctx: &'a GpuContext,
    cache: &'a mut PipelineCache,
    params: Vec<u32>,
    pending: Vec<Pending>,
    /// Label of the node being compiled, for error messages and debug labels.
    pub node_label: String,
    /// Bytes of the kernels' own scratch buffers (part of the program's activation bytes).
    pub scratch_bytes: u64,
    /// Largest storage binding a dispatch may have: the device's limit, or a smaller one
    /// (tests force it to exercise the split paths on small tensors).
    pub max_binding: u64,
    /// What an absent optional input (a conv or linear without bias) is bound to.
    placeholder: Option<Buf>,
    /// Scratch that node after node reuses (`shared_scratch`), by purpose.
    shared: HashMap<&'static str, SharedScratch>,
}

impl<'a> KernelBuilder<'a> {
    /// Whether kernels may declare f16 types (the device has `shader-f16`).
    pub fn has_f16(&self) -> bool {
        self.ctx.device.features().contains(wgpu::Features::SHADER_F16)
    }

    /// A builder on `ctx` using (and filling) `cache`.
    pub fn new(ctx: &'a GpuContext, cache: &'a mut PipelineCache) -> Self {
        let max_binding = ctx.device.limits().max_storage_buffer_binding_size;
        Self { ctx, cache, params: Vec::new(), pending: Vec::new(), node_label: String::new(), scratch_bytes: 0, max_binding, placeholder: None, shared: HashMap::new() }
    }

    /// Alignment of a binding's offset, in f32 elements.
    pub fn offset_align(&self) -> usize {
        (self.ctx.device.limits().min_storage_buffer_offset_alignment as usize / 4).max(1)
    }

    /// Largest binding in f32 elements.
    pub fn max_elems(&self) -> usize {
        (self.max_binding / 4) as usize
    }

    /// A zeroed storage buffer a node's dispatches share (e.g. running minima across the
    /// dispatches of a split weight).
    pub fn scratch(&mut self, bytes: u64) -> Buf {
        let size = bytes.max(4);
        let buffer = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("{} scratch", self.node_label)),
            size,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        self.scratch_bytes += size;
        Buf { buffer, offset: 0, size }
    }

    /// The first `bytes` of a scratch buffer every node of the program may reuse for
    /// `purpose` (a node's intermediate that dies within the node, such as the fast
    /// precision's int8 activations): dispatches run in order, so one node's use is over
    /// before the next one's begins. The buffer is made once, in `finish`, at the largest
    /// size asked for: growing it node by node would keep every smaller one alive too.
    pub fn shared_scratch(&mut self, purpose: &'static str, bytes: u64) -> Buf {
        let size = bytes.div_ceil(4).max(1) * 4;
        let dev = &self.ctx.device;
        let slot = self.shared.entry(purpose).or_insert_with(|| SharedScratch {
            stand_in: dev.create_buffer(&wgpu::BufferDescriptor { label: Some(purpose), size: 4, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false }),
            size: 0,
        });
        slot.size = slot.size.max(size);
        Buf { buffer: slot.stand_in.clone(), offset: 0, size }
    }

    /// A small buffer, shared by the program, to bind where a kernel's optional input is
    /// absent and never read: binding another operand there instead would alias it.
    pub fn placeholder(&mut self) -> Buf {
        if self.placeholder.is_none() {
            let label = std::mem::replace(&mut self.node_label, "placeholder".into());
            self.placeholder = Some(self.scratch(16));
            self.node_label = label;
        }
        self.placeholder.clone().expect("made above")
    }

    /// Records a dispatch of kernel variant `key` with `params`: its WGSL is `body` behind
    /// the prelude and `P`'s struct (`kernels::kernel_source`), compiled on first use.
    pub fn dispatch<P: KernelParams>(&mut self, key: &str, body: impl FnOnce() -> String, bindings: Vec<Buf>, params: &P, workgroups: [u32; 3]) -> Result<(), OpError> {
        let bindings = self.unalias(bindings)?;
        self.record(key, || kernel_source::<P>(&body()), bindings, &params.words(), workgroups)
    }

    /// Every storage binding is writable (kernels/mod.rs), and WebGPU refuses a dispatch
    /// whose writable bindings overlap one another: a binding that overlaps an earlier one
    /// (one tensor read twice, as in x * x) is bound from a private copy instead. Outputs
    /// never overlap inputs (the arena gives tensors alive together disjoint bytes), so
    /// only read bindings are copied.
    fn unalias(&mut self, mut bindings: Vec<Buf>) -> Result<Vec<Buf>, OpError> {
        for j in 1..bindings.len() {
            let b = &bindings[j];
            let overlaps = |a: &Buf| a.buffer == b.buffer && a.offset < b.offset + b.size && b.offset < a.offset + a.size;
            if bindings[..j].iter().any(overlaps) {
                let copy = self.scratch(b.size);
                let params = CopyWords { len: (b.size / 4) as u32 };
                let groups = super::kernels::groups_for(params.len as usize);
                self.record("copy_words", || kernel_source::<CopyWords>(include_str!("kernels/copy_words.wgsl")), vec![b.clone(), copy.clone()], &params.words(), groups)?;
                bindings[j] = copy;
            }
        }
        Ok(bindings)
    }

    fn record(&mut self, key: &str, source: impl FnOnce() -> String, bindings: Vec<Buf>, params: &[u32], workgroups: [u32; 3]) -> Result<(), OpError> {
        if params.len() > PARAM_WORDS {
            return Err(OpError::Limits { node: self.node_label.clone(), message: format!("{} parameter words (max {PARAM_WORDS})", params.len()) });
        }
        let max_binding = self.max_binding;
        if let Some(b) = bindings.iter().find(|b| b.size > max_binding) {
            return Err(OpError::Limits { node: self.node_label.clone(), message: format!("a {}-byte binding exceeds maxStorageBufferBindingSize ({max_binding})", b.size) });
        }
        let pipeline = match self.cache.pipelines.get(key) {
            Some(p) => p.clone(),
            None => {
                let module = self.ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(key), source: wgpu::ShaderSource::Wgsl(source().into()) });
                let p = self.ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(key),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                });
                self.cache.pipelines.insert(key.to_string(), p.clone());
                p
            }
        };
        let params_slot = self.params.len() / PARAM_WORDS;
        self.params.extend_from_slice(params);
        self.params.resize((params_slot + 1) * PARAM_WORDS, 0);
        self.pending.push(Pending { label: format!("{} ({key})", self.node_label), pipeline, bindings, params_slot, workgroups });
        Ok(())
    }

    /// Makes the shared scratch, the parameter buffer and every bind group. Returns the
    /// steps and the bytes of every scratch buffer the program holds.
    pub fn finish(mut self) -> (Vec<Step>, u64) {
        use wgpu::util::DeviceExt;
        let shared: Vec<(wgpu::Buffer, Buf)> = std::mem::take(&mut self.shared)
            .into_iter()
            .map(|(purpose, slot)| {
                self.node_label = purpose.into();
                (slot.stand_in, self.scratch(slot.size))
            })
            .collect();
        for b in self.pending.iter_mut().flat_map(|p| p.bindings.iter_mut()) {
            if let Some((_, real)) = shared.iter().find(|(stand_in, _)| *stand_in == b.buffer) {
                b.buffer = real.buffer.clone();
            }
        }
        let dev = &self.ctx.device;
        let align = dev.limits().min_uniform_buffer_offset_alignment as u64;
        let stride = PARAM_BYTES.div_ceil(align) * align;
        let slots = self.params.len() / PARAM_WORDS;
        let mut bytes = vec![0u8; (stride as usize * slots).max(PARAM_BYTES as usize)];
        for (i, chunk) in self.params.chunks(PARAM_WORDS).enumerate() {
            let at = i * stride as usize;
            bytes[at..at + PARAM_BYTES as usize].copy_from_slice(bytemuck::cast_slice(chunk));
        }
        let params = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some("params"), contents: &bytes, usage: wgpu::BufferUsages::UNIFORM });
        let steps = self
            .pending
            .into_iter()
            .map(|p| {
                let mut entries: Vec<wgpu::BindGroupEntry> = p
                    .bindings
                    .iter()
                    .enumerate()
                    .map(|(i, b)| wgpu::BindGroupEntry {
                        binding: i as u32,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &b.buffer, offset: b.offset, size: wgpu::BufferSize::new(b.size.max(4)) }),
                    })
                    .collect();
                entries.push(wgpu::BindGroupEntry {
                    binding: p.bindings.len() as u32,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &params,
                        offset: p.params_slot as u64 * stride,
                        size: wgpu::BufferSize::new(PARAM_BYTES),
                    }),
                });
                let bind_group = dev.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(&p.label), layout: &p.pipeline.get_bind_group_layout(0), entries: &entries });
                Step { label: p.label, pipeline: p.pipeline, bind_group, workgroups: p.workgroups }
            })
            .collect();
        (steps, self.scratch_bytes)
    }
}

/// A grid of `count` workgroups that respects the 65535-per-dimension limit.
pub fn grid(count: u32) -> [u32; 3] {
    const MAX: u32 = 65535;
    if count <= MAX {
        [count.max(1), 1, 1]
    } else {
        [MAX, count.div_ceil(MAX), 1]
    }
}

/// Turns a validation error captured during compile into a typed error.
pub fn validation(stage: &'static str, e: wgpu::Error) -> OpError {
    OpError::Gpu(GpuError::Validation { stage, detail: e.to_string() })
}

/// WGSL shared by every kernel: flat invocation ids.
pub const PRELUDE: &str = r#"
fn flat_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x; }
"#;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::gpu::GpuOptions;

    /// Two nodes asking for 1000 then 4000 bytes of the same purpose hold one 4000-byte
    /// buffer, not both; another purpose gets its own. Bound at their sizes, the stand-ins
    /// are replaced before the bind groups are made (a 4-byte stand-in would fail them).
    #[test]
    fn shared_scratch_is_one_buffer_at_the_largest_size_asked_for() {
        let ctx = pollster::block_on(crate::gpu::GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (install mesa-vulkan-drivers)");
        let mut cache = PipelineCache::new();
        let mut kb = KernelBuilder::new(&ctx, &mut cache);
        let copy = |kb: &mut KernelBuilder, src: Buf, dst: Buf| {
            let params = CopyWords { len: (src.size / 4) as u32 };
            kb.dispatch("copy_words", || include_str!("kernels/copy_words.wgsl").into(), vec![src, dst], &params, [4, 1, 1]).unwrap();
        };
        let (small, other) = (kb.shared_scratch("int8 activations", 1000), kb.shared_scratch("int8 activation scales", 1000));
        copy(&mut kb, small, other);
        let (large, other) = (kb.shared_scratch("int8 activations", 4000), kb.shared_scratch("int8 activation scales", 40));
        copy(&mut kb, other, large.window(0, 10));
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let (steps, bytes) = kb.finish();
        assert!(pollster::block_on(scope.pop()).is_none(), "bind groups on the shared scratch are valid");
        assert_eq!(steps.len(), 2);
        assert_eq!(bytes, 4000 + 1000);
    }
}
