//! diffusers' `UVit2DModel` (aMUSEd's token transformer): token embedding + RMSNorm + 1x1
//! conv, a ConvNeXt/attention block at the token grid (optionally downsampled 2x), a stack
//! of `BasicTransformerBlock`s conditioned on the pooled text + micro-conditioning through
//! `AdaLayerNormContinuous`, the mirrored up block, and a 1x1-conv MLM head giving logits
//! [B, codebook_size, h, w].

use serde_json::Value;

use super::blocks::{attention, Bias};
use super::config::Cfg;
use super::layers::{conv_with, dense, from_tokens, to_tokens, within, ConvSpec};
use crate::error::OpError;
use crate::ops::{Graph, TensorId, UnaryOp};

/// The parts of the transformer's `config.json` the model uses.
#[derive(Debug, Clone)]
pub struct UVitConfig {
    pub hidden_size: usize,
    pub micro_cond_encode_dim: usize,
    pub encoder_hidden_size: usize,
    /// Width of the pooled text embedding.
    pub cond_embed_dim: usize,
    pub vocab_size: usize,
    pub codebook_size: usize,
    pub block_out_channels: usize,
    pub num_res_blocks: usize,
    pub downsample: bool,
    pub upsample: bool,
    pub block_num_heads: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub eps: f32,
    pub sample_size: usize,
    /// Width of the token embedding and of the output head's hidden layer.
    pub in_channels: usize,
    /// The transformer layers' feed-forward width.
    pub intermediate_size: usize,
    /// Whether the linear and conv layers have biases, and the norms affine weights.
    pub use_bias: bool,
    pub ln_elementwise_affine: bool,
}

impl UVitConfig {
    pub fn from_json(v: &Value) -> Result<Self, OpError> {
        let c = Cfg::new("transformer", v);
        Ok(Self {
            hidden_size: c.usize_or("hidden_size", 1024)?,
            micro_cond_encode_dim: c.usize_or("micro_cond_encode_dim", 256)?,
            encoder_hidden_size: c.usize_or("encoder_hidden_size", 768)?,
            cond_embed_dim: c.usize_or("cond_embed_dim", 768)?,
            vocab_size: c.usize_or("vocab_size", 8256)?,
            codebook_size: c.usize_or("codebook_size", 8192)?,
            block_out_channels: c.usize_or("block_out_channels", 768)?,
            num_res_blocks: c.usize_or("num_res_blocks", 3)?,
            downsample: c.bool_or("downsample", false)?,
            upsample: c.bool_or("upsample", false)?,
            block_num_heads: c.usize_or("block_num_heads", 12)?,
            num_hidden_layers: c.usize_or("num_hidden_layers", 22)?,
            num_attention_heads: c.usize_or("num_attention_heads", 16)?,
            eps: c.f32_or("layer_norm_eps", 1e-6)?,
            sample_size: c.usize_or("sample_size", 64)?,
            in_channels: c.usize_or("in_channels", 768)?,
            intermediate_size: c.usize_or("intermediate_size", 2816)?,
            use_bias: c.bool_or("use_bias", false)?,
            ln_elementwise_affine: c.bool_or("ln_elementwise_affine", true)?,
        })
    }
}

/// The model's inputs: u32 token `ids` [B, h, w], `encoder_hidden_states` [B, L, De],
/// `pooled_text_emb` [B, Dc] and `micro_conds` [B, 5] (width, height, crop x/y, score).
pub struct UVitInputs {
    pub ids: TensorId,
    pub encoder_hidden_states: TensorId,
    pub pooled_text_emb: TensorId,
    pub micro_conds: TensorId,
}

