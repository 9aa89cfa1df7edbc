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

/// softmax(q k^T * scale) v per head through matmul, softmax and matmul.
pub fn explicit_attention(g: &mut Graph, q: TensorId, k: TensorId, v: TensorId, heads: usize, scale: f32) -> Result<TensorId, OpError> {
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
            g.output(fused);
            g.output(explicit);
            let vals = |n: usize, s: usize| HostTensor::F32((0..n).map(|i| ((i * 7919 + s) % 97) as f32 / 48.0 - 1.0).collect());
            let inputs = HashMap::from([("q".to_string(), vals(240, 1)), ("k".to_string(), vals(336, 2)), ("v".to_string(), vals(168, 3))]);
            let out = CpuExecutor::new(&store).run(&g, &inputs).unwrap();
            let (HostTensor::F32(a), HostTensor::F32(b)) = (&out[&fused], &out[&explicit]) else { panic!("f32 outputs") };
            let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(err < 1e-6, "{heads} heads: max |fused - explicit| = {err}");
        }
    }
}
