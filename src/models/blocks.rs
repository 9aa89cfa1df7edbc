//! diffusers' shared blocks: `ResnetBlock2D`, `Transformer2DModel` with its
//! `BasicTransformerBlock`s, and the 2x resamplers.

use super::layers::{conv, dense, from_tokens, group_norm, layer_norm, to_tokens, within};
use crate::error::OpError;
use crate::ops::{Graph, TensorId};

/// GroupNorm settings of a block.
#[derive(Debug, Clone, Copy)]
pub struct Norm {
    pub groups: usize,
    pub eps: f32,
}

/// `ResnetBlock2D` to `out` channels in the current scope. `temb` is the already
/// SiLU-activated time embedding [B, T] (every resnet applies the same SiLU, so the caller
/// does it once).
pub fn resnet(g: &mut Graph, x: TensorId, out: usize, temb: Option<TensorId>, norm: Norm) -> Result<TensorId, OpError> {
    let inp = g.shape(x)[1];
    let h = group_norm(g, "norm1", x, norm.groups, norm.eps, true)?;
    let mut h = conv(g, "conv1", h, out, 3, 1, 1)?;
    if let Some(temb) = temb {
        let t = dense(g, "time_emb_proj", temb, out, true)?;
        let s = g.shape(t).to_vec();
        let t = g.reshape(t, &[s[0], s[1], 1, 1])?;
        h = g.add(h, t)?;
    }
    let h = group_norm(g, "norm2", h, norm.groups, norm.eps, true)?;
    let h = conv(g, "conv2", h, out, 3, 1, 1)?;
    // A 1x1 conv matches channels when they change (diffusers' use_in_shortcut default).
    let shortcut = if inp != out { conv(g, "conv_shortcut", x, out, 1, 1, 0)? } else { x };
    g.add(shortcut, h)
}

/// `Downsample2D` with a conv: stride 2, padding 1 (UNet; the VAE pads asymmetrically).
pub fn downsample(g: &mut Graph, x: TensorId) -> Result<TensorId, OpError> {
    let c = g.shape(x)[1];
    within(g, "downsamplers.0", |g| conv(g, "conv", x, c, 3, 2, 1))
}

/// `Upsample2D`: nearest 2x, then a 3x3 conv.
pub fn upsample(g: &mut Graph, x: TensorId) -> Result<TensorId, OpError> {
    let c = g.shape(x)[1];
    let up = g.upsample2x(x)?;
    within(g, "upsamplers.0", |g| conv(g, "conv", up, c, 3, 1, 1))
}

/// `Upsample2D` with an explicit output size, then a 3x3 conv.
pub fn upsample_to(g: &mut Graph, x: TensorId, height: usize, width: usize) -> Result<TensorId, OpError> {
    let c = g.shape(x)[1];
    let up = g.upsample_nearest(x, height, width)?;
    within(g, "upsamplers.0", |g| conv(g, "conv", up, c, 3, 1, 1))
}

/// How a `Transformer2DModel` is configured.
#[derive(Debug, Clone, Copy)]
pub struct TransformerSpec {
    pub heads: usize,
    /// GEGLU with the tanh GELU instead of diffusers' exact one: only to compare with
    /// implementations that approximate (candle-transformers).
    pub geglu_tanh: bool,
    pub layers: usize,
    pub linear_projection: bool,
    pub groups: usize,
}

/// `Transformer2DModel` (spatial, continuous input) in the current scope: GroupNorm (eps
/// 1e-6), proj_in, transformer blocks attending to `context` [B, L, Dc], proj_out, residual.
pub fn transformer_2d(g: &mut Graph, x: TensorId, context: TensorId, spec: TransformerSpec) -> Result<TensorId, OpError> {
    let s = g.shape(x).to_vec();
    let (c, h, w) = (s[1], s[2], s[3]);
    let n = group_norm(g, "norm", x, spec.groups, 1e-6, false)?;
    let mut t = if spec.linear_projection {
        let t = to_tokens(g, n)?;
        dense(g, "proj_in", t, c, true)?
    } else {
        let c = conv(g, "proj_in", n, c, 1, 1, 0)?;
        to_tokens(g, c)?
    };
    for i in 0..spec.layers {
        t = within(g, &format!("transformer_blocks.{i}"), |g| basic_block(g, t, context, spec))?;
    }
    let out = if spec.linear_projection {
        let t = dense(g, "proj_out", t, c, true)?;
        from_tokens(g, t, h, w)?
    } else {
        let t = from_tokens(g, t, h, w)?;
        conv(g, "proj_out", t, c, 1, 1, 0)?
    };
    g.add(out, x)
}