/// Builds the model inside the current scope (the component, "transformer"): logits
/// [B, codebook_size, h, w].
pub fn uvit(g: &mut Graph, cfg: &UVitConfig, x: &UVitInputs) -> Result<TensorId, OpError> {
    let (eps, affine, bias, hidden) = (cfg.eps, cfg.ln_elementwise_affine, cfg.use_bias, cfg.hidden_size);
    let ehs = dense(g, "encoder_proj", x.encoder_hidden_states, hidden, bias)?;
    let ehs = rms(g, "encoder_proj_layer_norm", ehs, eps, affine)?;
    // Micro-conditioning: each of the 5 numbers as a sinusoidal embedding, concatenated.
    let b = g.shape(x.micro_conds)[0];
    let n_mc = g.shape(x.micro_conds)[1];
    let mc = g.reshape(x.micro_conds, &[b * n_mc])?;
    let mc = g.timestep_embedding(mc, cfg.micro_cond_encode_dim, true, 0.0)?;
    let mc = g.reshape(mc, &[b, n_mc * cfg.micro_cond_encode_dim])?;
    let pooled = g.concat(&[x.pooled_text_emb, mc], 1)?;
    let cond = g.scoped("cond_embed", |g| -> Result<TensorId, OpError> {
        let h = dense(g, "linear_1", pooled, hidden, bias)?;
        let h = g.unary(h, UnaryOp::Silu)?;
        dense(g, "linear_2", h, hidden, bias)
    })?;
    // Every consumer of the condition applies SiLU first: do it once.
    let cond_act = g.unary(cond, UnaryOp::Silu)?;

    let h = g.scoped("embed", |g| -> Result<TensorId, OpError> {
        let table = g.param("embeddings.weight", &[cfg.vocab_size, cfg.in_channels])?;
        let e = g.embedding(x.ids, table)?;
        let e = rms(g, "layer_norm", e, eps, affine)?;
        let e = g.permute(e, &[0, 3, 1, 2])?;
        conv1x1(g, "conv", e, cfg.block_out_channels, bias)
    })?;
    let h = g.scoped("down_block", |g| uvit_block(g, cfg, h, cond_act, ehs, cfg.downsample, false))?;
    let s = g.shape(h).to_vec();
    let t = to_tokens(g, h)?;
    let t = rms(g, "project_to_hidden_norm", t, eps, affine)?;
    let mut t = dense(g, "project_to_hidden", t, hidden, bias)?;
    for i in 0..cfg.num_hidden_layers {
        t = within(g, &format!("transformer_layers.{i}"), |g| transformer_layer(g, cfg, t, ehs, cond_act))?;
    }
    let t = rms(g, "project_from_hidden_norm", t, eps, affine)?;
    let t = dense(g, "project_from_hidden", t, cfg.block_out_channels, bias)?;
    let h = from_tokens(g, t, s[2], s[3])?;
    let h = g.scoped("up_block", |g| uvit_block(g, cfg, h, cond_act, ehs, false, cfg.upsample))?;
    g.scoped("mlm_layer", |g| -> Result<TensorId, OpError> {
        let h = conv1x1(g, "conv1", h, cfg.in_channels, bias)?;
        let h = channels_last_rms(g, "layer_norm", h, eps, affine)?;
        conv1x1(g, "conv2", h, cfg.codebook_size, bias)
    })
}

/// `RMSNorm` over the last axis, with its weight when it has one (`affine`: the
/// architecture's elementwise_affine).
fn rms(g: &mut Graph, name: &str, x: TensorId, eps: f32, affine: bool) -> Result<TensorId, OpError> {
    let c = *g.shape(x).last().unwrap_or(&0);
    g.scoped(name, |g| match g.param_opt("weight", &[c], affine)? {
        Some(w) => g.rms_norm(x, w, eps),
        None => g.norm_plain(x, eps, false),
    })
}

/// RMSNorm over the channels of NCHW (diffusers permutes to channels-last and back).
fn channels_last_rms(g: &mut Graph, name: &str, x: TensorId, eps: f32, affine: bool) -> Result<TensorId, OpError> {
    let t = g.permute(x, &[0, 2, 3, 1])?;
    let t = rms(g, name, t, eps, affine)?;
    g.permute(t, &[0, 3, 1, 2])
}

fn conv1x1(g: &mut Graph, name: &str, x: TensorId, out: usize, bias: bool) -> Result<TensorId, OpError> {
    conv_with(g, name, x, ConvSpec { out, kernel: 1, stride: 1, padding: [0; 4], bias })
}

/// `UVitBlock`: optional 2x downsample, (ConvNextBlock, SkipFFTransformerBlock) pairs,
/// optional 2x upsample.
fn uvit_block(g: &mut Graph, cfg: &UVitConfig, x: TensorId, cond_act: TensorId, ehs: TensorId, down: bool, up: bool) -> Result<TensorId, OpError> {
    let mut x = x;
    if down {
        // Downsample2D(padding=0, kernel 2): RMSNorm over channels, pad (0,1,0,1), stride 2.
        let c = g.shape(x)[1];
        x = g.scoped("downsample", |g| -> Result<TensorId, OpError> {
            let n = channels_last_rms(g, "norm", x, cfg.eps, cfg.ln_elementwise_affine)?;
            conv_with(g, "conv", n, ConvSpec { out: c, kernel: 2, stride: 2, padding: [0, 1, 0, 1], bias: cfg.use_bias })
        })?;
    }
    for i in 0..cfg.num_res_blocks {
        x = within(g, &format!("res_blocks.{i}"), |g| convnext_block(g, cfg, x, cond_act))?;
        let s = g.shape(x).to_vec();
        let t = to_tokens(g, x)?;
        let t = within(g, &format!("attention_blocks.{i}"), |g| skip_ff_block(g, cfg, t, ehs))?;
        x = from_tokens(g, t, s[2], s[3])?;
    }
    if up {
        x = g.scoped("upsample", |g| -> Result<TensorId, OpError> {
            let n = channels_last_rms(g, "norm", x, cfg.eps, cfg.ln_elementwise_affine)?;
            conv_transpose_2x2(g, "conv", n, cfg.use_bias)
        })?;
    }
    Ok(x)
}

