//! CLIP's text transformer (transformers' `CLIPTextModel`): CLIP-L for SD 1.x (quick_gelu)
//! and OpenCLIP-H as diffusers stores it for SD 2.x / Turbo (gelu, 23 layers). Called the
//! way the SD pipelines call it: 77 ids, causal mask only, no padding mask.

use serde_json::Value;

use super::config::Cfg;
use super::layers::{dense, layer_norm as norm};
use crate::error::OpError;
use crate::ops::{Graph, TensorId, UnaryOp};

/// The parts of `config.json` the text model uses.
#[derive(Debug, Clone)]
pub struct ClipTextConfig {
    pub hidden_size: usize,
    pub heads: usize,
    pub layers: usize,
    pub act: UnaryOp,
    pub eps: f32,
    pub max_positions: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    /// `CLIPTextModelWithProjection`'s text_projection width.
    pub projection_dim: usize,
}

impl ClipTextConfig {
    pub fn from_json(v: &Value) -> Result<Self, OpError> {
        let c = Cfg::new("text_encoder", v);
        let act = match c.str_or("hidden_act", "quick_gelu")? {
            "quick_gelu" => UnaryOp::QuickGelu,
            "gelu" => UnaryOp::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => UnaryOp::GeluTanh,
            other => return Err(OpError::Config { component: "text_encoder".into(), message: format!("hidden_act '{other}' is not supported (quick_gelu, gelu, gelu_new)") }),
        };
        Ok(Self {
            hidden_size: c.usize("hidden_size")?,
            heads: c.usize("num_attention_heads")?,
            layers: c.usize("num_hidden_layers")?,
            act,
            eps: c.f32_or("layer_norm_eps", 1e-5)?,
            max_positions: c.usize_or("max_position_embeddings", 77)?,
            intermediate_size: c.usize_or("intermediate_size", 3072)?,
            vocab_size: c.usize_or("vocab_size", 49408)?,
            projection_dim: c.usize_or("projection_dim", 512)?,
        })
    }
}

/// What the text model gives back.
pub struct ClipOutputs {
    /// After the final LayerNorm: what SD conditions on. [B, L, D]
    pub last_hidden_state: TensorId,
    /// Output of the second-to-last layer, no final LayerNorm ("clip skip"). [B, L, D]
    pub penultimate: TensorId,
}

/// Builds the text model over u32 `ids` [B, L] inside the current scope (the component,
/// e.g. "text_encoder"). Checkpoints from transformers 4 nest it under `text_model.`.
pub fn text_model(g: &mut Graph, cfg: &ClipTextConfig, ids: TensorId, nested: bool) -> Result<ClipOutputs, OpError> {
    if nested {
        g.scoped("text_model", |g| body(g, cfg, ids))
    } else {
        body(g, cfg, ids)
    }
}

fn body(g: &mut Graph, cfg: &ClipTextConfig, ids: TensorId) -> Result<ClipOutputs, OpError> {
    let len = g.shape(ids)[1];
    if len > cfg.max_positions {
        return Err(OpError::Input { name: "input_ids".into(), message: format!("{len} tokens, the model has {} positions", cfg.max_positions) });
    }
    let mut x = g.scoped("embeddings", |g| -> Result<TensorId, OpError> {
        let d = cfg.hidden_size;
        let table = g.param("token_embedding.weight", &[cfg.vocab_size, d])?;
        let tokens = g.embedding(ids, table)?;
        let pos = g.param("position_embedding.weight", &[cfg.max_positions, d])?;
        let pos = g.slice(pos, 0, 0, len)?;
        g.add(tokens, pos)
    })?;
    let mut penultimate = x;
    for i in 0..cfg.layers {
        if i + 1 == cfg.layers {
            penultimate = x;
        }
        x = g.scoped("encoder", |g| g.scoped("layers", |g| g.scoped(&i.to_string(), |g| layer(g, cfg, x))))?;
    }
    let last_hidden_state = norm(g, "final_layer_norm", x, cfg.eps)?;
    Ok(ClipOutputs { last_hidden_state, penultimate })
}

fn layer(g: &mut Graph, cfg: &ClipTextConfig, x: TensorId) -> Result<TensorId, OpError> {
    let h = norm(g, "layer_norm1", x, cfg.eps)?;
    let attn = g.scoped("self_attn", |g| -> Result<TensorId, OpError> {
        let d = cfg.hidden_size;
        let q = dense(g, "q_proj", h, d, true)?;
        let k = dense(g, "k_proj", h, d, true)?;
        let v = dense(g, "v_proj", h, d, true)?;
        let scale = 1.0 / ((d / cfg.heads) as f32).sqrt();
        let o = g.attention(q, k, v, cfg.heads, scale, true)?;
        dense(g, "out_proj", o, d, true)
    })?;
    let x = g.add(x, attn)?;
    let h = norm(g, "layer_norm2", x, cfg.eps)?;
    let mlp = g.scoped("mlp", |g| -> Result<TensorId, OpError> {
        let h = dense(g, "fc1", h, cfg.intermediate_size, true)?;
        let h = g.unary(h, cfg.act)?;
        dense(g, "fc2", h, cfg.hidden_size, true)
    })?;
    g.add(x, mlp)
}

/// `CLIPTextModelWithProjection`'s `text_embeds`: the final hidden state at each prompt's
/// end-of-text token, through `text_projection` (no bias). `eos_select` [B, 1, L] is one-hot
/// at that position (see `eos_one_hot`), so the matmul copies the row exactly.
pub fn text_embeds(g: &mut Graph, cfg: &ClipTextConfig, last_hidden_state: TensorId, eos_select: TensorId) -> Result<TensorId, OpError> {
    let pooled = g.matmul(eos_select, last_hidden_state, false)?;
    let s = g.shape(pooled).to_vec();
    let pooled = g.reshape(pooled, &[s[0], s[2]])?;
    dense(g, "text_projection", pooled, cfg.projection_dim, false)
}

/// One-hot rows [B, 1, L] picking the pooled position per prompt as transformers does for
/// configs with `eos_token_id` 2 (the original CLIP ones): the largest id, which is
/// `<|endoftext|>` (49407), first occurrence.
pub fn eos_one_hot(ids: &[u32], len: usize) -> Vec<f32> {
    let mut out = vec![0.0; ids.len()];
    for (row, o) in ids.chunks(len).zip(out.chunks_mut(len)) {
        let mut best = 0;
        for (i, &id) in row.iter().enumerate() {
            if id > row[best] {
                best = i;
            }
        }
        o[best] = 1.0;
    }
    out
}
