//! A graph compiled for the GPU: buffers, pipelines and bind groups made once; `run`
//! writes nothing but the inputs and encodes every dispatch into one submit.

use std::collections::HashMap;

use super::arena::{Arena, Life, Slot};
use super::builder::{validation, Buf, KernelBuilder, PipelineCache, Step};
use super::kernels::{self, NodeCx, Operand};
use super::weights::GpuWeights;
use crate::error::OpError;
use crate::gpu::GpuContext;
use crate::ops::cpu::HostTensor;
use crate::ops::graph::{DType, Graph, Op, TensorId};

/// Where a tensor lives.
#[derive(Clone)]
enum Place {
    Weight(String),
    /// A weight kept on the host (`stays_on_host`): only gathered from, never bound.
    Host(String),
    Buffer(Buf),
}

/// An embedding lookup of a graph input in a table kept on the host: the rows are gathered
/// on the host when the ids are set, and written to `out`.
struct HostGather {
    ids: String,
    table: String,
    out: Buf,
}

/// A compiled graph.
pub struct GpuProgram {
    steps: Vec<Step>,
    places: Vec<Option<Place>>,
    inputs: HashMap<String, (TensorId, DType, usize)>,
    gathers: Vec<HostGather>,
    outputs: Vec<TensorId>,
    dtypes: Vec<DType>,
    numels: Vec<usize>,
    /// Bytes of activation and input buffers this program holds (its peak: nothing is
    /// allocated while it runs).
    pub activation_bytes: u64,
    /// Number of dispatches per run.
    pub dispatches: usize,
}

fn usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
}

/// A buffer of its own, outside the pools, for a tensor written before the run starts (a
/// graph input, or a lookup gathered on the host); its bytes are added to `total`.
fn own_buffer(ctx: &GpuContext, label: &str, bytes: u64, total: &mut u64) -> Buf {
    let size = bytes.max(4);
    let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage: usage(), mapped_at_creation: false });
    *total += size;
    Buf { buffer, offset: 0, size }
}

impl GpuProgram {
    /// Plans buffers by liveness, compiles every kernel variant the graph needs, and records
    /// its dispatches. Fails with the node's name when a shape or limit does not fit.
    pub async fn compile(ctx: &GpuContext, graph: &Graph<'_>, weights: &GpuWeights, cache: &mut PipelineCache) -> Result<Self, OpError> {
        Self::compile_with_limit(ctx, graph, weights, cache, None).await
    }

    /// `compile` with bindings capped at `max_binding` bytes (below the device's limit):
    /// activations above it are bound in windows, as on a device with that limit.
    pub async fn compile_with_limit(ctx: &GpuContext, graph: &Graph<'_>, weights: &GpuWeights, cache: &mut PipelineCache, max_binding: Option<u64>) -> Result<Self, OpError> {
        ctx.alive()?;
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let result = Self::record(ctx, graph, weights, cache, max_binding);
        let error = scope.pop().await;
        let (steps, program) = result?;
        if let Some(e) = error {
            return Err(validation("kernel compilation", e));
        }
        let mut program = program;
        program.dispatches = steps.len();
        program.steps = steps;
        Ok(program)
    }