/// `ConvTranspose2d(kernel 2, stride 2, padding 0)`: the taps never overlap, so each input
/// pixel maps to its own 2x2 output patch by one matrix product: weight [Ci, Co, 2, 2] as
/// rows (co, ky, kx), then the patches are interleaved into the 2x grid.
fn conv_transpose_2x2(g: &mut Graph, name: &str, x: TensorId, bias: bool) -> Result<TensorId, OpError> {
    g.scoped(name, |g| {
        let s = g.shape(x).to_vec();
        // UVitBlock's upsampler keeps the width: weight [C, C, 2, 2].
        let co = s[1];
        let w = g.param("weight", &[s[1], co, 2, 2])?;
        let wm = g.permute(w, &[1, 2, 3, 0])?;
        let wm = g.reshape(wm, &[co * 4, s[1]])?;
        let t = to_tokens(g, x)?;
        let y = g.linear(t, wm, None)?;
        let y = g.reshape(y, &[s[0], s[2], s[3], co, 2, 2])?;
        let y = g.permute(y, &[0, 3, 1, 4, 2, 5])?;
        let y = g.reshape(y, &[s[0], co, 2 * s[2], 2 * s[3]])?;
        match g.param_opt("bias", &[co], bias)? {
            Some(b) => {
                let b = g.reshape(b, &[1, co, 1, 1])?;
                g.add(y, b)
            }
            None => Ok(y),
        }
    })
}

/// `ConvNextBlock`: depthwise 3x3, RMSNorm, Linear 4x, GELU, GlobalResponseNorm, Linear
/// back, residual; then scale/shift from the condition.
fn convnext_block(g: &mut Graph, cfg: &UVitConfig, x: TensorId, cond_act: TensorId) -> Result<TensorId, OpError> {
    let s = g.shape(x).to_vec();
    let (c, bias) = (s[1], cfg.use_bias);
    let h = g.scoped("depthwise", |g| -> Result<TensorId, OpError> {
        let w = g.param("weight", &[c, 1, 3, 3])?;
        let b = g.param_opt("bias", &[c], bias)?;
        g.depthwise_conv2d(x, w, b, 1)
    })?;
    let h = to_tokens(g, h)?;
    let h = rms(g, "norm", h, cfg.eps, cfg.ln_elementwise_affine)?;
    let h = dense(g, "channelwise_linear_1", h, 4 * c, bias)?;
    let h = g.unary(h, UnaryOp::Gelu)?;
    let h = g.scoped("channelwise_norm", |g| -> Result<TensorId, OpError> {
        let c4 = 4 * c;
        let gamma = g.param("gamma", &[1, 1, 1, c4])?;
        let gamma = g.reshape(gamma, &[c4])?;
        let beta = g.param("beta", &[1, 1, 1, c4])?;
        let beta = g.reshape(beta, &[c4])?;
        let nx = g.response_norm(h, 1e-6)?;
        let y = g.mul(h, nx)?;
        let y = g.mul(gamma, y)?;
        let y = g.add(y, beta)?;
        g.add(y, h)
    })?;
    let h = dense(g, "channelwise_linear_2", h, c, bias)?;
    let h = from_tokens(g, h, s[2], s[3])?;
    let h = g.add(h, x)?;
    let (scale, shift) = scale_shift(g, "cond_embeds_mapper", cond_act, c, bias)?;
    let scale = g.reshape(scale, &[s[0], s[1], 1, 1])?;
    let shift = g.reshape(shift, &[s[0], s[1], 1, 1])?;
    let h = g.mul(h, scale)?;
    g.add(h, shift)
}

