//! The op vocabulary as a static graph. Models build a `Graph` once (shapes are fixed within
//! a generation); the CPU executor evaluates it with candle, the GPU executor compiles it
//! into a replayable list of dispatches. Writing models against this one vocabulary keeps the
//! two backends from drifting apart.

use std::fmt;

use crate::error::OpError;

/// Index of a node's output in its graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub usize);

/// Element type of a node's output. Everything is f32 but token ids and indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    U32,
}

/// Elementwise functions of one tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    /// x * sigmoid(x).
    Silu,
    /// Exact GELU, 0.5 x (1 + erf(x / sqrt 2)).
    Gelu,
    /// GELU's tanh approximation.
    GeluTanh,
    /// CLIP's x * sigmoid(1.702 x).
    QuickGelu,
    /// max(x, 0).
    Relu,
    /// tanh(x).
    Tanh,
    /// mul * x + add.
    Affine { mul: f32, add: f32 },
}

/// Elementwise functions of two tensors, with NumPy broadcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
}

/// One operation. Input order and shapes are documented per variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// An activation supplied at run time.
    Input { name: String, dtype: DType },
    /// A weight from the weight store (possibly quantized).
    Weight { name: String },
    /// [x [.., K], w [N, K], bias [N]?] -> [.., N]; `w` in checkpoint layout (out, in).
    Linear,
    /// [a [B.., M, K], b [B.., K, N]] -> [B.., M, N]; with `transpose_b`, b is [B.., N, K].
    MatMul { transpose_b: bool },
    /// [x [B, C, H, W], w [O, C, kh, kw], bias [O]?] -> [B, O, Ho, Wo].
    /// `padding` is [top, bottom, left, right] (taming pads (0,1,0,1) before stride 2).
    Conv2d { stride: usize, padding: [usize; 4] },
    /// [x [B, C, ..], gamma [C], beta [C]] -> like x; optionally followed by SiLU.
    GroupNorm { groups: usize, eps: f32, silu: bool },
    /// [x [.., D], gamma [D], beta [D]] -> like x; [x] alone: no affine.
    LayerNorm { eps: f32 },
    /// [x [.., D], gamma [D]] -> like x; [x] alone: no scale.
    RmsNorm { eps: f32 },
    /// Softmax along the last axis.
    Softmax,
    /// [q [B, Lq, H*Dh], k [B, Lk, H*Dh], v [B, Lk, H*Dv]] -> [B, Lq, H*Dv].
    /// softmax(q k^T * scale) v per head, scores in f32, never materialized in full.
    Attention { heads: usize, scale: f32, causal: bool },
    /// Elementwise function.
    Unary(UnaryOp),
    /// Elementwise function of two broadcast tensors.
    Binary(BinaryOp),
    /// [x [.., 2N]] -> [.., N]: first half * gelu(second half), as diffusers' GEGLU.
    Geglu,
    /// Concatenation along `axis`.
    Concat { axis: usize },
    /// Nearest-neighbour upsampling of [B, C, H, W] to [B, C, height, width] (torch's
    /// `interpolate(mode="nearest")`: source index floor(dst * in / out)).
    UpsampleNearest { height: usize, width: usize },
    /// [ids (u32) [..], table [V, D]] -> [.., D].
    Embedding,
    /// [t [B]] -> [B, dim]: diffusers' `get_timestep_embedding`.
    TimestepEmbedding { dim: usize, flip_sin_to_cos: bool, downscale_freq_shift: f32, max_period: f32 },
    /// Index of the largest value along the last axis (u32), first one on ties.
    Argmax,
    /// Indices (u32) of the k largest values along the last axis, largest first.
    TopK { k: usize },
    /// [z [N, D], codebook [K, D]] -> u32 [N]: nearest code by squared distance.
    VqNearest,
    /// [x [B, C, H, W], w [C, O, kh, kw], bias [O]?] -> [B, O, (H-1)*stride - 2*padding + kh,
    /// ..]: PyTorch's `ConvTranspose2d` (each input pixel scatters its kernel, stride apart).
    ConvTranspose2d { stride: usize, padding: usize },
    /// Depthwise 2D convolution (groups = channels), stride 1, symmetric padding; inputs x
    /// [B, C, H, W], weight [C, 1, kh, kw], optional bias [C].
    DepthwiseConv2d { padding: usize },
    /// GlobalResponseNorm's scale over x [B, N, C]: gx = L2 norm over N per channel,
    /// out [B, 1, C] = gx / (mean over C of gx + eps).
    ResponseNorm { eps: f32 },
    /// GroupNorm's statistics of x [B, C, ..] per (batch, group): [B, G, 2] of the mean and
    /// M2, the sum of squared deviations from it (a part of a map that is split in bands).
    GroupMoments { groups: usize },
    /// [parts [B, G, P, 2] of (mean, M2) over parts of `part_len` values of sets of `len`
    /// (the last part may be shorter)] -> [B, G, 2] of (mean, sqrt(var + eps)).
    MomentsCombine { len: usize, part_len: usize, eps: f32 },
    /// GroupNorm from given statistics: [x [B, C, ..], gamma [C], beta [C], moments [B, G, 2]
    /// of (mean, sqrt(var + eps))] -> like x; optionally followed by SiLU.
    GroupNormApply { groups: usize, silu: bool },
    /// Same data, new shape (no copy).
    Reshape { shape: Vec<usize> },
    /// Axis permutation (a copy).
    Permute { perm: Vec<usize> },
    /// `len` entries of `axis` starting at `start` (a copy).
    Slice { axis: usize, start: usize, len: usize },
}

