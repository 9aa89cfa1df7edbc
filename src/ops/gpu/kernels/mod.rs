//! One file per op family; each turns a graph node into one or more dispatches.

mod attention;
mod conv;
mod convnext;
mod copy;
mod elementwise;
mod linear;
mod loaders;
mod matmul;
mod misc;
mod norm;
mod split;

use super::builder::{Buf, KernelBuilder};
use super::weights::{GpuWeight, WeightChunk};
use crate::error::OpError;
use crate::ops::graph::{DType, Node, Op};
use crate::ops::quant::StorageType;

/// An input of a node: an activation buffer, or an uploaded weight.
pub enum Operand<'a> {
    Act(Buf),
    Weight(&'a GpuWeight, &'a str),
}

/// One chunk of a weight as a kernel binds it: its rows, values and (block formats) scales.
pub type WeightChunkBinding = (std::ops::Range<usize>, Buf, Option<Buf>);

/// Everything a kernel needs to record a node.
pub struct NodeCx<'a> {
    pub node: &'a Node,
    pub inputs: Vec<Operand<'a>>,
    pub in_shapes: Vec<Vec<usize>>,
    pub in_dtypes: Vec<DType>,
    /// The output buffer (exactly numel * 4 bytes).
    pub out: Buf,
}

impl NodeCx<'_> {
    fn err(&self, message: String) -> OpError {
        OpError::Shape { node: self.node.label.clone(), message }
    }

    /// Input `i` as one f32 buffer binding (an activation, or an f32 weight in one chunk).
    pub fn f32_input(&self, i: usize) -> Result<Buf, OpError> {
        match &self.inputs[i] {
            Operand::Act(b) => Ok(b.clone()),
            Operand::Weight(w, name) => {
                if w.storage != StorageType::F32 {
                    return Err(self.err(format!("weight '{name}' is {}, this op needs f32", w.storage.name())));
                }
                Ok(Buf::whole(&w.single(name)?.values))
            }
        }
    }

    /// Input `i` as weight chunks (an activation counts as one f32 chunk of all its rows).
    pub fn weight_chunks(&self, i: usize) -> (StorageType, Vec<WeightChunkBinding>) {
        match &self.inputs[i] {
            Operand::Act(b) => (StorageType::F32, vec![(0..self.in_shapes[i][0], b.clone(), None)]),
            Operand::Weight(w, _) => (w.storage, w.chunks.iter().map(|c: &WeightChunk| (c.rows.clone(), Buf::whole(&c.values), c.scales.as_ref().map(Buf::whole))).collect()),
        }
    }
}

/// Records the dispatches of one node.
pub fn compile(kb: &mut KernelBuilder, cx: &NodeCx) -> Result<(), OpError> {
    match &cx.node.op {
        Op::Linear => linear::linear(kb, cx),
        Op::MatMul { transpose_b } => matmul::matmul(kb, cx, *transpose_b),
        Op::Conv2d { stride, padding } => conv::conv2d(kb, cx, *stride, *padding),
        Op::GroupNorm { groups, eps, silu } => norm::group_norm(kb, cx, *groups, *eps, *silu),
        Op::LayerNorm { eps } => norm::layer_norm(kb, cx, *eps),
        Op::RmsNorm { eps } => norm::rms_norm(kb, cx, *eps),
        Op::Softmax => norm::softmax(kb, cx),
        Op::Attention { heads, scale, causal } => attention::attention(kb, cx, *heads, *scale, *causal),
        Op::Unary(u) => elementwise::unary(kb, cx, *u),
        Op::Binary(b) => elementwise::binary(kb, cx, *b),
        Op::Geglu => elementwise::geglu(kb, cx),
        Op::Concat { axis } => copy::concat(kb, cx, *axis),
        Op::UpsampleNearest { .. } => conv::upsample_nearest(kb, cx),
        Op::Embedding => misc::embedding(kb, cx),
        Op::TimestepEmbedding { dim, flip_sin_to_cos, downscale_freq_shift, max_period } => {
            misc::timestep_embedding(kb, cx, *dim, *flip_sin_to_cos, *downscale_freq_shift, *max_period)
        }
        Op::Argmax => misc::argmax(kb, cx),
        Op::TopK { k } => misc::top_k(kb, cx, *k),
        Op::VqNearest => misc::vq_nearest(kb, cx),
        Op::DepthwiseConv2d { padding } => convnext::depthwise_conv2d(kb, cx, *padding),
        Op::ConvTranspose2d { stride, padding } => convnext::conv_transpose2d(kb, cx, *stride, *padding),
        Op::ResponseNorm { eps } => convnext::response_norm(kb, cx, *eps),
        Op::GroupMoments { groups } => norm::group_moments(kb, cx, *groups),
        Op::MomentsCombine { len, part_len, eps } => norm::moments_combine(kb, cx, *len, *part_len, *eps),
        Op::GroupNormApply { groups, silu } => norm::group_norm_apply(kb, cx, *groups, *silu),
        Op::Permute { perm } => copy::permute(kb, cx, perm),
        Op::Slice { axis, start, len } => copy::slice(kb, cx, *axis, *start, *len),
        Op::Input { .. } | Op::Weight { .. } | Op::Reshape { .. } => Ok(()),
    }
}

/// Contiguous (row-major) strides of a shape, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// A WGSL kernel with the shared prelude in front.
pub fn with_prelude(body: &str) -> String {
    format!("{}\n{}", super::builder::PRELUDE, body)
}
