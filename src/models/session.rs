//! A loaded model on one backend: its weights (host store for the CPU, GPU buffers for the
//! GPU), the shapes the graph builders check against, and the compiled graphs. Models build
//! a graph once per input shape; the session compiles it (GPU: pipelines, bind groups and
//! buffers, recorded once) and runs it many times with new inputs.

use std::collections::HashMap;

use crate::error::OpError;
use crate::gpu::GpuContext;
use crate::ops::cpu::profile::OpProfile;
use crate::ops::cpu::{CpuExecutor, CpuTensors, HostTensor};
use crate::ops::gpu::{GpuProgram, GpuWeights, PipelineCache};
use crate::ops::weights::HostWeight;
use crate::ops::{Graph, StorageType, TensorId, WeightShapes, WeightStore};
use crate::weights::manifest::Manifest;

/// Weight name -> shape, for building graphs without touching the weights themselves.
#[derive(Debug, Clone, Default)]
pub struct ShapeMap(HashMap<String, Vec<usize>>);

impl ShapeMap {
    /// Shapes of every tensor in a manifest.
    pub fn from_manifest(m: &Manifest) -> Self {
        Self(m.tensors.iter().map(|t| (t.name.clone(), t.shape.clone())).collect())
    }

    /// Shapes of every tensor in a host store.
    pub fn from_store(s: &WeightStore) -> Self {
        Self(s.names().into_iter().map(|n| (n.to_string(), s.get(n).expect("listed").shape.clone())).collect())
    }

    /// Shapes of `(name, shape)` pairs (a schema, for weights made or streamed elsewhere).
    pub fn from_list(list: impl IntoIterator<Item = (String, Vec<usize>)>) -> Self {
        Self(list.into_iter().collect())
    }

    /// Whether the model has a tensor with this name.
    /// Every weight's name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.0.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    pub fn get(&self, name: &str) -> Option<&Vec<usize>> {
        self.0.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

impl WeightShapes for ShapeMap {
    fn weight_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.0.get(name).cloned()
    }
}

/// Where the arithmetic happens.
#[allow(clippy::large_enum_variant)] // one per session
pub enum Backend {
    /// Natively every weight is expanded to f32 once, when the session is made (`expanded`;
    /// `weights` is then empty): re-expanding them per step was 44% of a UNet step. Those
    /// that graphs read only as linears' or only as convolutions' weights are then packed
    /// for the GEMM, at compile. In the page, where f32 copies of a model would not fit in
    /// 4 GiB, each run packs linear and conv weights straight from `weights`
    /// (`ops/cpu/stored.rs`), except those stored as f32 (packed once, at compile), and
    /// expands only the rest. `bytes`: the weights as stored.
    Cpu {
        weights: WeightStore,
        expanded: CpuTensors,
        bytes: u64,
        /// The fast precision (Winograd 3x3 convolutions); the process's default when made.
        fast: bool,
    },
    Gpu {
        ctx: GpuContext,
        weights: GpuWeights,
        cache: PipelineCache,
    },
}

/// A graph ready to run on the session's backend.
pub struct Compiled {
    graph: Graph<'static>,
    program: Option<GpuProgram>,
    /// CPU: the inputs given so far (the GPU keeps them in its buffers).
    inputs: HashMap<String, HostTensor>,
}

impl Compiled {
    /// Bytes of activations the GPU program holds (0 on the CPU).
    pub fn activation_bytes(&self) -> u64 {
        self.program.as_ref().map_or(0, |p| p.activation_bytes)
    }

    /// The graph's outputs, in the order they were marked.
    pub fn outputs(&self) -> &[TensorId] {
        &self.graph.outputs
    }

    /// Floating-point operations of one run, counted from the graph's shapes (multiply-adds
    /// count 2; see `ops::cpu::profile::flops`).
    pub fn flops(&self) -> f64 {
        self.scaled_flops(|_, _| 1.0)
    }

