//! Evaluates a graph node by node with candle tensors.

use std::collections::HashMap;

use candle_core::{DType as CDType, Device, Tensor, D};

use super::profile::OpProfile;
use super::resident::{conv_only_weights, linear_only_weights, weights_read_only_as, CpuTensors};
use super::stored::StoredRows;
use super::{attention, conv_transpose, elementwise, gemm_ops, nn, winograd};
use crate::error::OpError;
use crate::ops::graph::{BinaryOp, DType, Graph, Op, TensorId, UnaryOp};
use crate::ops::weights::WeightStore;

/// Dense ops and attention go through our packed GEMM in the browser, where candle's matmul is single
/// threaded and barely vectorized; natively candle's multithreaded matmul is faster (but not
/// the page's arithmetic: `EASEL_CPU_ARITHMETIC=page[-fused]` puts matmuls on our GEMM too).
const USE_GEMM: bool = cfg!(target_arch = "wasm32");
/// Attention runs in blocks of query rows everywhere (heads on every core natively): memory
/// bounded by one block per thread instead of whole scores. EASEL_CPU_ATTENTION=candle
/// picks candle's whole-scores path again, to compare.
pub(crate) fn blocked_attention() -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static CHOICE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *CHOICE.get_or_init(|| std::env::var("EASEL_CPU_ATTENTION").map_or(true, |v| v != "candle"))
    }
    #[cfg(target_arch = "wasm32")]
    true
}

/// SiLU, tanh, the GELUs and most adds/muls on every core, with `libm`'s exponential so
/// that the CLI computes the page's bits (`elementwise.rs`); EASEL_CPU_ELEMENTWISE=candle
/// picks candle's single-threaded ops again, to compare.
fn threaded_elementwise() -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static CHOICE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *CHOICE.get_or_init(|| std::env::var("EASEL_CPU_ELEMENTWISE").map_or(true, |v| v != "candle"))
    }
    #[cfg(target_arch = "wasm32")]
    true
}

/// Linear layers: our GEMM in the page. A session packs its linear weights for it once,
/// when a graph is compiled: natively all of them (`CpuTensors::pack_linears`), in the page
/// those stored as f32 (`CpuTensors::pack_stored_linears`; the others are unpacked from
/// their blocks at each call). Natively a linear whose weight is not packed uses candle's
/// matmul unless EASEL_CPU_LINEAR=gemm (or the page's arithmetic, `super::page_arithmetic`),
/// and EASEL_CPU_LINEAR=candle packs none, to compare.
pub fn pack_session_linears() -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static CHOICE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *CHOICE.get_or_init(|| std::env::var("EASEL_CPU_LINEAR").map_or(true, |v| v != "candle"))
    }
    #[cfg(target_arch = "wasm32")]
    true
}

fn gemm_linear() -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static CHOICE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *CHOICE.get_or_init(|| std::env::var("EASEL_CPU_LINEAR").is_ok_and(|v| v == "gemm") || super::page_arithmetic())
    }
    #[cfg(target_arch = "wasm32")]
    true
}

/// Convolutions go through our implicit-im2col GEMM everywhere (rows split among the cores
/// natively): candle's conv2d ran at half its own matmul's GFLOP/s in the UNet (`easel bench
/// unet --profile`). EASEL_CPU_CONV=candle picks candle's again, to compare (and then no
/// session packs its convolution weights).
pub fn gemm_conv() -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static CHOICE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *CHOICE.get_or_init(|| std::env::var("EASEL_CPU_CONV").map_or(true, |v| v != "candle"))
    }
    #[cfg(target_arch = "wasm32")]
    true
}

/// A run-time input or a result, on the host.
#[derive(Debug, Clone, PartialEq)]
pub enum HostTensor {
    F32(Vec<f32>),
    U32(Vec<u32>),
}