    fn record(ctx: &GpuContext, graph: &Graph<'_>, weights: &GpuWeights, cache: &mut PipelineCache, max_binding: Option<u64>) -> Result<(Vec<Step>, Self), OpError> {
        let n = graph.nodes.len();
        // A reshape shares its input's buffer: follow aliases to the tensor that owns it.
        let mut root: Vec<usize> = (0..n).collect();
        for (i, node) in graph.nodes.iter().enumerate() {
            if let Op::Reshape { .. } = node.op {
                root[i] = root[node.inputs[0].0];
            }
        }
        let mut last_use = vec![0usize; n];
        for (i, node) in graph.nodes.iter().enumerate() {
            last_use[root[i]] = last_use[root[i]].max(i);
            for t in &node.inputs {
                last_use[root[t.0]] = last_use[root[t.0]].max(i);
            }
        }
        for t in &graph.outputs {
            last_use[root[t.0]] = usize::MAX;
        }
        let mut places: Vec<Option<Place>> = vec![None; n];
        let mut inputs = HashMap::new();
        let mut gathers = Vec::new();
        let mut input_bytes = 0u64;
        let mut kb = KernelBuilder::new(ctx, cache);
        let max_buffer = ctx.device.limits().max_buffer_size;
        if let Some(limit) = max_binding {
            kb.max_binding = kb.max_binding.min(limit);
        }

        // Which arena buffer each activation takes, planned over the whole graph's
        // lifetimes before any buffer is created.
        let host_table = |t: TensorId| match &graph.node(t).op {
            Op::Weight { name } => weights.host(name).map(|_| name.clone()),
            _ => None,
        };
        let gathered = |node: &crate::ops::graph::Node| matches!(node.op, Op::Embedding) && host_table(node.inputs[1]).is_some();
        let mut owners = Vec::new();
        let mut lives = Vec::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            let bytes = (node.numel() * 4) as u64;
            if !matches!(node.op, Op::Weight { .. } | Op::Input { .. } | Op::Reshape { .. }) && !gathered(node) {
                if bytes > max_buffer {
                    return Err(OpError::Limits { node: node.label.clone(), message: format!("its {bytes}-byte output exceeds the device's maxBufferSize ({max_buffer})") });
                }
                owners.push(i);
                lives.push(Life { bytes, first: i, last: last_use[i] });
            }
        }
        let (arena, slots) = Arena::plan(&lives, max_buffer);
        let slots: HashMap<usize, Slot> = owners.iter().copied().zip(slots).collect();
        let arena_buffers: Vec<wgpu::Buffer> = arena
            .sizes
            .iter()
            .map(|&size| ctx.device.create_buffer(&wgpu::BufferDescriptor { label: Some("activations"), size, usage: usage(), mapped_at_creation: false }))
            .collect();