/// A node: its op, its inputs, and its output's shape and type.
#[derive(Debug, Clone)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<TensorId>,
    pub shape: Vec<usize>,
    pub dtype: DType,
    /// A readable name for error messages ("down_blocks.0.resnets.1.conv1").
    pub label: String,
}

impl Node {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Shapes of the weights the graph may reference, and their storage types.
pub trait WeightShapes {
    /// Shape of weight `name`, or None when it is missing.
    fn weight_shape(&self, name: &str) -> Option<Vec<usize>>;

    /// Only the schema recorder (`models::schema`) says yes: it has every parameter a model
    /// builder declares, with the declared shape, and keeps the list.
    fn record(&self, _name: &str, _shape: &[usize]) -> bool {
        false
    }

    /// Whether this source is a recorder (then optional parameters follow the architecture's
    /// defaults rather than a checkpoint).
    fn recording(&self) -> bool {
        false
    }
}

/// The weights of a detached graph: none can be added any more.
struct NoWeights;

impl WeightShapes for NoWeights {
    fn weight_shape(&self, _: &str) -> Option<Vec<usize>> {
        None
    }
}

/// A static graph of ops with inferred shapes. Every builder method checks its inputs and
/// returns an error naming the node and the shapes when they do not fit.
pub struct Graph<'w> {
    pub nodes: Vec<Node>,
    pub outputs: Vec<TensorId>,
    pub(super) weights: &'w dyn WeightShapes,
    scope: Vec<String>,
}

impl fmt::Debug for Graph<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph").field("nodes", &self.nodes).field("outputs", &self.outputs).finish()
    }
}

type R = Result<TensorId, OpError>;

impl<'w> Graph<'w> {
    /// An empty graph whose weights come from `weights`.
    pub fn new(weights: &'w dyn WeightShapes) -> Self {
        Self { nodes: Vec::new(), outputs: Vec::new(), weights, scope: Vec::new() }
    }

