//! diffusers' `UNet2DConditionModel` for SD 1.x / 2.x / Turbo and SDXL (its `text_time`
//! added conditioning, transformer depth per block): every config variant of those
//! families (heads as int or list, linear or conv projection, upcast attention: we compute
//! attention in f32 anyway, 4 or 9 input channels), and `UNet2DModel`, the unconditional
//! pixel-space UNet of DDPM: the same skeleton with spatial self-attention blocks instead
//! of cross-attention transformers.

use serde_json::Value;

use super::blocks::{resnet, self_attention, transformer_2d, upsample_to, Norm, TransformerSpec};
use super::config::Cfg;
use super::layers::{conv, conv_with, dense, group_norm, within, ConvSpec};
use crate::error::OpError;
use crate::ops::{Graph, TensorId, UnaryOp};

/// The parts of the UNet's `config.json` the model uses.
#[derive(Debug, Clone)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    /// What attention each down block has (CrossAttnDownBlock2D, AttnDownBlock2D, none).
    pub down_attention: Vec<Attn>,
    pub up_attention: Vec<Attn>,
    /// Heads per block: of the cross-attention transformers, or of the self-attention
    /// blocks (channels / attention_head_dim; one head when that is null).
    pub heads: Vec<usize>,
    pub transformer_layers: Vec<usize>,
    pub cross_attention_dim: usize,
    pub linear_projection: bool,
    pub norm: Norm,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f32,
    /// Latent size the model was trained at.
    pub sample_size: usize,
    /// Padding of the stride-2 downsampling convs: 1, or 0 for (0, 1, 0, 1) as in DDPM.
    pub downsample_padding: usize,
    /// UNet2DModel: no text context; mid block with self-attention (or none).
    pub unconditional: bool,
    /// Tanh GELU in the feed-forward GEGLU (not diffusers; for comparing with candle-transformers).
    pub geglu_tanh: bool,
    /// SDXL's added conditioning (`addition_embed_type: "text_time"`).
    pub text_time: Option<TextTime>,
}

/// SDXL's `text_time` conditioning: the pooled text embedding and 6 time ids (original
/// size, crop top-left, target size), each id through a sinusoidal embedding of `time_dim`,
/// concatenated (`input_dim` wide), through `add_embedding`, added to the time embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextTime {
    pub time_dim: usize,
    pub input_dim: usize,
}

/// The added-conditioning inputs of an SDXL UNet call: `text_embeds` [B, P], `time_ids` [B, 6].
#[derive(Debug, Clone, Copy)]
pub struct Added {
    pub text_embeds: TensorId,
    pub time_ids: TensorId,
}

/// A block's attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attn {
    None,
    /// `Transformer2DModel` attending to the text (UNet2DConditionModel).
    Cross,
    /// Spatial self-attention (UNet2DModel's Attn*Block2D, and its mid block).
    SelfAttn,
}

fn block_attention(component: &str, t: &str, unconditional: bool) -> Result<Attn, OpError> {
    match (t, unconditional) {
        ("CrossAttnDownBlock2D" | "CrossAttnUpBlock2D", false) => Ok(Attn::Cross),
        ("AttnDownBlock2D" | "AttnUpBlock2D", true) => Ok(Attn::SelfAttn),
        ("DownBlock2D" | "UpBlock2D", _) => Ok(Attn::None),
        (other, _) => Err(OpError::Config { component: component.into(), message: format!("block type '{other}' is not supported in this UNet") }),
    }
}

