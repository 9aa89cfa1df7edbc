//! diffusers' `UNet2DConditionModel` for SD 1.x / 2.x / Turbo: every config variant of those
//! families (heads as int or list, linear or conv projection, upcast attention: we compute
//! attention in f32 anyway, 4 or 9 input channels).

use serde_json::Value;

use super::blocks::{downsample, resnet, transformer_2d, upsample_to, Norm, TransformerSpec};
use super::config::Cfg;
use super::layers::{conv, dense, group_norm, within};
use crate::error::OpError;
use crate::ops::{Graph, TensorId, UnaryOp};

/// The parts of the UNet's `config.json` the model uses.
#[derive(Debug, Clone)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    /// Whether each down block has cross-attention (CrossAttnDownBlock2D).
    pub down_attention: Vec<bool>,
    pub up_attention: Vec<bool>,
    pub heads: Vec<usize>,
    pub transformer_layers: Vec<usize>,
    pub cross_attention_dim: usize,
    pub linear_projection: bool,
    pub norm: Norm,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f32,
    /// Latent size the model was trained at.
    pub sample_size: usize,
    /// Tanh GELU in the feed-forward GEGLU (not diffusers; for comparing with candle-transformers).
    pub geglu_tanh: bool,
}

fn block_has_attention(component: &str, t: &str) -> Result<bool, OpError> {
    match t {
        "CrossAttnDownBlock2D" | "CrossAttnUpBlock2D" => Ok(true),
        "DownBlock2D" | "UpBlock2D" => Ok(false),
        other => Err(OpError::Config { component: component.into(), message: format!("block type '{other}' is not supported (SD 1.x/2.x blocks only)") }),
    }
}

impl UNetConfig {
    pub fn from_json(v: &Value) -> Result<Self, OpError> {
        let c = Cfg::new("unet", v);
        let block_out_channels = c.usizes("block_out_channels")?;
        let n = block_out_channels.len();
        let down = c.strings("down_block_types")?;
        let up = c.strings("up_block_types")?;
        if down.len() != n || up.len() != n {
            return Err(OpError::Config { component: "unet".into(), message: format!("{} down / {} up block types for {n} block_out_channels", down.len(), up.len()) });
        }
        for key in ["addition_embed_type", "class_embed_type", "encoder_hid_dim_type", "time_cond_proj_dim"] {
            if v.get(key).is_some_and(|x| !x.is_null()) {
                return Err(OpError::Config {
                    component: "unet".into(),
                    message: format!("'{key}' is set: this UNet variant (SDXL / LCM-distilled / class-conditioned) is not supported yet"),
                });
            }
        }
        c.expect_one_of("mid_block_type", &["UNetMidBlock2DCrossAttn"])?;
        c.expect_one_of("time_embedding_type", &["positional"])?;
        c.expect_one_of("resnet_time_scale_shift", &["default"])?;
        c.expect_one_of("act_fn", &["silu"])?;
        // diffusers: attention_head_dim is really the head count for SD 1.x / 2.x.
        let heads = match c.per_block("num_attention_heads", n)? {
            Some(h) => h,
            None => c.per_block("attention_head_dim", n)?.unwrap_or(vec![8; n]),
        };
        Ok(Self {
            in_channels: c.usize("in_channels")?,
            out_channels: c.usize("out_channels")?,
            layers_per_block: c.usize_or("layers_per_block", 2)?,
            down_attention: down.iter().map(|t| block_has_attention("unet", t)).collect::<Result<_, _>>()?,
            up_attention: up.iter().map(|t| block_has_attention("unet", t)).collect::<Result<_, _>>()?,
            heads,
            transformer_layers: c.per_block("transformer_layers_per_block", n)?.unwrap_or(vec![1; n]),
            cross_attention_dim: c.usize_or("cross_attention_dim", 1280)?,
            linear_projection: c.bool_or("use_linear_projection", false)?,
            norm: Norm { groups: c.usize_or("norm_num_groups", 32)?, eps: c.f32_or("norm_eps", 1e-5)? },
            flip_sin_to_cos: c.bool_or("flip_sin_to_cos", true)?,
            freq_shift: c.f32_or("freq_shift", 0.0)?,
            sample_size: c.usize_or("sample_size", 64)?,
            geglu_tanh: false,
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

/// Builds the UNet in the current scope ("unet"): `sample` [B, C, h, w], `timestep` [B],
/// `context` [B, L, cross_attention_dim] -> noise (or v) prediction [B, out, h, w].
pub fn unet(g: &mut Graph, cfg: &UNetConfig, sample: TensorId, timestep: TensorId, context: TensorId) -> Result<TensorId, OpError> {
    let c0 = cfg.block_out_channels[0];
    let temb = g.timestep_embedding(timestep, c0, cfg.flip_sin_to_cos, cfg.freq_shift)?;
    let temb = within(g, "time_embedding", |g| -> Result<TensorId, OpError> {
        let t = dense(g, "linear_1", temb)?;
        let t = g.unary(t, UnaryOp::Silu)?;
        dense(g, "linear_2", t)
    })?;
    // Every resnet applies SiLU to the embedding before its own projection.
    let temb = g.unary(temb, UnaryOp::Silu)?;

    let mut x = conv(g, "conv_in", sample, 1, 1)?;
    let mut skips = vec![x];
    let n = cfg.block_out_channels.len();
    for i in 0..n {
        x = within(g, &format!("down_blocks.{i}"), |g| -> Result<TensorId, OpError> {
            for j in 0..cfg.layers_per_block {
                x = within(g, &format!("resnets.{j}"), |g| resnet(g, x, Some(temb), cfg.norm))?;
                if cfg.down_attention[i] {
                    x = within(g, &format!("attentions.{j}"), |g| transformer_2d(g, x, context, cfg.spec(i)))?;
                }
                skips.push(x);
            }
            if i + 1 < n {
                x = downsample(g, x)?;
                skips.push(x);
            }
            Ok(x)
        })?;
    }
    x = g.scoped("mid_block", |g| -> Result<TensorId, OpError> {
        let x = within(g, "resnets.0", |g| resnet(g, x, Some(temb), cfg.norm))?;
        let x = within(g, "attentions.0", |g| transformer_2d(g, x, context, cfg.spec(n - 1)))?;
        within(g, "resnets.1", |g| resnet(g, x, Some(temb), cfg.norm))
    })?;
    for i in 0..n {
        let block = n - 1 - i; // up block i mirrors down block n-1-i
        x = within(g, &format!("up_blocks.{i}"), |g| -> Result<TensorId, OpError> {
            for j in 0..=cfg.layers_per_block {
                let skip = skips.pop().expect("one skip per up-block layer");
                x = g.concat(&[x, skip], 1)?;
                x = within(g, &format!("resnets.{j}"), |g| resnet(g, x, Some(temb), cfg.norm))?;
                if cfg.up_attention[i] {
                    x = within(g, &format!("attentions.{j}"), |g| transformer_2d(g, x, context, cfg.spec(block)))?;
                }
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
    conv(g, "conv_out", x, 1, 1)
}