    /// The finished graph, no longer tied to the weights it was built against (the
    /// executors only need its nodes), so a model can keep it next to its weights.
    pub fn detach(self) -> Graph<'static> {
        Graph { nodes: self.nodes, outputs: self.outputs, weights: &NoWeights, scope: Vec::new() }
    }

    /// Shape of a tensor.
    pub fn shape(&self, t: TensorId) -> &[usize] {
        &self.nodes[t.0].shape
    }

    /// Node of a tensor.
    pub fn node(&self, t: TensorId) -> &Node {
        &self.nodes[t.0]
    }

    /// Runs `f` with `name` pushed onto the label prefix (mirrors checkpoint key paths).
    pub fn scoped<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        self.scope.push(name.to_string());
        let out = f(self);
        self.scope.pop();
        out
    }

    pub(super) fn label(&self, what: &str) -> String {
        let mut parts = self.scope.clone();
        parts.push(what.to_string());
        parts.join(".")
    }

    pub(super) fn push(&mut self, op: Op, inputs: Vec<TensorId>, shape: Vec<usize>, dtype: DType, what: &str) -> TensorId {
        let label = self.label(what);
        self.nodes.push(Node { op, inputs, shape, dtype, label });
        TensorId(self.nodes.len() - 1)
    }

    pub(super) fn err(&self, what: &str, msg: String) -> OpError {
        OpError::Shape { node: self.label(what), message: msg }
    }

    fn expect_f32(&self, t: TensorId, what: &str) -> Result<(), OpError> {
        if self.nodes[t.0].dtype != DType::F32 {
            return Err(self.err(what, format!("input '{}' must be f32", self.nodes[t.0].label)));
        }
        Ok(())
    }

    /// Marks `t` as a result the caller will read back (kept alive to the end).
    pub fn output(&mut self, t: TensorId) {
        if !self.outputs.contains(&t) {
            self.outputs.push(t);
        }
    }

    /// A run-time f32 input.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.push(Op::Input { name: name.into(), dtype: DType::F32 }, vec![], shape.to_vec(), DType::F32, name)
    }

    /// A run-time u32 input (token ids, code indices).
    pub fn input_u32(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.push(Op::Input { name: name.into(), dtype: DType::U32 }, vec![], shape.to_vec(), DType::U32, name)
    }

    /// x @ w^T + b with `w` [N, K].
    pub fn linear(&mut self, x: TensorId, w: TensorId, b: Option<TensorId>) -> R {
        self.expect_f32(x, "linear")?;
        let xs = self.shape(x).to_vec();
        let ws = self.shape(w).to_vec();
        let k = *xs.last().unwrap_or(&0);
        if ws.len() != 2 || ws[1] != k {
            return Err(self.err("linear", format!("x {xs:?} does not fit weight {ws:?} (want [N, {k}])")));
        }
        if let Some(b) = b {
            if self.shape(b) != [ws[0]] {
                return Err(self.err("linear", format!("bias {:?} should be [{}]", self.shape(b), ws[0])));
            }
        }
        let mut shape = xs;
        *shape.last_mut().unwrap() = ws[0];
        let inputs = [x, w].into_iter().chain(b).collect();
        Ok(self.push(Op::Linear, inputs, shape, DType::F32, "linear"))
    }

    /// Batched matmul of two activations.
    pub fn matmul(&mut self, a: TensorId, b: TensorId, transpose_b: bool) -> R {
        let (sa, sb) = (self.shape(a).to_vec(), self.shape(b).to_vec());
        if sa.len() < 2 || sb.len() < 2 || sa[..sa.len() - 2] != sb[..sb.len() - 2] {
            return Err(self.err("matmul", format!("batch dims differ: {sa:?} @ {sb:?}")));
        }
        let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
        let (kb, n) = if transpose_b { (sb[sb.len() - 1], sb[sb.len() - 2]) } else { (sb[sb.len() - 2], sb[sb.len() - 1]) };
        if k != kb {
            return Err(self.err("matmul", format!("inner dims differ: {sa:?} @ {sb:?} (transpose_b {transpose_b})")));
        }
        let mut shape = sa[..sa.len() - 2].to_vec();
        shape.extend([m, n]);
        Ok(self.push(Op::MatMul { transpose_b }, vec![a, b], shape, DType::F32, "matmul"))
    }

    /// 2D convolution, NCHW.
    pub fn conv2d(&mut self, x: TensorId, w: TensorId, b: Option<TensorId>, stride: usize, padding: [usize; 4]) -> R {
        let (xs, ws) = (self.shape(x).to_vec(), self.shape(w).to_vec());
        if xs.len() != 4 || ws.len() != 4 || xs[1] != ws[1] || stride == 0 {
            return Err(self.err("conv2d", format!("x {xs:?} does not fit weight {ws:?} (want [B, C, H, W] and [O, C, kh, kw])")));
        }
        let (h, wd) = (xs[2] + padding[0] + padding[1], xs[3] + padding[2] + padding[3]);
        if h < ws[2] || wd < ws[3] {
            return Err(self.err("conv2d", format!("kernel {ws:?} larger than padded input {h}x{wd}")));
        }
        if let Some(b) = b {
            if self.shape(b) != [ws[0]] {
                return Err(self.err("conv2d", format!("bias {:?} should be [{}]", self.shape(b), ws[0])));
            }
        }
        let shape = vec![xs[0], ws[0], (h - ws[2]) / stride + 1, (wd - ws[3]) / stride + 1];
        let inputs = [x, w].into_iter().chain(b).collect();
        Ok(self.push(Op::Conv2d { stride, padding }, inputs, shape, DType::F32, "conv2d"))
    }

    /// Group normalization over [B, C, ..] with per-channel affine.
    pub fn group_norm(&mut self, x: TensorId, gamma: TensorId, beta: TensorId, groups: usize, eps: f32, silu: bool) -> R {
        let xs = self.shape(x).to_vec();
        if xs.len() < 2 || groups == 0 || !xs[1].is_multiple_of(groups) || self.shape(gamma) != [xs[1]] || self.shape(beta) != [xs[1]] {
            return Err(self.err("group_norm", format!("x {xs:?} with {groups} groups and gamma {:?}", self.shape(gamma))));
        }
        Ok(self.push(Op::GroupNorm { groups, eps, silu }, vec![x, gamma, beta], xs, DType::F32, "group_norm"))
    }

    /// Layer normalization over the last axis.
    pub fn layer_norm(&mut self, x: TensorId, gamma: TensorId, beta: TensorId, eps: f32) -> R {
        let xs = self.shape(x).to_vec();
        let d = *xs.last().unwrap_or(&0);
        if self.shape(gamma) != [d] || self.shape(beta) != [d] {
            return Err(self.err("layer_norm", format!("x {xs:?} with gamma {:?}", self.shape(gamma))));
        }
        Ok(self.push(Op::LayerNorm { eps }, vec![x, gamma, beta], xs, DType::F32, "layer_norm"))
    }

    /// RMS normalization over the last axis.
    pub fn rms_norm(&mut self, x: TensorId, gamma: TensorId, eps: f32) -> R {
        let xs = self.shape(x).to_vec();
        if self.shape(gamma) != [*xs.last().unwrap_or(&0)] {
            return Err(self.err("rms_norm", format!("x {xs:?} with gamma {:?}", self.shape(gamma))));
        }
        Ok(self.push(Op::RmsNorm { eps }, vec![x, gamma], xs, DType::F32, "rms_norm"))
    }

    /// `rms_norm` (`layer` false) or `layer_norm` without an affine (checkpoints made with
    /// elementwise_affine=False have no weight to scale by).
    pub fn norm_plain(&mut self, x: TensorId, eps: f32, layer: bool) -> R {
        self.expect_f32(x, "norm")?;
        let xs = self.shape(x).to_vec();
        let (op, what) = if layer { (Op::LayerNorm { eps }, "layer_norm") } else { (Op::RmsNorm { eps }, "rms_norm") };
        Ok(self.push(op, vec![x], xs, DType::F32, what))
    }

    /// Softmax along the last axis.
    pub fn softmax(&mut self, x: TensorId) -> R {
        self.expect_f32(x, "softmax")?;
        let s = self.shape(x).to_vec();
        Ok(self.push(Op::Softmax, vec![x], s, DType::F32, "softmax"))
    }

    /// Multi-head scaled dot-product attention on [B, L, H*D] tensors (heads wider than
    /// `MAX_FUSED_HEAD_DIM` are expressed with explicit scores, see graph_wide.rs).
    pub fn attention(&mut self, q: TensorId, k: TensorId, v: TensorId, heads: usize, scale: f32, causal: bool) -> R {
        let (sq, sk, sv) = (self.shape(q).to_vec(), self.shape(k).to_vec(), self.shape(v).to_vec());
        let ok = sq.len() == 3
            && sk.len() == 3
            && sv.len() == 3
            && sq[0] == sk[0]
            && sk[0] == sv[0]
            && sk[1] == sv[1]
            && sq[2] == sk[2]
            && heads > 0
            && sq[2] % heads == 0
            && sv[2] % heads == 0;
        if !ok {
            return Err(self.err("attention", format!("q {sq:?} k {sk:?} v {sv:?} with {heads} heads")));
        }
        if sq[2] / heads > super::graph_wide::MAX_FUSED_HEAD_DIM || sv[2] / heads > super::graph_wide::MAX_FUSED_HEAD_DIM {
            if causal {
                return Err(self.err("attention", format!("causal attention with heads wider than {} is not supported", super::graph_wide::MAX_FUSED_HEAD_DIM)));
            }
            return super::graph_wide::explicit_attention(self, q, k, v, heads, scale);
        }
        let shape = vec![sq[0], sq[1], sv[2]];
        Ok(self.push(Op::Attention { heads, scale, causal }, vec![q, k, v], shape, DType::F32, "attention"))
    }

    /// Elementwise function.
    pub fn unary(&mut self, x: TensorId, op: UnaryOp) -> R {
        self.expect_f32(x, "unary")?;
        let s = self.shape(x).to_vec();
        Ok(self.push(Op::Unary(op), vec![x], s, DType::F32, "unary"))
    }

    /// Elementwise function of two tensors with NumPy broadcasting.
    pub fn binary(&mut self, a: TensorId, b: TensorId, op: BinaryOp) -> R {
        let shape = broadcast_shape(self.shape(a), self.shape(b)).ok_or_else(|| self.err("binary", format!("cannot broadcast {:?} with {:?}", self.shape(a), self.shape(b))))?;
        Ok(self.push(Op::Binary(op), vec![a, b], shape, DType::F32, "binary"))
    }

    /// a + b.
    pub fn add(&mut self, a: TensorId, b: TensorId) -> R {
        self.binary(a, b, BinaryOp::Add)
    }

    /// a * b.
    pub fn mul(&mut self, a: TensorId, b: TensorId) -> R {
        self.binary(a, b, BinaryOp::Mul)
    }

    /// First half of the last axis times GELU of the second half.
    pub fn geglu(&mut self, x: TensorId) -> R {
        let mut s = self.shape(x).to_vec();
        let d = *s.last().unwrap_or(&0);
        if !d.is_multiple_of(2) {
            return Err(self.err("geglu", format!("last axis of {s:?} is odd")));
        }
        *s.last_mut().unwrap() = d / 2;
        Ok(self.push(Op::Geglu, vec![x], s, DType::F32, "geglu"))
    }

    /// Table lookup of u32 ids.
    pub fn embedding(&mut self, ids: TensorId, table: TensorId) -> R {
        if self.node(ids).dtype != DType::U32 || self.shape(table).len() != 2 {
            return Err(self.err("embedding", "want u32 ids and a [V, D] table".into()));
        }
        let mut s = self.shape(ids).to_vec();
        s.push(self.shape(table)[1]);
        Ok(self.push(Op::Embedding, vec![ids, table], s, DType::F32, "embedding"))
    }

    /// Sinusoidal timestep embedding of a [B] tensor of timesteps.
    pub fn timestep_embedding(&mut self, t: TensorId, dim: usize, flip_sin_to_cos: bool, downscale_freq_shift: f32) -> R {
        let s = self.shape(t).to_vec();
        if s.len() != 1 {
            return Err(self.err("timestep_embedding", format!("want [B] timesteps, got {s:?}")));
        }
        let op = Op::TimestepEmbedding { dim, flip_sin_to_cos, downscale_freq_shift, max_period: 10000.0 };
        Ok(self.push(op, vec![t], vec![s[0], dim], DType::F32, "timestep_embedding"))
    }

    /// Argmax along the last axis.
    pub fn argmax(&mut self, x: TensorId) -> R {
        let mut s = self.shape(x).to_vec();
        s.pop();
        Ok(self.push(Op::Argmax, vec![x], s, DType::U32, "argmax"))
    }

    /// Indices of the k largest along the last axis.
    pub fn top_k(&mut self, x: TensorId, k: usize) -> R {
        let mut s = self.shape(x).to_vec();
        if k == 0 || k > *s.last().unwrap_or(&0) {
            return Err(self.err("top_k", format!("k = {k} for {s:?}")));
        }
        *s.last_mut().unwrap() = k;
        Ok(self.push(Op::TopK { k }, vec![x], s, DType::U32, "top_k"))
    }

    /// Nearest codebook entry for each row of z.
    pub fn vq_nearest(&mut self, z: TensorId, codebook: TensorId) -> R {
        let (sz, sc) = (self.shape(z).to_vec(), self.shape(codebook).to_vec());
        if sz.len() != 2 || sc.len() != 2 || sz[1] != sc[1] {
            return Err(self.err("vq_nearest", format!("z {sz:?} vs codebook {sc:?}")));
        }
        Ok(self.push(Op::VqNearest, vec![z, codebook], vec![sz[0]], DType::U32, "vq_nearest"))
    }
}

/// NumPy broadcasting of two shapes (aligned at the right).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
            let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
            match (da, db) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