/// Linear `name` of the activated condition split into (1 + scale, shift), each [B, d].
fn scale_shift(g: &mut Graph, name: &str, cond_act: TensorId, d: usize, bias: bool) -> Result<(TensorId, TensorId), OpError> {
    let e = dense(g, name, cond_act, 2 * d, bias)?;
    let scale = g.slice(e, 1, 0, d)?;
    let scale = g.unary(scale, UnaryOp::Affine { mul: 1.0, add: 1.0 })?;
    let shift = g.slice(e, 1, d, d)?;
    Ok((scale, shift))
}

/// `SkipFFTransformerBlock`: two RMSNorm + attention pairs, both attending to the text
/// (mapped to the block's width by `kv_mapper` after SiLU); no feed-forward.
fn skip_ff_block(g: &mut Graph, cfg: &UVitConfig, x: TensorId, ehs: TensorId) -> Result<TensorId, OpError> {
    let c = *g.shape(x).last().unwrap_or(&0);
    // The text is mapped to the block's width only when the widths differ.
    let ctx = if *g.shape(ehs).last().unwrap_or(&0) != c {
        let a = g.unary(ehs, UnaryOp::Silu)?;
        dense(g, "kv_mapper", a, c, cfg.use_bias)?
    } else {
        ehs
    };
    let b = Bias { qkv: cfg.use_bias, out: cfg.use_bias };
    let n = rms(g, "norm1", x, 1e-6, true)?;
    let a = attention(g, "attn1", n, ctx, cfg.block_num_heads, b)?;
    let x = g.add(a, x)?;
    let n = rms(g, "norm2", x, 1e-6, true)?;
    let a = attention(g, "attn2", n, ctx, cfg.block_num_heads, b)?;
    g.add(a, x)
}

/// `AdaLayerNormContinuous`: norm(x) * (1 + scale) + shift, per batch item.
fn ada_norm(g: &mut Graph, cfg: &UVitConfig, name: &str, x: TensorId, cond_act: TensorId, layer: bool) -> Result<TensorId, OpError> {
    let (eps, d) = (cfg.eps, cfg.hidden_size);
    g.scoped(name, |g| {
        let (scale, shift) = scale_shift(g, "linear", cond_act, d, cfg.use_bias)?;
        let n = g.scoped("norm", |g| -> Result<TensorId, OpError> {
            // Made with elementwise_affine=False: no weight (nor bias).
            let Some(w) = g.param_opt("weight", &[d], cfg.ln_elementwise_affine)? else { return g.norm_plain(x, eps, layer) };
            if !layer {
                return g.rms_norm(x, w, eps);
            }
            // diffusers' LayerNorm with bias=False: a zero bias (0 * weight) adds nothing.
            let b = match g.param_opt("bias", &[d], cfg.use_bias)? {
                Some(b) => b,
                None => g.unary(w, UnaryOp::Affine { mul: 0.0, add: 0.0 })?,
            };
            g.layer_norm(x, w, b, eps)
        })?;
        let (b, d) = (g.shape(scale)[0], g.shape(scale)[1]);
        let scale = g.reshape(scale, &[b, 1, d])?;
        let shift = g.reshape(shift, &[b, 1, d])?;
        let n = g.mul(n, scale)?;
        g.add(n, shift)
    })
}

/// `BasicTransformerBlock` with `ada_norm_continuous`: RMS-normed self-attention and
/// cross-attention, a LayerNorm'd GEGLU feed-forward, each modulated by the condition.
fn transformer_layer(g: &mut Graph, cfg: &UVitConfig, x: TensorId, ehs: TensorId, cond_act: TensorId) -> Result<TensorId, OpError> {
    let heads = cfg.num_attention_heads;
    let b = Bias { qkv: false, out: cfg.use_bias };
    let n = ada_norm(g, cfg, "norm1", x, cond_act, false)?;
    let a = attention(g, "attn1", n, n, heads, b)?;
    let x = g.add(a, x)?;
    let n = ada_norm(g, cfg, "norm2", x, cond_act, false)?;
    let a = attention(g, "attn2", n, ehs, heads, b)?;
    let x = g.add(a, x)?;
    let n = ada_norm(g, cfg, "norm3", x, cond_act, true)?;
    let f = within(g, "ff.net", |g| -> Result<TensorId, OpError> {
        let p = within(g, "0", |g| dense(g, "proj", n, 2 * cfg.intermediate_size, cfg.use_bias))?;
        let p = g.geglu(p)?;
        dense(g, "2", p, cfg.hidden_size, cfg.use_bias)
    })?;
    g.add(f, x)
}