impl UNetConfig {
    pub fn from_json(v: &Value) -> Result<Self, OpError> {
        let c = Cfg::new("unet", v);
        let unconditional = c.str_or("_class_name", "UNet2DConditionModel")? == "UNet2DModel";
        let block_out_channels = c.usizes("block_out_channels")?;
        let n = block_out_channels.len();
        let down = c.strings("down_block_types")?;
        let up = c.strings("up_block_types")?;
        if down.len() != n || up.len() != n {
            return Err(OpError::Config { component: "unet".into(), message: format!("{} down / {} up block types for {n} block_out_channels", down.len(), up.len()) });
        }
        let text_time = match v.get("addition_embed_type").and_then(|x| x.as_str()) {
            Some("text_time") => Some(TextTime { time_dim: c.usize("addition_time_embed_dim")?, input_dim: c.usize("projection_class_embeddings_input_dim")? }),
            _ => None,
        };
        for key in ["addition_embed_type", "class_embed_type", "encoder_hid_dim_type", "time_cond_proj_dim", "reverse_transformer_layers_per_block"] {
            if key == "addition_embed_type" && text_time.is_some() {
                continue;
            }
            if v.get(key).is_some_and(|x| !x.is_null()) {
                return Err(OpError::Config {
                    component: "unet".into(),
                    message: format!("'{key}' is set: this UNet variant (LCM-distilled / class-conditioned / image-conditioned) is not supported yet"),
                });
            }
        }
        c.expect_one_of("mid_block_type", if unconditional { &["UNetMidBlock2D"] } else { &["UNetMidBlock2DCrossAttn"] })?;
        c.expect_one_of("time_embedding_type", &["positional"])?;
        c.expect_one_of("resnet_time_scale_shift", &["default"])?;
        c.expect_one_of("act_fn", &["silu"])?;
        if unconditional {
            for (key, want) in [("mid_block_scale_factor", 1.0), ("center_input_sample", 0.0)] {
                let value = v.get(key).and_then(|x| x.as_f64().or(x.as_bool().map(|b| b as u8 as f64))).unwrap_or(want);
                if value != want {
                    return Err(OpError::Config { component: "unet".into(), message: format!("'{key}' = {value} is not supported") });
                }
            }
            c.expect_one_of("downsample_type", &["conv"])?;
            c.expect_one_of("upsample_type", &["conv"])?;
            if !c.bool_or("add_attention", true)? {
                return Err(OpError::Config { component: "unet".into(), message: "'add_attention' = false is not supported".into() });
            }
        }
        let heads = if unconditional {
            // One head as wide as the block unless attention_head_dim sets the head width.
            let width = v.get("attention_head_dim").and_then(|x| x.as_u64()).map(|d| d as usize);
            block_out_channels.iter().map(|&ch| width.map_or(1, |d| (ch / d.max(1)).max(1))).collect()
        } else {
            // diffusers: attention_head_dim is really the head count for SD 1.x / 2.x.
            match c.per_block("num_attention_heads", n)? {
                Some(h) => h,
                None => c.per_block("attention_head_dim", n)?.unwrap_or(vec![8; n]),
            }
        };
        Ok(Self {
            in_channels: c.usize("in_channels")?,
            out_channels: c.usize("out_channels")?,
            layers_per_block: c.usize_or("layers_per_block", 2)?,
            down_attention: down.iter().map(|t| block_attention("unet", t, unconditional)).collect::<Result<_, _>>()?,
            up_attention: up.iter().map(|t| block_attention("unet", t, unconditional)).collect::<Result<_, _>>()?,
            heads,
            transformer_layers: c.per_block("transformer_layers_per_block", n)?.unwrap_or(vec![1; n]),
            cross_attention_dim: c.usize_or("cross_attention_dim", 1280)?,
            linear_projection: c.bool_or("use_linear_projection", false)?,
            norm: Norm { groups: c.usize_or("norm_num_groups", 32)?, eps: c.f32_or("norm_eps", 1e-5)? },
            flip_sin_to_cos: c.bool_or("flip_sin_to_cos", true)?,
            freq_shift: c.f32_or("freq_shift", 0.0)?,
            sample_size: c.usize_or("sample_size", 64)?,
            downsample_padding: c.usize_or("downsample_padding", 1)?,
            unconditional,
            geglu_tanh: false,
            text_time,
            block_out_channels,
        })
    }

    /// How many times the latent is halved (and doubled back).
    pub fn downsamples(&self) -> usize {
        self.block_out_channels.len() - 1
    }

    fn spec(&self, block: usize) -> TransformerSpec {
        TransformerSpec {
            heads: self.heads[block],
            geglu_tanh: self.geglu_tanh,
            layers: self.transformer_layers[block],
            linear_projection: self.linear_projection,
            groups: self.norm.groups,
        }
    }
}

/// A block's attention layer `j` over `x`.
fn block_attention_layer(g: &mut Graph, cfg: &UNetConfig, kind: Attn, block: usize, x: TensorId, context: Option<TensorId>) -> Result<TensorId, OpError> {
    match (kind, context) {
        (Attn::None, _) => Ok(x),
        (Attn::Cross, Some(context)) => transformer_2d(g, x, context, cfg.spec(block)),
        (Attn::Cross, None) => Err(OpError::Input { name: "context".into(), message: "this UNet attends to text: give it the prompt's embeddings".into() }),
        (Attn::SelfAttn, _) => self_attention(g, x, cfg.norm.groups, cfg.norm.eps, cfg.heads[block]),
    }
}

/// Builds the UNet in the current scope ("unet"): `sample` [B, C, h, w], `timestep` [B],
/// `context` [B, L, cross_attention_dim] (None for UNet2DModel) -> noise (or v)
/// prediction [B, out, h, w].
pub fn unet(g: &mut Graph, cfg: &UNetConfig, sample: TensorId, timestep: TensorId, context: Option<TensorId>) -> Result<TensorId, OpError> {
    unet_added(g, cfg, sample, timestep, context, None)
}