/// diffusers' spatial self-`Attention` over a feature map (UNet2DModel's attention blocks,
/// the VAE's mid block): GroupNorm, attention over the h*w positions, residual add.
pub fn self_attention(g: &mut Graph, x: TensorId, groups: usize, eps: f32, heads: usize) -> Result<TensorId, OpError> {
    let s = g.shape(x).to_vec();
    let n = group_norm(g, "group_norm", x, groups, eps, false)?;
    let t = to_tokens(g, n)?;
    let a = attention_here(g, t, t, heads, Bias::ALL)?;
    let a = from_tokens(g, a, s[2], s[3])?;
    g.add(a, x)
}

/// Which of an `Attention`'s projections have biases by default: the transformers' `to_q/k/v`
/// have none and `to_out` has one; the spatial self-attention blocks have all four.
#[derive(Debug, Clone, Copy)]
pub struct Bias {
    pub qkv: bool,
    pub out: bool,
}

impl Bias {
    pub const ALL: Bias = Bias { qkv: true, out: true };
    pub const OUT: Bias = Bias { qkv: false, out: true };
    pub const NONE: Bias = Bias { qkv: false, out: false };
}

/// diffusers' `Attention` called `name`; see `attention_here`.
pub fn attention(g: &mut Graph, name: &str, x: TensorId, context: TensorId, heads: usize, bias: Bias) -> Result<TensorId, OpError> {
    g.scoped(name, |g| attention_here(g, x, context, heads, bias))
}

/// diffusers' `Attention` in the current scope, without the spatial wrapper: to_q from `x`,
/// to_k/to_v from `context`, to_out.0. The inner width is the query's (heads x head_dim in
/// every model here); heads split it evenly.
pub fn attention_here(g: &mut Graph, x: TensorId, context: TensorId, heads: usize, bias: Bias) -> Result<TensorId, OpError> {
    let inner = *g.shape(x).last().unwrap_or(&0);
    let q = dense(g, "to_q", x, inner, bias.qkv)?;
    let k = dense(g, "to_k", context, inner, bias.qkv)?;
    let v = dense(g, "to_v", context, inner, bias.qkv)?;
    if heads == 0 || !inner.is_multiple_of(heads) {
        return Err(OpError::Shape { node: "to_q".into(), message: format!("{inner} channels do not split into {heads} heads") });
    }
    let scale = 1.0 / ((inner / heads) as f32).sqrt();
    let o = g.attention(q, k, v, heads, scale, false)?;
    dense(g, "to_out.0", o, inner, bias.out)
}

fn basic_block(g: &mut Graph, x: TensorId, context: TensorId, spec: TransformerSpec) -> Result<TensorId, OpError> {
    let heads = spec.heads;
    let c = *g.shape(x).last().unwrap_or(&0);
    let n = layer_norm(g, "norm1", x, 1e-5)?;
    let a = attention(g, "attn1", n, n, heads, Bias::OUT)?;
    let x = g.add(a, x)?;
    let n = layer_norm(g, "norm2", x, 1e-5)?;
    let a = attention(g, "attn2", n, context, heads, Bias::OUT)?;
    let x = g.add(a, x)?;
    let n = layer_norm(g, "norm3", x, 1e-5)?;
    let f = within(g, "ff.net", |g| -> Result<TensorId, OpError> {
        // GEGLU: the projection makes value and gate of 4x width each.
        let p = within(g, "0", |g| dense(g, "proj", n, 8 * c, true))?;
        let p = if spec.geglu_tanh { geglu_tanh(g, p)? } else { g.geglu(p)? };
        dense(g, "2", p, c, true)
    })?;
    g.add(f, x)
}

/// value * gelu_tanh(gate) over the two halves of the last axis.
fn geglu_tanh(g: &mut Graph, x: TensorId) -> Result<TensorId, OpError> {
    let s = g.shape(x).to_vec();
    let (axis, half) = (s.len() - 1, s[s.len() - 1] / 2);
    let value = g.slice(x, axis, 0, half)?;
    let gate = g.slice(x, axis, half, half)?;
    let gate = g.unary(gate, crate::ops::UnaryOp::GeluTanh)?;
    g.mul(value, gate)
}
