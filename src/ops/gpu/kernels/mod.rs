//! One file per op family; each turns a graph node into one or more dispatches.
//!
//! Every storage binding is declared `read_write`, inputs too: activations share pool
//! buffers (`arena.rs`), and WebGPU refuses a dispatch that binds one buffer both read-only
//! and writable, while it allows several writable bindings of it.

mod attention;
mod conv;
mod conv_tiled;
mod convnext;
mod copy;
mod elementwise;
pub(super) use elementwise::groups_for;
mod linear;
mod loaders;
mod matmul;
mod misc;
mod norm;
pub mod params;
mod split;
mod tiles;
mod upsample;
pub use tiles::TILE_HEIGHTS;

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
        Op::UpsampleNearest { .. } => upsample::upsample_nearest(kb, cx),
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

/// A kernel's whole WGSL: its directives (`enable f16;`, which WGSL wants first), the
/// shared prelude, its parameter struct, then the rest of `body`. `dispatch` compiles
/// exactly this.
pub fn kernel_source<P: params::KernelParams>(body: &str) -> String {
    let mut directives = String::new();
    let mut rest = body;
    while let Some(line) = rest.strip_prefix("enable ") {
        let end = line.find('\n').map_or(line.len(), |e| e + 1);
        directives.push_str("enable ");
        directives.push_str(&line[..end]);
        rest = &line[end..];
    }
    format!("{directives}{}\n{}\n{rest}", super::builder::PRELUDE, P::WGSL)
}

/// Fills a kernel template: every `{{NAME}}` marker (a `//{{NAME}}` line for code) gets its
/// text. A fill whose marker the template lacks, or a marker left unfilled, is a bug on the
/// kernel's Rust side, found the first time the variant is made (and by the CPU-only test
/// that makes every variant): panics naming the marker.
pub fn splice(template: &str, fills: &[(&str, &str)]) -> String {
    let out = fill(template, fills);
    if let Some(at) = out.find("{{") {
        let end = out[at..].find("}}").map_or(out.len(), |e| at + e + 2);
        panic!("kernel template marker {} left unfilled", &out[at..end]);
    }
    out
}

/// `splice` for a template filled in two stages: every fill's marker must exist; others may
/// stay for the next stage.
pub fn fill(template: &str, fills: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, text) in fills {
        let (line, inline) = (format!("//{{{{{name}}}}}"), format!("{{{{{name}}}}}"));
        assert!(out.contains(&inline), "kernel template has no {inline} marker");
        out = out.replace(&line, text).replace(&inline, text);
    }
    out
}

/// Every kernel source the GPU backend can make, spliced variants included: (key, WGSL).
#[cfg(all(test, not(target_arch = "wasm32")))]
pub fn every_variant() -> Vec<(String, String)> {
    use params::*;
    let mut out: Vec<(String, String)> = vec![
        ("matmul".into(), kernel_source::<Matmul>(include_str!("matmul.wgsl"))),
        ("timestep_embedding".into(), kernel_source::<TimestepEmbedding>(include_str!("timestep_embedding.wgsl"))),
        ("top_k".into(), kernel_source::<TopK>(include_str!("top_k.wgsl"))),
        ("vq_nearest".into(), kernel_source::<VqNearest>(include_str!("vq_nearest.wgsl"))),
        ("depthwise_conv2d".into(), kernel_source::<DepthwiseConv2d>(include_str!("depthwise_conv2d.wgsl"))),
        ("conv_transpose2d".into(), kernel_source::<ConvTranspose2d>(include_str!("conv_transpose2d.wgsl"))),
        ("response_norm".into(), kernel_source::<ResponseNorm>(include_str!("response_norm.wgsl"))),
        ("copy_words".into(), kernel_source::<CopyWords>(include_str!("copy_words.wgsl"))),
    ];
    for list in [linear::variants(), conv::variants(), attention::variants(), copy::variants(), norm::variants(), elementwise::variants(), misc::variants(), upsample::variants()] {
        out.extend(list);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_fills_markers_and_refuses_missing_or_leftover_ones() {
        assert_eq!(splice("a\n//{{CODE}}\nb {{N}}u", &[("CODE", "let x = 1;"), ("N", "4")]), "a\nlet x = 1;\nb 4u");
        let missing = std::panic::catch_unwind(|| splice("a {{N}}", &[("N", "1"), ("M", "2")])).unwrap_err();
        assert_eq!(missing.downcast_ref::<String>().map(String::as_str), Some("kernel template has no {{M}} marker"));
        let left = std::panic::catch_unwind(|| splice("a {{N}} {{M}}", &[("N", "1")])).unwrap_err();
        assert_eq!(left.downcast_ref::<String>().map(String::as_str), Some("kernel template marker {{M}} left unfilled"));
        assert_eq!(fill("{{A}} {{B}}", &[("A", "x")]), "x {{B}}");
    }

    /// Every variant parses and validates with naga (wgpu's shader compiler), on the CPU:
    /// a broken splice fails here without a GPU.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn every_kernel_variant_validates_with_naga() {
        use naga::valid::{Capabilities, ValidationFlags, Validator};
        let validate = |src: &str| {
            naga::front::wgsl::parse_str(src)
                .map_err(|e| e.emit_to_string(src))
                .and_then(|module| Validator::new(ValidationFlags::all(), Capabilities::all()).validate(&module).map(drop).map_err(|e| format!("{e:?}")))
        };
        // The check itself catches a type error, and a kernel reading a field its struct lacks.
        assert!(validate(&kernel_source::<params::Dequantize>("fn f() -> u32 { return 1.5; }")).is_err());
        let reads = |field: &str| format!("@group(0) @binding(0) var<uniform> params: Params;\n@compute @workgroup_size(1) fn main() {{ _ = params.{field}; }}");
        assert!(validate(&kernel_source::<params::Dequantize>(&reads("n"))).is_ok());
        assert!(validate(&kernel_source::<params::Dequantize>(&reads("k"))).is_err());
        // Directives stay first.
        assert!(kernel_source::<params::Dequantize>("enable f16;\nfn f() {}").starts_with("enable f16;\n"));
        let variants = every_variant();
        assert!(variants.len() > 80, "{} variants", variants.len());
        let mut failures = vec![];
        for (key, src) in &variants {
            if let Err(e) = validate(src) {
                failures.push(format!("{key}: {e}"));
            }
            if src.contains("pu(") || src.contains("pf(") {
                failures.push(format!("{key}: reads parameters by position (name them in params.rs)"));
            }
            // Pooled activations: a read-only binding beside the output's would be refused.
            if src.contains("var<storage, read>") {
                failures.push(format!("{key}: binds storage read-only (declare it read_write; see the module's header)"));
            }
        }
        assert!(failures.is_empty(), "{} of {} kernel variants do not validate:\n{}", failures.len(), variants.len(), failures.join("\n"));
    }
}
