//! Lookups and selections: embedding tables (split into row chunks when large), sinusoidal
//! timestep embeddings, argmax / top-k along the last axis, and nearest-codebook search.

use super::elementwise::groups_for;
use super::params::{Embedding, TimestepEmbedding, TopK, VqNearest, TIMESTEP_FREQS};
use super::NodeCx;
use crate::error::OpError;
use crate::ops::cpu::timestep_frequencies;
use crate::ops::gpu::builder::{grid, KernelBuilder};
use crate::ops::graph::DType;
use crate::ops::quant::StorageType;

/// Rows of z per vq_nearest workgroup (ROWS in vq_nearest.wgsl, which works on vec4s of
/// rows) and the widest z row its workgroup memory holds.
const VQ_ROWS: usize = 4;
const VQ_MAX_D: usize = 512;

fn shape_err(cx: &NodeCx, message: String) -> OpError {
    OpError::Shape { node: cx.node.label.clone(), message }
}

fn expect_f32(cx: &NodeCx, i: usize) -> Result<(), OpError> {
    match cx.in_dtypes[i] {
        DType::F32 => Ok(()),
        DType::U32 => Err(shape_err(cx, format!("input {i} is u32, this op needs f32"))),
    }
}

/// `table[ids]` for a [V, D] f32 table, one dispatch per table chunk; each writes the
/// outputs whose id falls in its rows. Ids >= V give zero rows (the CPU backend errors).
pub fn embedding(kb: &mut KernelBuilder, cx: &NodeCx) -> Result<(), OpError> {
    let (v, d) = (cx.in_shapes[1][0], cx.in_shapes[1][1]);
    let count = cx.node.numel();
    if count == 0 {
        return Ok(());
    }
    let (storage, chunks) = cx.weight_chunks(1);
    if storage != StorageType::F32 {
        // CLIP's f16 token tables stay on the host (gathered there); other tables are widened.
        return Err(shape_err(cx, format!("the embedding table is {}, the GPU lookup reads f32", storage.name())));
    }
    let ids = cx.f32_input(0)?;
    for (i, (rows, table, _)) in chunks.into_iter().enumerate() {
        let params = Embedding { count: count as u32, d: d as u32, row0: rows.start as u32, rows: rows.len() as u32, vocab: v as u32, zero_fill: (i == 0) as u32 };
        let bindings = vec![ids.clone(), table, cx.out.clone()];
        kb.dispatch("embedding", || include_str!("embedding.wgsl").into(), bindings, &params, groups_for(count))?;
    }
    Ok(())
}

/// Every embedding variant (for the naga validation test).
#[cfg(all(test, not(target_arch = "wasm32")))]
pub fn variants() -> Vec<(String, String)> {
    vec![("embedding".into(), super::kernel_source::<Embedding>(include_str!("embedding.wgsl")))]
}

/// diffusers' `get_timestep_embedding` of t [B] into [B, dim]. The frequencies travel in the
/// parameter block, so one dispatch per 56 of them (three for SD's dim 320).
pub fn timestep_embedding(kb: &mut KernelBuilder, cx: &NodeCx, dim: usize, flip: bool, shift: f32, max_period: f32) -> Result<(), OpError> {
    expect_f32(cx, 0)?;
    let b = cx.in_shapes[0][0];
    if b == 0 || dim == 0 {
        return Ok(());
    }
    let half = dim / 2;
    let freqs = timestep_frequencies(half, shift, max_period);
    let t = cx.f32_input(0)?;
    let mut f0 = 0;
    loop {
        let nf = (half - f0).min(TIMESTEP_FREQS);
        let u = |v: usize| v as u32;
        let mut params = TimestepEmbedding { batch: u(b), dim: u(dim), half: u(half), f0: u(f0), nf: u(nf), flip: flip as u32, ..Default::default() };
        for (i, &fr) in freqs[f0..f0 + nf].iter().enumerate() {
            params.freqs[i / 4][i % 4] = fr;
        }
        let bindings = vec![t.clone(), cx.out.clone()];
        kb.dispatch("timestep_embedding", || include_str!("timestep_embedding.wgsl").into(), bindings, &params, groups_for(b * nf.max(1)))?;
        f0 += nf;
        if f0 >= half {
            return Ok(());
        }
    }
}

