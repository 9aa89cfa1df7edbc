//! The small building blocks every model repeats, named as in PyTorch: a layer is a scope
//! holding `weight` and an optional `bias`.

use crate::error::OpError;
use crate::ops::{Graph, TensorId};

/// `nn.Linear` called `name`.
pub fn dense(g: &mut Graph, name: &str, x: TensorId) -> Result<TensorId, OpError> {
    g.scoped(name, |g| {
        let w = g.weight("weight")?;
        let b = g.weight_opt("bias");
        g.linear(x, w, b)
    })
}

/// `nn.LayerNorm` called `name`.
pub fn layer_norm(g: &mut Graph, name: &str, x: TensorId, eps: f32) -> Result<TensorId, OpError> {
    g.scoped(name, |g| {
        let (w, b) = (g.weight("weight")?, g.weight("bias")?);
        g.layer_norm(x, w, b, eps)
    })
}

/// `nn.GroupNorm` called `name`, optionally followed by SiLU (fused on the GPU).
pub fn group_norm(g: &mut Graph, name: &str, x: TensorId, groups: usize, eps: f32, silu: bool) -> Result<TensorId, OpError> {
    g.scoped(name, |g| {
        let (w, b) = (g.weight("weight")?, g.weight("bias")?);
        g.group_norm(x, w, b, groups, eps, silu)
    })
}

/// `nn.Conv2d` called `name` with symmetric padding.
pub fn conv(g: &mut Graph, name: &str, x: TensorId, stride: usize, pad: usize) -> Result<TensorId, OpError> {
    conv_padded(g, name, x, stride, [pad; 4])
}

/// `nn.Conv2d` with explicit [top, bottom, left, right] padding.
pub fn conv_padded(g: &mut Graph, name: &str, x: TensorId, stride: usize, padding: [usize; 4]) -> Result<TensorId, OpError> {
    g.scoped(name, |g| {
        let w = g.weight("weight")?;
        let b = g.weight_opt("bias");
        g.conv2d(x, w, b, stride, padding)
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