    /// [`flops`](Self::flops) with each node's count times `scale(node, input shapes)`.
    fn scaled_flops(&self, scale: impl Fn(&crate::ops::Node, &[&[usize]]) -> f64) -> f64 {
        let g = &self.graph;
        g.nodes
            .iter()
            .map(|n| {
                let shapes: Vec<&[usize]> = n.inputs.iter().map(|&t| g.shape(t)).collect();
                crate::ops::cpu::profile::flops(n, &shapes) * scale(n, &shapes)
            })
            .sum()
    }
}

/// A model's weights on a backend.
pub struct Session {
    pub shapes: ShapeMap,
    pub backend: Backend,
}

impl Session {
    /// A CPU session over a host store.
    pub fn cpu(weights: WeightStore) -> Self {
        let (shapes, bytes) = (ShapeMap::from_store(&weights), weights.byte_size() as u64);
        #[cfg(not(target_arch = "wasm32"))]
        let (weights, expanded) = (WeightStore::new(), CpuTensors::expand(weights));
        #[cfg(target_arch = "wasm32")]
        let expanded = CpuTensors::new();
        Self { shapes, backend: Backend::Cpu { weights, expanded, bytes, fast: crate::ops::cpu::winograd::fast_precision() } }
    }

    /// A CPU session that keeps the weights as stored and expands each to f32 only while a
    /// run reads it, as the page's CPU backend does: for models whose f32 copy would not fit
    /// in memory (SDXL at q4_0 is about 2 GB stored, 14 GB expanded).
    pub fn cpu_streaming(weights: WeightStore) -> Self {
        let (shapes, bytes) = (ShapeMap::from_store(&weights), weights.byte_size() as u64);
        Self { shapes, backend: Backend::Cpu { weights, expanded: CpuTensors::new(), bytes, fast: crate::ops::cpu::winograd::fast_precision() } }
    }

    /// Bytes of the weights as stored (on the GPU, or the host store the CPU reads).
    pub fn weight_bytes(&self) -> u64 {
        match &self.backend {
            Backend::Gpu { weights, .. } => weights.bytes,
            Backend::Cpu { bytes, .. } => *bytes,
        }
    }

    /// A GPU session: uploads the host store (native and tests; the browser streams shards
    /// straight into `GpuWeights` and uses `gpu_streamed`).
    pub fn gpu(ctx: GpuContext, store: &WeightStore) -> Result<Self, OpError> {
        let weights = GpuWeights::upload(&ctx, store)?;
        Ok(Self { shapes: ShapeMap::from_store(store), backend: Backend::Gpu { ctx, weights, cache: PipelineCache::new() } })
    }

    /// A GPU session over weights already streamed to the device.
    pub fn gpu_streamed(ctx: GpuContext, manifest: &Manifest, weights: GpuWeights) -> Self {
        Self::gpu_with(ctx, ShapeMap::from_manifest(manifest), weights)
    }

    /// A GPU session over weights written tensor by tensor, with their shapes.
    pub fn gpu_with(ctx: GpuContext, shapes: ShapeMap, weights: GpuWeights) -> Self {
        Self { shapes, backend: Backend::Gpu { ctx, weights, cache: PipelineCache::new() } }
    }

