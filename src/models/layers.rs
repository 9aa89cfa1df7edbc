//! The small building blocks every model repeats, named as in PyTorch: a layer is a scope
//! holding `weight` and an optional `bias`.

use crate::error::OpError;
use crate::ops::{Graph, TensorId};

/// `nn.Linear(in, out, bias)` called `name`; `in` is the last axis of `x`. `bias` is the
/// architecture's default: a checkpoint with or without the bias is read as it is.
pub fn dense(g: &mut Graph, name: &str, x: TensorId, out: usize, bias: bool) -> Result<TensorId, OpError> {
    let inp = *g.shape(x).last().unwrap_or(&0);
    g.scoped(name, |g| {
        let w = g.param("weight", &[out, inp])?;
        let b = g.param_opt("bias", &[out], bias)?;
        g.linear(x, w, b)
    })
}

/// `nn.LayerNorm` over the last axis, called `name`.
pub fn layer_norm(g: &mut Graph, name: &str, x: TensorId, eps: f32) -> Result<TensorId, OpError> {
    let c = *g.shape(x).last().unwrap_or(&0);
    g.scoped(name, |g| {
        let (w, b) = (g.param("weight", &[c])?, g.param("bias", &[c])?);
        g.layer_norm(x, w, b, eps)
    })
}

/// `nn.GroupNorm` over the channels of NCHW `x`, called `name`, optionally followed by SiLU
/// (fused on the GPU).
pub fn group_norm(g: &mut Graph, name: &str, x: TensorId, groups: usize, eps: f32, silu: bool) -> Result<TensorId, OpError> {
    let c = g.shape(x).get(1).copied().unwrap_or(0);
    g.scoped(name, |g| {
        let (w, b) = (g.param("weight", &[c])?, g.param("bias", &[c])?);
        g.group_norm(x, w, b, groups, eps, silu)
    })
}

/// An `nn.Conv2d`'s hyper-parameters: output channels, square kernel, stride, [top, bottom,
/// left, right] padding, and whether it has a bias by default.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    pub out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: [usize; 4],
    pub bias: bool,
}

/// `nn.Conv2d(in, out, k, stride, padding)` with a bias, called `name`.
pub fn conv(g: &mut Graph, name: &str, x: TensorId, out: usize, kernel: usize, stride: usize, pad: usize) -> Result<TensorId, OpError> {
    conv_with(g, name, x, ConvSpec { out, kernel, stride, padding: [pad; 4], bias: true })
}

/// `nn.Conv2d` as `spec` says (asymmetric padding, no bias).
pub fn conv_with(g: &mut Graph, name: &str, x: TensorId, spec: ConvSpec) -> Result<TensorId, OpError> {
    let inp = g.shape(x).get(1).copied().unwrap_or(0);
    let k = spec.kernel;
    g.scoped(name, |g| {
        let w = g.param("weight", &[spec.out, inp, k, k])?;
        let b = g.param_opt("bias", &[spec.out], spec.bias)?;
        g.conv2d(x, w, b, spec.stride, spec.padding)
    })
}

/// Runs `f` inside the scopes `a.b.c` (one per dot-separated part).
pub fn within<T>(g: &mut Graph, path: &str, f: impl FnOnce(&mut Graph) -> T) -> T {
    match path.split_once('.') {
        None => g.scoped(path, f),
        Some((head, rest)) => g.scoped(head, |g| within(g, rest, f)),
    }
}

/// [B, C, H, W] -> [B, H*W, C] (tokens for attention).
pub fn to_tokens(g: &mut Graph, x: TensorId) -> Result<TensorId, OpError> {
    let s = g.shape(x).to_vec();
    let t = g.permute(x, &[0, 2, 3, 1])?;
    g.reshape(t, &[s[0], s[2] * s[3], s[1]])
}

/// [B, H*W, C] -> [B, C, H, W].
pub fn from_tokens(g: &mut Graph, x: TensorId, h: usize, w: usize) -> Result<TensorId, OpError> {
    let s = g.shape(x).to_vec();
    let t = g.reshape(x, &[s[0], h, w, s[2]])?;
    g.permute(t, &[0, 3, 1, 2])
}