        for (i, node) in graph.nodes.iter().enumerate() {
            let bytes = (node.numel() * 4) as u64;
            kb.node_label = node.label.clone();
            match &node.op {
                Op::Weight { name } if weights.host(name).is_some() => places[i] = Some(Place::Host(name.clone())),
                Op::Weight { name } => {
                    weights.get(name)?;
                    places[i] = Some(Place::Weight(name.clone()));
                }
                _ if gathered(node) => {
                    let table = host_table(node.inputs[1]).expect("gathered");
                    let Op::Input { name: ids, dtype: DType::U32 } = &graph.node(node.inputs[0]).op else {
                        return Err(OpError::Limits {
                            node: node.label.clone(),
                            message: format!("{table} is kept on the host, so its lookup must read u32 ids straight from a graph input"),
                        });
                    };
                    let out = own_buffer(ctx, &node.label, bytes, &mut input_bytes);
                    places[i] = Some(Place::Buffer(out.clone()));
                    gathers.push(HostGather { ids: ids.clone(), table, out });
                }
                Op::Input { name, dtype } => {
                    places[i] = Some(Place::Buffer(own_buffer(ctx, name, bytes, &mut input_bytes)));
                    inputs.insert(name.clone(), (TensorId(i), *dtype, node.numel()));
                }
                Op::Reshape { .. } => {
                    places[i] = places[node.inputs[0].0].clone();
                }
                _ => {
                    let slot = slots[&i];
                    let out = Buf { buffer: arena_buffers[slot.pool].clone(), offset: slot.offset, size: bytes.max(4) };
                    places[i] = Some(Place::Buffer(out.clone()));
                    let operands = node
                        .inputs
                        .iter()
                        .map(|t| match places[t.0].as_ref().expect("inputs precede users") {
                            Place::Weight(name) => Ok(Operand::Weight(weights.get(name)?, name.as_str())),
                            Place::Host(name) => Err(OpError::Limits {
                                node: node.label.clone(),
                                message: format!("{name} is kept on the host; only an embedding lookup of graph input ids may read it"),
                            }),
                            Place::Buffer(b) => Ok(Operand::Act(b.clone())),
                        })
                        .collect::<Result<Vec<_>, OpError>>()?;
                    let cx = NodeCx {
                        node,
                        inputs: operands,
                        in_shapes: node.inputs.iter().map(|t| graph.shape(*t).to_vec()).collect(),
                        in_dtypes: node.inputs.iter().map(|t| graph.node(*t).dtype).collect(),
                        out,
                    };
                    kernels::compile(&mut kb, &cx)?;
                }
            }
        }
        let (steps, scratch_bytes) = kb.finish();
        let program = Self {
            steps: Vec::new(),
            places,
            inputs,
            gathers,
            outputs: graph.outputs.clone(),
            dtypes: graph.nodes.iter().map(|n| n.dtype).collect(),
            numels: graph.nodes.iter().map(|n| n.numel()).collect(),
            activation_bytes: arena.total_bytes() + input_bytes + scratch_bytes,
            dispatches: 0,
        };
        Ok((steps, program))
    }

    /// Writes a run-time input (queued; takes effect at the next `run`).
    /// Lookups in tables kept on the host (`weights`) are gathered here, from `name`'s ids.
    pub fn set_input(&self, ctx: &GpuContext, weights: &GpuWeights, name: &str, value: &HostTensor) -> Result<(), OpError> {
        let (t, dtype, numel) = self.inputs.get(name).ok_or_else(|| OpError::Input { name: name.into(), message: "the graph has no such input".into() })?;
        if value.len() != *numel {
            return Err(OpError::Input { name: name.into(), message: format!("{} values, the graph wants {numel}", value.len()) });
        }
        let bytes: &[u8] = match (value, dtype) {
            (HostTensor::F32(v), DType::F32) => bytemuck::cast_slice(v),
            (HostTensor::U32(v), DType::U32) => bytemuck::cast_slice(v),
            _ => return Err(OpError::Input { name: name.into(), message: format!("expected {dtype:?} values") }),
        };
        if let Some(Place::Buffer(b)) = &self.places[t.0] {
            if !bytes.is_empty() {
                ctx.queue.write_buffer(&b.buffer, b.offset, bytes);
            }
        }
        for g in self.gathers.iter().filter(|g| g.ids == name) {
            let (HostTensor::U32(ids), Some(table)) = (value, weights.host(&g.table)) else {
                return Err(OpError::MissingWeight { name: g.table.clone() });
            };
            let (rows, d) = (table.shape[0], table.shape[1]);
            let row_bytes = table.storage.byte_len(d);
            let mut out = Vec::with_capacity(4 * d * ids.len());
            for &id in ids {
                let id = id as usize;
                if id >= rows {
                    return Err(OpError::Input { name: name.into(), message: format!("id {id} is past the {rows} rows of {}", g.table) });
                }
                let row = crate::ops::quant::dequantize(table.storage, &table.bytes[id * row_bytes..(id + 1) * row_bytes]);
                out.extend_from_slice(bytemuck::cast_slice(&row));
            }
            if !out.is_empty() {
                ctx.queue.write_buffer(&g.out.buffer, g.out.offset, &out);
            }
        }
        Ok(())
    }

    /// Encodes every dispatch into one compute pass and submits it. No readback.
    pub fn run(&self, ctx: &GpuContext) {
        let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("program") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("program"), timestamp_writes: None });
            for s in &self.steps {
                pass.set_pipeline(&s.pipeline);
                pass.set_bind_group(0, &s.bind_group, &[]);
                pass.dispatch_workgroups(s.workgroups[0], s.workgroups[1], s.workgroups[2]);
            }
        }
        ctx.queue.submit([encoder.finish()]);
    }

    /// Reads a graph output back to the host.
    pub async fn read(&self, ctx: &GpuContext, t: TensorId) -> Result<HostTensor, OpError> {
        if !self.outputs.contains(&t) {
            return Err(OpError::Input { name: format!("tensor {}", t.0), message: "is not a graph output (mark it with Graph::output)".into() });
        }
        let Some(Place::Buffer(b)) = &self.places[t.0] else {
            return Err(OpError::Input { name: format!("tensor {}", t.0), message: "is a weight, not a result".into() });
        };
        let bytes = crate::gpu::read_bytes(ctx, &b.buffer, b.offset, (self.numels[t.0] * 4) as u64).await.map_err(OpError::Gpu)?;
        Ok(match self.dtypes[t.0] {
            DType::F32 => HostTensor::F32(bytemuck::pod_collect_to_vec(&bytes)),
            DType::U32 => HostTensor::U32(bytemuck::pod_collect_to_vec(&bytes)),
        })
    }

    /// Labels of the recorded dispatches, in order.
    pub fn dispatch_labels(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.label.as_str()).collect()
    }
}
