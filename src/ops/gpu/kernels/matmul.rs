//! Batched matmul of two activations (attention-style products, CLIP projections).

use super::params::Matmul;
use super::NodeCx;
use crate::error::OpError;
use crate::ops::gpu::builder::KernelBuilder;

pub fn matmul(kb: &mut KernelBuilder, cx: &NodeCx, transpose_b: bool) -> Result<(), OpError> {
    let sa = &cx.in_shapes[0];
    let out = &cx.node.shape;
    let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let n = out[out.len() - 1];
    let batch: usize = out[..out.len() - 2].iter().product();
    let (b_sk, b_sn) = if transpose_b { (1, k) } else { (n, 1) };
    let params = Matmul { m: m as u32, k: k as u32, n: n as u32, a_batch_stride: (m * k) as u32, b_batch_stride: (k * n) as u32, b_sk: b_sk as u32, b_sn: b_sn as u32 };
    let groups = [(n as u32).div_ceil(32), (m as u32).div_ceil(32), batch as u32];
    if groups.iter().any(|&g| g > 65535) {
        return Err(OpError::Limits { node: cx.node.label.clone(), message: format!("matmul grid {groups:?} exceeds 65535 per axis") });
    }
    let bindings = vec![cx.f32_input(0)?, cx.f32_input(1)?, cx.out.clone()];
    kb.dispatch("matmul", || include_str!("matmul.wgsl").into(), bindings, &params, groups)
}