/// `unet` with SDXL's added conditioning (required when the config has `text_time`).
pub fn unet_added(g: &mut Graph, cfg: &UNetConfig, sample: TensorId, timestep: TensorId, context: Option<TensorId>, added: Option<Added>) -> Result<TensorId, OpError> {
    let ch = &cfg.block_out_channels;
    let c0 = ch[0];
    let temb = g.timestep_embedding(timestep, c0, cfg.flip_sin_to_cos, cfg.freq_shift)?;
    let mut temb = within(g, "time_embedding", |g| -> Result<TensorId, OpError> {
        let t = dense(g, "linear_1", temb, 4 * c0, true)?;
        let t = g.unary(t, UnaryOp::Silu)?;
        dense(g, "linear_2", t, 4 * c0, true)
    })?;
    match (cfg.text_time, added) {
        (Some(tt), Some(a)) => {
            let aug = text_time_embedding(g, cfg, tt, a, 4 * c0)?;
            temb = g.add(temb, aug)?;
        }
        (Some(_), None) => return Err(OpError::Input { name: "text_embeds".into(), message: "this UNet (SDXL) needs the pooled text embedding and the time ids".into() }),
        (None, Some(_)) => return Err(OpError::Input { name: "text_embeds".into(), message: "this UNet has no added conditioning".into() }),
        (None, None) => {}
    }
    // Every resnet applies SiLU to the embedding before its own projection.
    let temb = g.unary(temb, UnaryOp::Silu)?;

    let mut x = conv(g, "conv_in", sample, c0, 3, 1, 1)?;
    let mut skips = vec![x];
    let n = cfg.block_out_channels.len();
    for (i, &out) in ch.iter().enumerate() {
        x = within(g, &format!("down_blocks.{i}"), |g| -> Result<TensorId, OpError> {
            for j in 0..cfg.layers_per_block {
                x = within(g, &format!("resnets.{j}"), |g| resnet(g, x, out, Some(temb), cfg.norm))?;
                x = within(g, &format!("attentions.{j}"), |g| block_attention_layer(g, cfg, cfg.down_attention[i], i, x, context))?;
                skips.push(x);
            }
            if i + 1 < n {
                // diffusers' Downsample2D pads (0, 1, 0, 1) itself when its padding is 0.
                let p = cfg.downsample_padding;
                let padding = if p == 0 { [0, 1, 0, 1] } else { [p; 4] };
                let spec = ConvSpec { out, kernel: 3, stride: 2, padding, bias: true };
                x = within(g, "downsamplers.0", |g| conv_with(g, "conv", x, spec))?;
                skips.push(x);
            }
            Ok(x)
        })?;
    }
    x = g.scoped("mid_block", |g| -> Result<TensorId, OpError> {
        let x = within(g, "resnets.0", |g| resnet(g, x, ch[n - 1], Some(temb), cfg.norm))?;
        let kind = if cfg.unconditional { Attn::SelfAttn } else { Attn::Cross };
        let x = within(g, "attentions.0", |g| block_attention_layer(g, cfg, kind, n - 1, x, context))?;
        within(g, "resnets.1", |g| resnet(g, x, ch[n - 1], Some(temb), cfg.norm))
    })?;
    for i in 0..n {
        let block = n - 1 - i; // up block i mirrors down block n-1-i
        x = within(g, &format!("up_blocks.{i}"), |g| -> Result<TensorId, OpError> {
            for j in 0..=cfg.layers_per_block {
                let skip = skips.pop().expect("one skip per up-block layer");
                x = g.concat(&[x, skip], 1)?;
                x = within(g, &format!("resnets.{j}"), |g| resnet(g, x, ch[block], Some(temb), cfg.norm))?;
                x = within(g, &format!("attentions.{j}"), |g| block_attention_layer(g, cfg, cfg.up_attention[i], block, x, context))?;
            }
            if i + 1 < n {
                // Upsample to the next skip's size: 2x, or 2x - 1 where a stride-2 conv
                // rounded an odd size up (diffusers' forward_upsample_size).
                let next = skips.last().expect("skips left for the next up block");
                let size = g.shape(*next).to_vec();
                x = upsample_to(g, x, size[2], size[3])?;
            }
            Ok(x)
        })?;
    }
    let x = group_norm(g, "conv_norm_out", x, cfg.norm.groups, cfg.norm.eps, true)?;
    conv(g, "conv_out", x, cfg.out_channels, 3, 1, 1)
}

/// SDXL's `add_embedding(concat(text_embeds, add_time_proj(time_ids)))` [B, width].
fn text_time_embedding(g: &mut Graph, cfg: &UNetConfig, tt: TextTime, a: Added, width: usize) -> Result<TensorId, OpError> {
    let ids = g.shape(a.time_ids).to_vec();
    let pooled = g.shape(a.text_embeds).to_vec();
    let b = ids[0];
    if ids.len() != 2 || pooled.len() != 2 || pooled[0] != b || pooled[1] + ids[1] * tt.time_dim != tt.input_dim {
        let message = format!("text_embeds {pooled:?} and time_ids {ids:?} do not make the {} inputs of add_embedding", tt.input_dim);
        return Err(OpError::Input { name: "time_ids".into(), message });
    }
    // Every id gets its own sinusoidal embedding, the same as diffusers' add_time_proj.
    let flat = g.reshape(a.time_ids, &[b * ids[1]])?;
    let t = g.timestep_embedding(flat, tt.time_dim, cfg.flip_sin_to_cos, cfg.freq_shift)?;
    let t = g.reshape(t, &[b, ids[1] * tt.time_dim])?;
    let x = g.concat(&[a.text_embeds, t], 1)?;
    within(g, "add_embedding", |g| -> Result<TensorId, OpError> {
        let h = dense(g, "linear_1", x, width, true)?;
        let h = g.unary(h, UnaryOp::Silu)?;
        dense(g, "linear_2", h, width, true)
    })
}
