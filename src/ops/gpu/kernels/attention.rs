//! Multi-head scaled dot-product attention in one dispatch, FlashAttention style (keys
//! streamed with the online softmax; the score matrix is never stored).

use super::params::Attention;
use super::{splice, NodeCx};
use crate::error::OpError;
use crate::ops::gpu::builder::{grid, KernelBuilder};

/// Widest head the kernel takes: q rows and accumulators live in registers, unrolled.
const MAX_HEAD_DIM: usize = 256;
/// Invocations per workgroup (`@workgroup_size` in attention.wgsl).
const WORKGROUP: usize = 64;

/// Loader of 4 head elements as one vec4 (head width and row strides are multiples of 4).
const LOAD_VEC4: &str = r#"
fn load_NAME(at: u32, d4: u32) -> vec4<f32> {
    return NAME[at / 4u + d4];
}"#;
/// Loader of 4 head elements one by one, zero past the head width WIDTH.
const LOAD_SCALAR: &str = r#"
fn load_NAME(at: u32, d4: u32) -> vec4<f32> {
    let d = d4 * 4u;
    if (d + 4u <= WIDTH) {
        return vec4<f32>(NAME[at + d], NAME[at + d + 1u], NAME[at + d + 2u], NAME[at + d + 3u]);
    }
    var x = vec4<f32>(0.0);
    for (var c = 0u; d + c < WIDTH; c = c + 1u) {
        x[c] = NAME[at + d + c];
    }
    return x;
}"#;

fn loader(name: &str, width: &str, vec4: bool) -> String {
    (if vec4 { LOAD_VEC4 } else { LOAD_SCALAR }).replace("NAME", name).replace("WIDTH", width)
}

fn elem(vec4: bool) -> &'static str {
    if vec4 {
        "vec4<f32>"
    } else {
        "f32"
    }
}

fn source(dh: usize, dv: usize, rows: usize) -> String {
    let (qk4, v4) = (dh.is_multiple_of(4), dv.is_multiple_of(4));
    let loaders = [loader("q", "DH", qk4), loader("k", "DH", qk4), loader("v", "DV", v4)].concat();
    splice(
        include_str!("attention.wgsl"),
        &[("QK_ELEM", elem(qk4)), ("V_ELEM", elem(v4)), ("DH", &dh.to_string()), ("DV", &dv.to_string()), ("ROWS", &rows.to_string()), ("LOADERS", &loaders)],
    )
}

/// Query rows per invocation. Software adapters emulate each storage load lane by lane, so
/// reusing every K/V load for several rows pays (Dh 64, 1 -> 4 rows: lavapipe 1.6 -> 4.4
/// GFLOP per CPU-second, SwiftShader 0.3 -> 0.7 GFLOP/s). Registers, unrolled code and
/// lavapipe's compile time grow with rows * head width (Dh 160 with 4 rows: ~25 s), so wide
/// heads get fewer, and short sequences too (a block is 64 * rows queries). Real GPUs keep
/// one row per invocation: more would spill registers.
fn rows_per_invocation(software: bool, lq: usize, dh: usize, dv: usize) -> usize {
    if !software {
        return 1;
    }
    let width4 = dh.div_ceil(4) + dv.div_ceil(4);
    [4, 2].into_iter().find(|&r| WORKGROUP * r <= lq && r * width4 <= 128).unwrap_or(1)
}

/// softmax(q k^T * scale) v per head on [B, L, H*D] tensors, keys masked past the diagonal
/// (offset by Lk - Lq) when `causal`; rows that see no key come out as zeros.
pub fn attention(kb: &mut KernelBuilder, cx: &NodeCx, heads: usize, scale: f32, causal: bool) -> Result<(), OpError> {
    let (sq, sk, sv) = (&cx.in_shapes[0], &cx.in_shapes[1], &cx.in_shapes[2]);
    let (batch, lq, lk) = (sq[0], sq[1], sk[1]);
    let (dh, dv) = (sq[2] / heads, sv[2] / heads);
    if cx.node.numel() == 0 {
        return Ok(());
    }
    if lk == 0 {
        return Err(OpError::Shape { node: cx.node.label.clone(), message: "attention over zero keys".into() });
    }
    if dh == 0 || dv == 0 || dh > MAX_HEAD_DIM || dv > MAX_HEAD_DIM {
        return Err(OpError::Limits { node: cx.node.label.clone(), message: format!("head widths {dh} (q, k) and {dv} (v) must be within 1..={MAX_HEAD_DIM}") });
    }
    let rows = rows_per_invocation(kb.ctx.is_software(), lq, dh, dv);
    let qblocks = lq.div_ceil(WORKGROUP * rows);
    let workgroups = batch * heads * qblocks;
    if workgroups > 65535 * 65535 {
        return Err(OpError::Limits { node: cx.node.label.clone(), message: format!("{workgroups} workgroups") });
    }
    let params = Attention { lq: lq as u32, lk: lk as u32, heads: heads as u32, qblocks: qblocks as u32, causal: causal as u32, scale, workgroups: workgroups as u32 };
    let bindings = vec![cx.f32_input(0)?, cx.f32_input(1)?, cx.f32_input(2)?, cx.out.clone()];
    let key = format!("attention_dh{dh}_dv{dv}_r{rows}");
    kb.dispatch(&key, || source(dh, dv, rows), bindings, &params, grid(workgroups as u32))
}

/// Every kind of variant `attention` makes: head widths with and without vec4 loads, one
/// and several rows per invocation. (key, WGSL).
#[cfg(all(test, not(target_arch = "wasm32")))]
pub fn variants() -> Vec<(String, String)> {
    let mut out = vec![];
    for (dh, dv) in [(64, 64), (40, 40), (160, 160), (18, 13), (4, 36)] {
        for rows in [1, 2, 4] {
            out.push((format!("attention_{dh}_{dv}_{rows}"), super::kernel_source::<Attention>(&source(dh, dv, rows))));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::rows_per_invocation;

    #[test]
    fn rows_follow_adapter_length_and_width() {
        assert_eq!(rows_per_invocation(false, 4096, 64, 64), 1);
        assert_eq!(rows_per_invocation(true, 4096, 64, 64), 4);
        assert_eq!(rows_per_invocation(true, 4096, 80, 80), 2);
        assert_eq!(rows_per_invocation(true, 4096, 160, 160), 1);
        assert_eq!(rows_per_invocation(true, 200, 40, 40), 2);
        assert_eq!(rows_per_invocation(true, 77, 64, 64), 1);
    }
}
