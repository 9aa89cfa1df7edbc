//! Convolution as an implicit GEMM over f32, Q8_0 and Q4_0 weights (dequantized in the
//! kernel, one dispatch per weight chunk), and nearest 2x upsampling.

use super::elementwise::groups_for;
use super::linear::{W_Q8_0, W_Q4_0};
use super::{with_prelude, NodeCx};
use crate::error::OpError;
use crate::ops::gpu::builder::{grid, Buf, KernelBuilder};
use crate::ops::quant::StorageType;

// f32 weight loaders with linear.wgsl's contract (pu(1) = K, pu(4) = rows in the chunk):
// vec4 when K is a multiple of 4 (rows stay 16-byte aligned), else scalar with bounds.
const W_F32_VEC4: &str = r#"
fn load_w(n: u32, k: u32) -> vec4<f32> {
    if (n >= pu(4u)) { return vec4<f32>(0.0); }
    return w[(n * pu(1u) + k) / 4u];
}"#;
const W_F32_SCALAR: &str = r#"
fn load_w(n: u32, k: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (n >= pu(4u)) { return v; }
    let K = pu(1u);
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (k + j < K) { v[j] = w[n * K + k + j]; }
    }
    return v;
}"#;

/// Output pixels (and channels) per workgroup side: 8x8 invocations of 4x4 each.
const TILE: usize = 32;

fn conv_source(storage: StorageType, w_vec4: bool) -> String {
    let (w_decl, loader) = match storage {
        StorageType::Q8_0 => ("array<u32>", W_Q8_0),
        StorageType::Q4_0 => ("array<u32>", W_Q4_0),
        _ if w_vec4 => ("array<vec4<f32>>", W_F32_VEC4),
        _ => ("array<f32>", W_F32_SCALAR),
    };
    let mut bindings =
        format!("@group(0) @binding(2) var<storage, read> x: array<f32>;\n@group(0) @binding(3) var<storage, read> w: {w_decl};\n");
    if storage.is_quantized() {
        bindings.push_str("@group(0) @binding(4) var<storage, read> scales: array<u32>;\n");
    }
    let params_at = if storage.is_quantized() { 5 } else { 4 };
    bindings.push_str(&format!("@group(0) @binding({params_at}) var<uniform> params: Params;\n"));
    with_prelude(&include_str!("conv2d.wgsl").replace("//{{BINDINGS}}", &bindings).replace("//{{LOADERS}}", loader))
}

/// NCHW convolution of x [B, C, H, W] by w [O, C, kh, kw] (+ bias), one dispatch per
/// weight chunk, each writing its range of output channels.
pub fn conv2d(kb: &mut KernelBuilder, cx: &NodeCx, stride: usize, padding: [usize; 4]) -> Result<(), OpError> {
    let [b, c, h, w] = cx.in_shapes[0][..] else {
        return Err(OpError::Shape { node: cx.node.label.clone(), message: format!("x {:?} is not [B, C, H, W]", cx.in_shapes[0]) });
    };
    let (o, kh, kw) = (cx.in_shapes[1][0], cx.in_shapes[1][2], cx.in_shapes[1][3]);
    let (ho, wo) = (cx.node.shape[2], cx.node.shape[3]);
    let (m, k) = (b * ho * wo, c * kh * kw);
    let (storage, chunks) = cx.weight_chunks(1);
    if storage.is_quantized() && k % 32 != 0 {
        return Err(OpError::Shape { node: cx.node.label.clone(), message: format!("{} weight needs C*kh*kw = {k} a multiple of 32", storage.name()) });
    }
    let x = cx.f32_input(0)?;
    let bias = if cx.inputs.len() > 2 { Some(cx.f32_input(2)?) } else { None };
    let w_vec4 = k % 4 == 0;
    let key = format!("conv2d_{}_{}", storage.name(), if w_vec4 { "vec4" } else { "scalar" });
    let tiles_m = m.div_ceil(TILE);
    for (rows, values, scales) in chunks {
        let tiles_n = rows.len().div_ceil(TILE);
        let mut bindings: Vec<Buf> = vec![cx.out.clone(), bias.clone().unwrap_or_else(|| x.clone()), x.clone(), values];
        bindings.extend(scales);
        let params = [m, k, o, rows.start, rows.len(), bias.is_some() as usize, c, h, w, ho, wo, kh, kw, stride, padding[0], padding[2], tiles_n];
        let params: Vec<u32> = params.iter().map(|&v| v as u32).collect();
        kb.dispatch(&key, || conv_source(storage, w_vec4), bindings, &params, grid((tiles_n * tiles_m) as u32))?;
    }
    Ok(())
}

/// Nearest-neighbour 2x upsampling of [B, C, H, W].
pub fn upsample2x(kb: &mut KernelBuilder, cx: &NodeCx) -> Result<(), OpError> {
    let (h, w) = (cx.in_shapes[0][2], cx.in_shapes[0][3]);
    let n = cx.node.numel();
    let bindings = vec![cx.f32_input(0)?, cx.out.clone()];
    kb.dispatch("upsample2x", || with_prelude(include_str!("upsample2x.wgsl")), bindings, &[n as u32, h as u32, w as u32], groups_for(n))
}