/// Index of the largest value along the last axis, first on ties: top-k with k = 1.
pub fn argmax(kb: &mut KernelBuilder, cx: &NodeCx) -> Result<(), OpError> {
    select_top(kb, cx, 1)
}

/// Indices of the k largest values along the last axis, largest first; equal values come
/// in index order.
pub fn top_k(kb: &mut KernelBuilder, cx: &NodeCx, k: usize) -> Result<(), OpError> {
    select_top(kb, cx, k)
}

fn select_top(kb: &mut KernelBuilder, cx: &NodeCx, k: usize) -> Result<(), OpError> {
    expect_f32(cx, 0)?;
    let n = cx.in_shapes[0].last().copied().unwrap_or(1);
    if k > n {
        return Err(shape_err(cx, format!("{k} largest of a last axis of {n}")));
    }
    let rows = cx.node.numel() / k.max(1);
    if rows == 0 || k == 0 {
        return Ok(());
    }
    let params = TopK { rows: rows as u32, n: n as u32, k: k as u32 };
    kb.dispatch("top_k", || include_str!("top_k.wgsl").into(), vec![cx.f32_input(0)?, cx.out.clone()], &params, grid(rows as u32))
}

/// Nearest codebook row to each row of z [N, D] by squared distance, first on ties. The
/// codebook [K, D] must fit one binding (16384 x 256 f32 codes are 16 MiB) and D <= 512.
pub fn vq_nearest(kb: &mut KernelBuilder, cx: &NodeCx) -> Result<(), OpError> {
    expect_f32(cx, 0)?;
    expect_f32(cx, 1)?;
    let (n, d) = (cx.in_shapes[0][0], cx.in_shapes[0][1]);
    let k = cx.in_shapes[1][0];
    if d > VQ_MAX_D {
        return Err(OpError::Limits { node: cx.node.label.clone(), message: format!("code width {d} exceeds {VQ_MAX_D}") });
    }
    if k == 0 {
        return Err(shape_err(cx, "the codebook is empty".into()));
    }
    let (storage, chunks) = cx.weight_chunks(1);
    if storage != StorageType::F32 {
        return Err(OpError::Limits { node: cx.node.label.clone(), message: format!("the codebook is {}; the GPU search needs f32", storage.name()) });
    }
    if n == 0 {
        return Ok(());
    }
    // A codebook over the binding limit comes in chunks of codes: one dispatch each, in
    // order, each keeping a row's code only if strictly nearer than the best so far (in
    // `best`), so ties still go to the first index.
    let best = kb.scratch((n * 4) as u64);
    for (i, (rows, codes, _)) in chunks.into_iter().enumerate() {
        let params = VqNearest { n: n as u32, d: d as u32, k: rows.len() as u32, code_off: rows.start as u32, first: (i == 0) as u32 };
        let bindings = vec![cx.f32_input(0)?, codes, cx.out.clone(), best.clone()];
        kb.dispatch("vq_nearest", || include_str!("vq_nearest.wgsl").into(), bindings, &params, grid(n.div_ceil(VQ_ROWS) as u32))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_match_the_cpu_reference() {
        // With t = 1 the CPU's arguments are the frequencies themselves, so its sin/cos
        // columns must be exactly sin/cos of ours.
        for (dim, shift) in [(320, 0.0), (33, 1.0)] {
            let half = dim / 2;
            let cpu = crate::ops::cpu::timestep_embedding(&[1.0], dim, false, shift, 10000.0);
            for (i, fr) in timestep_frequencies(half, shift, 10000.0).into_iter().enumerate() {
                assert_eq!((libm::sinf(fr), libm::cosf(fr)), (cpu[i], cpu[half + i]), "dim {dim} frequency {i}");
            }
        }
    }
}
