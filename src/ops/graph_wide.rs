//! Attention with heads wider than the fused kernel takes, as explicit ops: the VAE's
//! mid-block attention is one 512-wide head. Its score matrix is [B, H, Lq, Lk] (64 MiB at
//! 512 px for SD's VAE): acceptable there, unlike the UNet's many-token self-attention,
//! which stays fused.

use super::graph::{Graph, TensorId, UnaryOp};
use crate::error::OpError;

/// Widest head the fused attention op is built for (the GPU kernel keeps a query row and
/// its accumulator in registers).
pub const MAX_FUSED_HEAD_DIM: usize = 256;

/// [B, L, H*D] -> [B, H, L, D] (a reshape alone when H = 1).
fn split_heads(g: &mut Graph, x: TensorId, heads: usize) -> Result<TensorId, OpError> {
    let s = g.shape(x).to_vec();
    let d = s[2] / heads;
    let x = g.reshape(x, &[s[0], s[1], heads, d])?;
    if heads == 1 {
        return g.reshape(x, &[s[0], 1, s[1], d]);
    }
    g.permute(x, &[0, 2, 1, 3])
}

/// Largest score matrix one chunk of queries may make: 32 MiB stays well inside WebGPU's
/// default 128 MiB binding (a 1024 px SDXL image's VAE attention would make 1 GiB).
pub const MAX_SCORE_BYTES: usize = 32 << 20;

/// softmax(q k^T * scale) v per head through matmul, softmax and matmul, over chunks of
/// queries whose scores fit `MAX_SCORE_BYTES` (each query row's result depends only on it).
pub fn explicit_attention(g: &mut Graph, q: TensorId, k: TensorId, v: TensorId, heads: usize, scale: f32) -> Result<TensorId, OpError> {
    chunked_attention(g, [q, k, v], heads, scale, MAX_SCORE_BYTES)
}

fn chunked_attention(g: &mut Graph, [q, k, v]: [TensorId; 3], heads: usize, scale: f32, max_score_bytes: usize) -> Result<TensorId, OpError> {
    let (b, lq, lk) = (g.shape(q)[0], g.shape(q)[1], g.shape(k)[1]);
    let row_bytes = b * heads * lk * 4;
    let rows = (max_score_bytes / row_bytes.max(1)).max(1);
    if rows >= lq {
        return attention_chunk(g, q, k, v, heads, scale);
    }
    let mut parts = Vec::new();
    for start in (0..lq).step_by(rows) {
        let qc = g.slice(q, 1, start, rows.min(lq - start))?;
        parts.push(attention_chunk(g, qc, k, v, heads, scale)?);
    }
    g.concat(&parts, 1)
}

fn attention_chunk(g: &mut Graph, q: TensorId, k: TensorId, v: TensorId, heads: usize, scale: f32) -> Result<TensorId, OpError> {
    let (b, lq, dv) = (g.shape(q)[0], g.shape(q)[1], g.shape(v)[2]);
    let (qh, kh, vh) = (split_heads(g, q, heads)?, split_heads(g, k, heads)?, split_heads(g, v, heads)?);
    let scores = g.matmul(qh, kh, true)?;
    let scores = g.unary(scores, UnaryOp::Affine { mul: scale, add: 0.0 })?;
    let probs = g.softmax(scores)?;
    let out = g.matmul(probs, vh, false)?; // [B, H, Lq, Dv/H]
    let out = if heads == 1 { out } else { g.permute(out, &[0, 2, 1, 3])? };
    g.reshape(out, &[b, lq, dv])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ops::cpu::{CpuExecutor, HostTensor};
    use crate::ops::WeightStore;

    #[test]
    fn explicit_attention_equals_the_fused_op() {
        let store = WeightStore::new();
        for heads in [1, 3] {
            let mut g = Graph::new(&store);
            let (q, k, v) = (g.input("q", &[2, 5, 3 * 8]), g.input("k", &[2, 7, 3 * 8]), g.input("v", &[2, 7, 3 * 4]));
            let fused = g.attention(q, k, v, heads, 0.3, false).unwrap();
            let explicit = explicit_attention(&mut g, q, k, v, heads, 0.3).unwrap();
            // Scores of 2 query rows per chunk (2 x heads x 7 keys x 4 bytes each): 3 chunks.
            let chunked = chunked_attention(&mut g, [q, k, v], heads, 0.3, 2 * 2 * heads * 7 * 4).unwrap();
            assert!(g.nodes.iter().filter(|n| matches!(n.op, crate::ops::Op::Slice { .. })).count() >= 3);
            g.output(fused);
            g.output(explicit);
            g.output(chunked);
            let vals = |n: usize, s: usize| HostTensor::F32((0..n).map(|i| ((i * 7919 + s) % 97) as f32 / 48.0 - 1.0).collect());
            let inputs = HashMap::from([("q".to_string(), vals(240, 1)), ("k".to_string(), vals(336, 2)), ("v".to_string(), vals(168, 3))]);
            let out = CpuExecutor::new(&store).run(&g, &inputs).unwrap();
            let (HostTensor::F32(a), HostTensor::F32(b)) = (&out[&fused], &out[&explicit]) else { panic!("f32 outputs") };
            let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(err < 1e-6, "{heads} heads: max |fused - explicit| = {err}");
            let HostTensor::F32(c) = &out[&chunked] else { panic!("f32 output") };
            let err = a.iter().zip(c).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(err < 1e-6, "{heads} heads: max |fused - chunked| = {err}");
        }
    }
}