    /// Weight `name` as stored (LoRAs keep the base of each layer they change). A native CPU
    /// session holds f32 expansions, so there the stored form is f32.
    pub async fn read_weight(&self, name: &str) -> Result<HostWeight, OpError> {
        match &self.backend {
            Backend::Gpu { ctx, weights, .. } => weights.read_stored(ctx, name).await,
            Backend::Cpu { weights, expanded, .. } => match expanded.get(name) {
                Some(t) => {
                    let values = t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| OpError::BadWeight { name: name.into(), message: e.to_string() })?;
                    Ok(HostWeight { shape: t.dims().to_vec(), storage: StorageType::F32, bytes: bytemuck::cast_slice(&values).to_vec() })
                }
                None => weights.get(name).cloned(),
            },
        }
    }

    /// Replaces weight `name` with `w` (same shape, stored as `read_weight` gave it). Compiled
    /// graphs see the new values on their next run.
    pub fn write_weight(&mut self, name: &str, w: &HostWeight) -> Result<(), OpError> {
        if self.shapes.0.get(name) != Some(&w.shape) {
            return Err(OpError::BadWeight { name: name.into(), message: format!("{:?} does not replace {:?}", w.shape, self.shapes.0.get(name)) });
        }
        match &mut self.backend {
            Backend::Gpu { ctx, weights, .. } => weights.rewrite(ctx, name, &w.bytes),
            Backend::Cpu { weights, expanded, .. } => match expanded.set(name, &w.shape, w.to_f32()) {
                Ok(true) => Ok(()),
                Ok(false) => weights.insert_raw(name, w.clone()),
                Err(e) => Err(OpError::BadWeight { name: name.into(), message: e.to_string() }),
            },
        }
    }

    /// Floating-point operations a run of `c` makes on this session: `Compiled::flops`, with
    /// the convolutions that a fast CPU session runs as Winograd F(2x2,3x3) counted at the 16
    /// multiplies of their 36 that they make. What the decode's progress estimate divides:
    /// in the fast precision a decode counted in direct FLOPs looked twice its length.
    pub fn work(&self, c: &Compiled) -> f64 {
        use crate::ops::cpu::winograd;
        let fast = matches!(self.backend, Backend::Cpu { fast: true, .. });
        c.scaled_flops(|n, shapes| match n.op {
            crate::ops::Op::Conv2d { stride, .. } if fast && winograd::suits(shapes[1], stride, shapes[0]) => winograd::MULTIPLIES,
            _ => 1.0,
        })
    }

    /// Sets a CPU session's precision: fast (Winograd 3x3 convolutions) or exact. A GPU
    /// session's is its context's (`gpu::Precision`), set when the device was opened.
    pub fn set_cpu_precision(&mut self, precision: crate::gpu::Precision) {
        if let Backend::Cpu { fast, .. } = &mut self.backend {
            *fast = precision == crate::gpu::Precision::Fast;
        }
    }

    /// The arithmetic the session runs: "exact", or "fast (..)" with what it uses: on the
    /// GPU `gpu::Precision`'s, on the CPU Winograd 3x3 convolutions.
    pub fn precision(&self) -> String {
        match &self.backend {
            Backend::Cpu { fast, .. } => crate::ops::cpu::winograd::describe(*fast).into(),
            Backend::Gpu { ctx, .. } => ctx.report.precision.clone(),
        }
    }

    /// "cpu" or "gpu".
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Cpu { .. } => "cpu",
            Backend::Gpu { .. } => "gpu",
        }
    }

    /// Builds a graph with `build` against this model's weights and compiles it.
    pub async fn compile(&mut self, build: impl FnOnce(&mut Graph) -> Result<(), OpError>) -> Result<Compiled, OpError> {
        let mut graph = Graph::new(&self.shapes);
        build(&mut graph)?;
        let graph = graph.detach();
        let program = match &mut self.backend {
            Backend::Cpu { weights, expanded, .. } => {
                if crate::ops::cpu::pack_session_linears() {
                    expanded.pack_linears(&graph);
                    expanded.pack_stored_linears(&graph, weights);
                }
                if crate::ops::cpu::gemm_conv() {
                    expanded.pack_convs(&graph);
                    expanded.pack_stored_convs(&graph, weights);
                }
                None
            }
            Backend::Gpu { ctx, weights, cache } => Some(GpuProgram::compile(ctx, &graph, weights, cache).await?),
        };
        Ok(Compiled { graph, program, inputs: HashMap::new() })
    }

    /// Sets an input for the next runs (it stays until replaced).
    pub fn set_input(&self, c: &mut Compiled, name: &str, value: HostTensor) -> Result<(), OpError> {
        match (&self.backend, &c.program) {
            (Backend::Gpu { ctx, weights, .. }, Some(p)) => p.set_input(ctx, weights, name, &value),
            _ => {
                c.inputs.insert(name.to_string(), value);
                Ok(())
            }
        }
    }

    /// Runs the graph and reads back its outputs, in the order they were marked.
    pub async fn run(&self, c: &Compiled) -> Result<Vec<HostTensor>, OpError> {
        match (&self.backend, &c.program) {
            (Backend::Gpu { ctx, .. }, Some(p)) => {
                p.run(ctx);
                let mut out = Vec::with_capacity(c.graph.outputs.len());
                for &t in &c.graph.outputs {
                    out.push(p.read(ctx, t).await?);
                }
                Ok(out)
            }
            (Backend::Cpu { weights, expanded, fast, .. }, _) => Ok(cpu_run(weights, expanded, *fast, c, false)?.0),
            (Backend::Gpu { .. }, None) => unreachable!("GPU sessions compile a program"),
        }
    }

    /// `run`, with the time per kind of op on the CPU backend (None on the GPU, whose
    /// dispatches are not timed one by one).
    pub async fn run_profiled(&self, c: &Compiled) -> Result<(Vec<HostTensor>, Option<OpProfile>), OpError> {
        match &self.backend {
            Backend::Cpu { weights, expanded, fast, .. } => cpu_run(weights, expanded, *fast, c, true),
            Backend::Gpu { .. } => Ok((self.run(c).await?, None)),
        }
    }
}