impl HostTensor {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::U32(v) => v.len(),
        }
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a linear or a convolution reads its weight from, instead of an f32 tensor.
#[derive(Clone, Copy)]
enum Direct<'w> {
    Packed(&'w super::resident::PackedLinear),
    PackedConv(&'w super::resident::PackedConv),
    Stored(&'w crate::ops::weights::HostWeight),
}

/// The CPU backend. Weights are converted to f32 candle tensors once and kept.
pub struct CpuExecutor<'w> {
    weights: &'w WeightStore,
    /// Weights already expanded (a native session's), read before the store.
    expanded: Option<&'w CpuTensors>,
    cache: HashMap<String, Tensor>,
    keep_weights: bool,
    profile: Option<OpProfile>,
    /// The fast precision: 3x3 convolutions through Winograd (`winograd.rs`).
    fast: bool,
}

impl<'w> CpuExecutor<'w> {
    /// A backend over `weights`.
    pub fn new(weights: &'w WeightStore) -> Self {
        Self { weights, expanded: None, cache: HashMap::new(), keep_weights: true, profile: None, fast: winograd::fast_precision() }
    }

    /// A backend that keeps weights as stored: linears and convolutions pack theirs straight
    /// from the blocks, and any other weight is expanded to f32 only while a run needs it
    /// (a whole model kept expanded next to its quantized store would not fit in wasm's 4 GiB).
    pub fn streaming(weights: &'w WeightStore) -> Self {
        Self { weights, expanded: None, cache: HashMap::new(), keep_weights: false, profile: None, fast: winograd::fast_precision() }
    }

    /// Reads weights already expanded to f32 (a native CPU session's) before the store.
    pub fn with_expanded(mut self, expanded: &'w CpuTensors) -> Self {
        self.expanded = Some(expanded);
        self
    }

    /// Runs in the fast precision (or not), whatever the process's default
    /// (`winograd::set_fast_precision`).
    pub fn fast_precision(mut self, fast: bool) -> Self {
        self.fast = fast;
        self
    }

    /// Times every node by kind of op (see `profile`); `take_profile` gives the totals.
    pub fn profiled(mut self) -> Self {
        self.profile = Some(OpProfile::default());
        self
    }

    /// The totals of the runs so far (when `profiled`).
    pub fn take_profile(&mut self) -> Option<OpProfile> {
        self.profile.take()
    }

    fn weight(&mut self, name: &str) -> Result<Tensor, OpError> {
        if let Some(t) = self.expanded.and_then(|e| e.get(name)).or_else(|| self.cache.get(name).cloned()) {
            return Ok(t);
        }
        let w = self.weights.get(name)?;
        // Block formats are expanded to f32: the CPU reference computes on exactly the
        // values the GPU kernels dequantize on the fly.
        let t = Tensor::from_vec(w.to_f32(), w.shape.as_slice(), &Device::Cpu)?;
        if self.keep_weights {
            self.cache.insert(name.to_string(), t.clone());
        }
        Ok(t)
    }

    /// Evaluates every node; returns the graph's outputs.
    pub fn run(&mut self, graph: &Graph, inputs: &HashMap<String, HostTensor>) -> Result<HashMap<TensorId, HostTensor>, OpError> {
        let mut values: Vec<Option<Tensor>> = vec![None; graph.nodes.len()];
        let mut last_use = vec![0usize; graph.nodes.len()];
        for (i, node) in graph.nodes.iter().enumerate() {
            for t in &node.inputs {
                last_use[t.0] = i;
            }
        }
        let direct = self.direct_weights(graph);
        let started = self.profile.is_some().then(crate::platform::now_ms);
        for (i, node) in graph.nodes.iter().enumerate() {
            let args: Vec<Tensor> = node.inputs.iter().map(|t| values[t.0].clone().expect("inputs precede their users")).collect();
            let t0 = self.profile.is_some().then(crate::platform::now_ms);
            let weight = node.inputs.get(1).and_then(|w| direct.get(&w.0)).copied();
            let direct_weight = direct.contains_key(&i);
            let (out, loops) = if self.profile.is_some() {
                let (out, used) = super::threads::measured(|| self.node_value(node, direct_weight, weight, &args, inputs));
                (out, Some(used))
            } else {
                (self.node_value(node, direct_weight, weight, &args, inputs), None)
            };
            let out = out.map_err(|e| match e {
                OpError::Cpu(c) => OpError::Shape { node: node.label.clone(), message: c.to_string() },
                other => other,
            })?;
            if let (Some(p), Some(t0), Some(loops), false) = (self.profile.as_mut(), t0, loops, direct_weight) {
                let shapes: Vec<&[usize]> = node.inputs.iter().map(|t| graph.shape(*t)).collect();
                p.add(node, &shapes, crate::platform::now_ms() - t0, loops);
            }
            values[i] = Some(out);
            // Free what no later node reads (outputs are kept).
            for t in &node.inputs {
                if last_use[t.0] == i && !graph.outputs.contains(t) {
                    values[t.0] = None;
                }
            }
        }
        if let (Some(p), Some(t0)) = (self.profile.as_mut(), started) {
            *p.wall_millis.get_or_insert(0.0) += crate::platform::now_ms() - t0;
        }
        graph
            .outputs
            .iter()
            .map(|&t| {
                let v = values[t.0].as_ref().expect("outputs are kept").flatten_all()?;
                let host = match graph.node(t).dtype {
                    DType::F32 => HostTensor::F32(v.to_vec1::<f32>()?),
                    DType::U32 => HostTensor::U32(v.to_dtype(CDType::U32)?.to_vec1::<u32>()?),
                };
                Ok((t, host))
            })
            .collect()
    }

    /// One node's value: a GEMM straight from its weight's packed or stored form where the
    /// weight is read in place (`direct_weight`: this node is such a weight, left unmade).
    fn node_value(
        &mut self,
        node: &crate::ops::Node,
        direct_weight: bool,
        weight: Option<Direct<'w>>,
        args: &[Tensor],
        inputs: &HashMap<String, HostTensor>,
    ) -> Result<Tensor, OpError> {
        match (&node.op, weight) {
            // Read from where the GEMM can pack it without an f32 tensor of it.
            (Op::Weight { .. }, _) if direct_weight => Ok(Tensor::zeros(0, CDType::F32, &Device::Cpu)?),
            (Op::Linear, Some(Direct::Packed(p))) => gemm_ops::linear_from(&args[0], p.n, &p.b, args.get(2), false).map_err(OpError::from),
            (Op::Linear, Some(Direct::Stored(w))) => gemm_ops::linear_from(&args[0], w.shape[0], &StoredRows::new(w), args.get(2), true).map_err(OpError::from),
            // The fast precision's Winograd convolutions transform the weight at each call
            // (held transformed, a session's convolution weights would take 16/9 the memory).
            (Op::Conv2d { stride, padding }, Some(Direct::PackedConv(p))) if self.fast && winograd::suits(&p.dims, *stride, args[0].dims()) => {
                winograd::conv3x3_rows(&args[0], p.dims, &p.a.to_rows(), args.get(2), *padding).map_err(OpError::from)
            }
            (Op::Conv2d { stride, padding }, Some(Direct::Stored(w))) if self.fast && winograd::suits(&w.shape, *stride, args[0].dims()) => {
                winograd::conv3x3_rows(&args[0], [w.shape[0], w.shape[1], 3, 3], &w.to_f32(), args.get(2), *padding).map_err(OpError::from)
            }
            (Op::Conv2d { stride, padding }, Some(Direct::PackedConv(p))) => gemm_ops::conv2d_from(&args[0], p.dims, &p.a, args.get(2), *stride, *padding).map_err(OpError::from),
            (Op::Conv2d { stride, padding }, Some(Direct::Stored(w))) => {
                let dims: [usize; 4] =
                    w.shape.as_slice().try_into().map_err(|_| OpError::Shape { node: node.label.clone(), message: format!("conv weight of shape {:?}", w.shape) })?;
                gemm_ops::conv2d_from(&args[0], dims, &StoredRows::new(w), args.get(2), *stride, *padding).map_err(OpError::from)
            }
            _ => self.eval(node, args, inputs),
        }
    }

    /// The Weight nodes (by index) that their readers take without an f32 tensor: a
    /// session's packed linear and convolution weights, and in a streaming run (the page's)
    /// every other weight read only by linears and convolutions, packed straight from its
    /// stored bytes.
    fn direct_weights(&self, graph: &Graph) -> HashMap<usize, Direct<'w>> {
        let (expanded, store): (Option<&'w CpuTensors>, &'w WeightStore) = (self.expanded, self.weights);
        let mut direct = HashMap::new();
        if let Some(e) = expanded {
            for (i, name) in linear_only_weights(graph) {
                if let Some(p) = e.packed(name) {
                    direct.insert(i, Direct::Packed(p));
                }
            }
            if gemm_conv() {
                for (i, name) in conv_only_weights(graph) {
                    if let Some(p) = e.packed_conv(name) {
                        direct.insert(i, Direct::PackedConv(p));
                    }
                }
            }
        }
        if !self.keep_weights {
            let conv = gemm_conv();
            for (i, name) in weights_read_only_as(graph, |op, slot| slot == 1 && (matches!(op, Op::Linear) || conv && matches!(op, Op::Conv2d { .. }))) {
                let held = expanded.is_some_and(|e| e.holds(name));
                if let (false, Ok(w)) = (held, store.get(name)) {
                    direct.entry(i).or_insert(Direct::Stored(w));
                }
            }
        }
        direct
    }

    fn eval(&mut self, node: &crate::ops::Node, a: &[Tensor], inputs: &HashMap<String, HostTensor>) -> Result<Tensor, OpError> {
        let dev = &Device::Cpu;
        Ok(match &node.op {
            Op::Input { name, dtype } => {
                let value = inputs.get(name).ok_or_else(|| OpError::Input { name: name.clone(), message: "not supplied".into() })?;
                if value.len() != node.numel() {
                    return Err(OpError::Input { name: name.clone(), message: format!("{} values for shape {:?}", value.len(), node.shape) });
                }
                match (value, dtype) {
                    (HostTensor::F32(v), DType::F32) => Tensor::from_slice(v, node.shape.as_slice(), dev)?,
                    (HostTensor::U32(v), DType::U32) => Tensor::from_slice(v, node.shape.as_slice(), dev)?,
                    _ => return Err(OpError::Input { name: name.clone(), message: format!("expected {dtype:?} values") }),
                }
            }
            Op::Weight { name } => self.weight(name)?,
            Op::Linear if gemm_linear() => gemm_ops::linear(&a[0], &a[1], a.get(2))?,
            Op::Linear => nn::linear(&a[0], &a[1], a.get(2))?,
            Op::MatMul { transpose_b } if USE_GEMM || super::page_arithmetic() => gemm_ops::matmul(&a[0], &a[1], *transpose_b)?,
            Op::MatMul { transpose_b } => {
                let b = if *transpose_b { a[1].transpose(D::Minus2, D::Minus1)? } else { a[1].clone() };
                a[0].contiguous()?.matmul(&b.contiguous()?)?
            }
            Op::Conv2d { stride, padding } if gemm_conv() && self.fast && winograd::suits(a[1].dims(), *stride, a[0].dims()) => {
                let dims: [usize; 4] = a[1].dims4()?.into();
                gemm_ops::with_values(&a[1], |w| winograd::conv3x3_rows(&a[0], dims, w, a.get(2), *padding))??
            }
            Op::Conv2d { stride, padding } if gemm_conv() => gemm_ops::conv2d(&a[0], &a[1], a.get(2), *stride, *padding)?,
            Op::Conv2d { stride, padding } => nn::conv2d(&a[0], &a[1], a.get(2), *stride, *padding)?,
            Op::GroupNorm { groups, eps, silu } => nn::group_norm(&a[0], &a[1], &a[2], *groups, *eps, *silu)?,
            Op::LayerNorm { eps } if a.len() == 1 => {
                let d = node.shape[node.shape.len() - 1];
                candle_nn::ops::layer_norm(&a[0].contiguous()?, &Tensor::ones(d, CDType::F32, dev)?, &Tensor::zeros(d, CDType::F32, dev)?, *eps)?
            }
            Op::LayerNorm { eps } => candle_nn::ops::layer_norm(&a[0].contiguous()?, &a[1], &a[2], *eps)?,
            Op::RmsNorm { eps } if a.len() == 1 => candle_nn::ops::rms_norm(&a[0].contiguous()?, &Tensor::ones(node.shape[node.shape.len() - 1], CDType::F32, dev)?, *eps)?,
            Op::RmsNorm { eps } => candle_nn::ops::rms_norm(&a[0].contiguous()?, &a[1], *eps)?,
            Op::Softmax => attention::softmax_last_dim(&a[0])?,
            Op::Attention { heads, scale, causal } if blocked_attention() => attention::attention(&a[0], &a[1], &a[2], *heads, *scale, *causal)?,
            Op::Attention { heads, scale, causal } => nn::attention(&a[0], &a[1], &a[2], *heads, *scale, *causal)?,
            Op::Unary(u) => match u {
                UnaryOp::Silu if threaded_elementwise() => elementwise::silu(&a[0])?,
                UnaryOp::Silu => a[0].silu()?,
                UnaryOp::Gelu => a[0].gelu_erf()?,
                UnaryOp::GeluTanh if threaded_elementwise() => elementwise::gelu_tanh(&a[0])?,
                #[allow(clippy::disallowed_methods)] // EASEL_CPU_ELEMENTWISE=candle: the comparison path
                UnaryOp::GeluTanh => a[0].gelu()?,
                UnaryOp::QuickGelu if threaded_elementwise() => elementwise::quick_gelu(&a[0])?,
                #[allow(clippy::disallowed_methods)] // EASEL_CPU_ELEMENTWISE=candle: the comparison path
                UnaryOp::QuickGelu => (&a[0] * candle_nn::ops::sigmoid(&(&a[0] * 1.702)?)?)?,
                UnaryOp::Relu => a[0].relu()?,
                UnaryOp::Tanh if threaded_elementwise() => elementwise::tanh(&a[0])?,
                #[allow(clippy::disallowed_methods)] // EASEL_CPU_ELEMENTWISE=candle: the comparison path
                UnaryOp::Tanh => a[0].tanh()?,
                UnaryOp::Affine { mul, add } => a[0].affine(*mul as f64, *add as f64)?,
            },
            Op::Binary(b) => match threaded_elementwise().then(|| elementwise::binary(&a[0], &a[1], *b)).transpose()?.flatten() {
                Some(t) => t,
                None => match b {
                    BinaryOp::Add => a[0].broadcast_add(&a[1])?,
                    BinaryOp::Sub => a[0].broadcast_sub(&a[1])?,
                    BinaryOp::Mul => a[0].broadcast_mul(&a[1])?,
                },
            },
            Op::Geglu if threaded_elementwise() => elementwise::geglu(&a[0])?,
            Op::Geglu => {
                let d = node.shape[node.shape.len() - 1];
                (a[0].narrow(D::Minus1, 0, d)? * a[0].narrow(D::Minus1, d, d)?.gelu_erf()?)?
            }
            Op::Concat { axis } => Tensor::cat(a, *axis)?,
            Op::UpsampleNearest { height, width } => a[0].upsample_nearest2d(*height, *width)?,
            Op::Embedding => {
                let ids = a[0].flatten_all()?;
                a[1].index_select(&ids, 0)?.reshape(node.shape.as_slice())?
            }
            Op::TimestepEmbedding { dim, flip_sin_to_cos, downscale_freq_shift, max_period } => {
                let t = a[0].to_vec1::<f32>()?;
                let v = nn::timestep_embedding(&t, *dim, *flip_sin_to_cos, *downscale_freq_shift, *max_period);
                Tensor::from_vec(v, (t.len(), *dim), dev)?
            }
            Op::Argmax => a[0].argmax_keepdim(D::Minus1)?.squeeze(D::Minus1)?,
            Op::TopK { k } => a[0].contiguous()?.arg_sort_last_dim(false)?.narrow(D::Minus1, 0, *k)?.contiguous()?,
            Op::VqNearest => nn::vq_nearest(&a[0], &a[1])?,
            Op::ConvTranspose2d { stride, padding } => conv_transpose::conv_transpose2d(&a[0], &a[1], a.get(2), *stride, *padding)?,
            Op::DepthwiseConv2d { padding } => nn::depthwise_conv2d(&a[0], &a[1], a.get(2), *padding)?,
            Op::ResponseNorm { eps } => nn::response_norm(&a[0], *eps)?,
            Op::GroupMoments { groups } => nn::group_moments(&a[0], *groups)?,
            Op::MomentsCombine { len, part_len, eps } => nn::moments_combine(&a[0], *len, *part_len, *eps)?,
            Op::GroupNormApply { groups, silu } => nn::group_norm_apply(&a[0], &a[1], &a[2], &a[3], *groups, *silu)?,
            Op::Reshape { shape } => a[0].reshape(shape.as_slice())?,
            Op::Permute { perm } => a[0].permute(perm.as_slice())?.contiguous()?,
            Op::Slice { axis, start, len } => a[0].narrow(*axis, *start, *len)?.contiguous()?,
        })
    }
}