/// One run on the CPU backend, optionally timed per kind of op.
fn cpu_run(weights: &WeightStore, expanded: &CpuTensors, fast: bool, c: &Compiled, profile: bool) -> Result<(Vec<HostTensor>, Option<OpProfile>), OpError> {
    let mut exec = CpuExecutor::streaming(weights).with_expanded(expanded).fast_precision(fast);
    if profile {
        exec = exec.profiled();
    }
    let mut values = exec.run(&c.graph, &c.inputs)?;
    let outputs = c.graph.outputs.iter().map(|t| values.remove(t).expect("executor returns every output")).collect();
    Ok((outputs, exec.take_profile()))
}

/// The f32 values of a result (models only read f32 outputs).
pub fn f32s(t: HostTensor) -> Vec<f32> {
    match t {
        HostTensor::F32(v) => v,
        HostTensor::U32(v) => v.into_iter().map(|x| x as f32).collect(),
    }
}

// pollster is a native dependency only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// A graph's operations counted by hand: a [2, 3] @ [3, 4] matmul (8 outputs of 3
    /// multiply-adds: 48) and attention over 10 queries and 20 keys, 2 heads of 4 (the
    /// scores and the weighted sum: 2 x 10 x 20 x (8 + 8) = 6400); inputs cost nothing.
    #[test]
    fn a_compiled_graph_counts_its_operations_by_hand() {
        let mut session = Session::cpu(WeightStore::new());
        let c = pollster::block_on(session.compile(|g| {
            let (a, b) = (g.input("a", &[2, 3]), g.input("b", &[3, 4]));
            let m = g.matmul(a, b, false)?;
            let q = g.input("q", &[1, 10, 8]);
            let kv = g.input("kv", &[1, 20, 8]);
            let o = g.attention(q, kv, kv, 2, 0.5, false)?;
            g.output(m);
            g.output(o);
            Ok(())
        }))
        .unwrap();
        assert_eq!(c.flops(), 48.0 + 6400.0);
    }

    /// A 3x3 convolution 16 -> 16 channels over 64x64 (2 x 16 x 9 x 16 x 4096 operations)
    /// and one over 32x32 (a quarter of that): in the fast precision the first runs as
    /// Winograd and counts 16 of its 36 multiplies; the second, below 64x64, stays direct.
    #[test]
    fn a_fast_session_counts_winograd_convolutions_at_their_multiplies() {
        let mut session = Session::cpu(WeightStore::new());
        let c = pollster::block_on(session.compile(|g| {
            let w = g.input("w", &[16, 16, 3, 3]);
            let big = g.input("big", &[1, 16, 64, 64]);
            let small = g.input("small", &[1, 16, 32, 32]);
            let y = g.conv2d(big, w, None, 1, [1; 4])?;
            let z = g.conv2d(small, w, None, 1, [1; 4])?;
            g.output(y);
            g.output(z);
            Ok(())
        }))
        .unwrap();
        let (big, small) = (2.0 * 16.0 * 9.0 * 16.0 * 4096.0, 2.0 * 16.0 * 9.0 * 16.0 * 1024.0);
        assert_eq!(session.work(&c), big + small);
        session.set_cpu_precision(crate::gpu::Precision::Fast);
        assert_eq!(session.work(&c), big * 16.0 / 36.0 + small);
    }
}
