//! diffusers' `AutoencoderKL`: the decoder (latents -> image) and the encoder (image ->
//! posterior moments). GroupNorm eps is 1e-6 throughout, and the encoder's stride-2 convs
//! pad (0, 1, 0, 1) like the original LDM code. The same encoder/decoder serve `VQModel`
//! (`vqgan.rs`), whose blocks may carry attention (`AttnDownEncoderBlock2D`,
//! `AttnUpDecoderBlock2D`, taming's `attn_resolutions`).

use serde_json::Value;

use super::blocks::{resnet, self_attention, upsample, Norm};
use super::config::Cfg;
use super::layers::{conv, conv_with, group_norm, within, ConvSpec};
use super::vae_bands;
use crate::error::OpError;
use crate::ops::{Graph, TensorId};

/// The parts of the VAE's `config.json` the model uses.
#[derive(Debug, Clone)]
pub struct VaeConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub groups: usize,
    pub scaling_factor: f32,
    pub shift_factor: f32,
    pub mid_attention: bool,
    /// Per down block (encoder) and per up block (decoder, in the order applied): whether
    /// each resnet is followed by a spatial attention.
    pub down_attention: Vec<bool>,
    pub up_attention: Vec<bool>,
    pub quant_conv: bool,
    pub post_quant_conv: bool,
    /// A `VQModel`'s codebook width: its encoder makes `latent_channels` (no posterior
    /// variance) and quant_conv maps them to this width; None for `AutoencoderKL`.
    pub vq_embed_dim: Option<usize>,
}

impl VaeConfig {
    pub fn from_json(v: &Value) -> Result<Self, OpError> {
        Self::from_json_as("vae", v)
    }

    /// As `from_json`, naming `component` in errors (the VQ models use the same keys).
    pub fn from_json_as(component: &str, v: &Value) -> Result<Self, OpError> {
        let c = Cfg::new(component, v);
        let down_attention = block_attention(component, &c.strings("down_block_types")?, "DownEncoderBlock2D", "AttnDownEncoderBlock2D")?;
        let up_attention = match v.get("up_block_types") {
            None | Some(Value::Null) => vec![false; down_attention.len()],
            Some(_) => block_attention(component, &c.strings("up_block_types")?, "UpDecoderBlock2D", "AttnUpDecoderBlock2D")?,
        };
        let block_out_channels = c.usizes("block_out_channels")?;
        if down_attention.len() != block_out_channels.len() || up_attention.len() != block_out_channels.len() {
            let message = format!("{} down / {} up block types for {} block_out_channels", down_attention.len(), up_attention.len(), block_out_channels.len());
            return Err(OpError::Config { component: component.into(), message });
        }
        Ok(Self {
            in_channels: c.usize_or("in_channels", 3)?,
            out_channels: c.usize_or("out_channels", 3)?,
            latent_channels: c.usize_or("latent_channels", 4)?,
            block_out_channels,
            layers_per_block: c.usize_or("layers_per_block", 1)?,
            groups: c.usize_or("norm_num_groups", 32)?,
            scaling_factor: c.f32_or("scaling_factor", 0.18215)?,
            shift_factor: c.f32_or("shift_factor", 0.0)?,
            mid_attention: c.bool_or("mid_block_add_attention", true)?,
            down_attention,
            up_attention,
            quant_conv: c.bool_or("use_quant_conv", true)?,
            post_quant_conv: c.bool_or("use_post_quant_conv", true)?,
            vq_embed_dim: None,
        })
    }

    /// How much smaller the latent is than the image.
    pub fn downscale(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }

    pub fn norm(&self) -> Norm {
        Norm { groups: self.groups, eps: 1e-6 }
    }

    /// Channels out of the encoder: the posterior's mean and log-variance, or the VQ latent.
    fn encoder_out(&self) -> usize {
        if self.vq_embed_dim.is_some() {
            self.latent_channels
        } else {
            2 * self.latent_channels
        }
    }
}

/// Whether each block of `types` (all `plain` or `attn`) has attention.
fn block_attention(component: &str, types: &[String], plain: &str, attn: &str) -> Result<Vec<bool>, OpError> {
    types
        .iter()
        .map(|t| match t.as_str() {
            t if t == plain => Ok(false),
            t if t == attn => Ok(true),
            _ => Err(OpError::Config { component: component.into(), message: format!("block '{t}' is not supported (supported: {plain}, {attn})") }),
        })
        .collect()
}

fn mid_block(g: &mut Graph, cfg: &VaeConfig, x: TensorId) -> Result<TensorId, OpError> {
    g.scoped("mid_block", |g| {
        let c = g.shape(x)[1];
        let mut x = within(g, "resnets.0", |g| resnet(g, x, c, None, cfg.norm()))?;
        if cfg.mid_attention {
            x = within(g, "attentions.0", |g| self_attention(g, x, cfg.groups, 1e-6, 1))?;
        }
        within(g, "resnets.1", |g| resnet(g, x, c, None, cfg.norm()))
    })
}

/// `vae.decode(z)` in the current scope ("vae"): z [B, latent, h, w] (already divided by
/// the scaling factor) -> image [B, 3, 8h, 8w], not clamped.
pub fn decode(g: &mut Graph, cfg: &VaeConfig, z: TensorId) -> Result<TensorId, OpError> {
    decode_within(g, cfg, z, u64::MAX)
}

/// `decode` with no tensor over `max_bytes` (a GPU's maxBufferSize): the last blocks run on
/// bands of rows when a map would be larger, or large enough that whole copies of it
/// would dominate memory (`vae_bands`), with the same result.
pub fn decode_within(g: &mut Graph, cfg: &VaeConfig, z: TensorId, max_bytes: u64) -> Result<TensorId, OpError> {
    let s = g.shape(z).to_vec();
    let cut = vae_bands::plan_for_memory(cfg, s[0], [s[2], s[3]], max_bytes)?;
    let latent = cfg.latent_channels;
    let z = if cfg.post_quant_conv { conv(g, "post_quant_conv", z, latent, 1, 1, 0)? } else { z };
    let ch = &cfg.block_out_channels;
    let n = ch.len();
    g.scoped("decoder", |g| {
        let mut x = conv(g, "conv_in", z, ch[n - 1], 3, 1, 1)?;
        x = mid_block(g, cfg, x)?;
        let mut bands: Option<vae_bands::Bands> = None;
        for i in 0..n {
            let out = ch[n - 1 - i]; // the decoder's blocks run the channels in reverse
            within(g, &format!("up_blocks.{i}"), |g| -> Result<(), OpError> {
                for j in 0..=cfg.layers_per_block {
                    let name = format!("resnets.{j}");
                    match bands.take() {
                        Some(b) => bands = Some(within(g, &name, |g| vae_bands::resnet(g, b, out, cfg.norm()))?),
                        None => {
                            x = within(g, &name, |g| resnet(g, x, out, None, cfg.norm()))?;
                            if cfg.up_attention[i] {
                                x = within(g, &format!("attentions.{j}"), |g| self_attention(g, x, cfg.groups, 1e-6, 1))?;
                            }
                        }
                    }
                }
                if let Some((_, count)) = cut.filter(|&(at, _)| at == i) {
                    bands = Some(vae_bands::Bands::split(g, x, count)?);
                }
                if i + 1 < n {
                    match bands.take() {
                        Some(b) => bands = Some(vae_bands::upsample(g, b)?),
                        None => x = upsample(g, x)?,
                    }
                }
                Ok(())
            })?;
        }
        match bands {
            Some(b) => vae_bands::norm_out(g, b, cfg.norm(), cfg.out_channels)?.join(g),
            None => {
                let x = group_norm(g, "conv_norm_out", x, cfg.groups, 1e-6, true)?;
                conv(g, "conv_out", x, cfg.out_channels, 3, 1, 1)
            }
        }
    })
}

/// The encoder in the current scope ("vae"): image [B, 3, H, W] in [-1, 1] -> moments
/// [B, 2*latent, H/8, W/8] (mean, then logvar, unclamped).
pub fn encode(g: &mut Graph, cfg: &VaeConfig, image: TensorId) -> Result<TensorId, OpError> {
    let s = g.shape(image).to_vec();
    let f = cfg.downscale();
    if !s[2].is_multiple_of(f) || !s[3].is_multiple_of(f) {
        return Err(OpError::Input { name: "image".into(), message: format!("{}x{} is not a multiple of {f}", s[3], s[2]) });
    }
    let moments = g.scoped("encoder", |g| {
        let ch = &cfg.block_out_channels;
        let mut x = conv(g, "conv_in", image, ch[0], 3, 1, 1)?;
        let n = ch.len();
        for (i, &out) in ch.iter().enumerate() {
            x = within(g, &format!("down_blocks.{i}"), |g| -> Result<TensorId, OpError> {
                for j in 0..cfg.layers_per_block {
                    x = within(g, &format!("resnets.{j}"), |g| resnet(g, x, out, None, cfg.norm()))?;
                    if cfg.down_attention[i] {
                        x = within(g, &format!("attentions.{j}"), |g| self_attention(g, x, cfg.groups, 1e-6, 1))?;
                    }
                }
                if i + 1 < n {
                    let spec = ConvSpec { out, kernel: 3, stride: 2, padding: [0, 1, 0, 1], bias: true };
                    x = within(g, "downsamplers.0", |g| conv_with(g, "conv", x, spec))?;
                }
                Ok(x)
            })?;
        }
        x = mid_block(g, cfg, x)?;
        let x = group_norm(g, "conv_norm_out", x, cfg.groups, 1e-6, true)?;
        conv(g, "conv_out", x, cfg.encoder_out(), 3, 1, 1)
    })?;
    if cfg.quant_conv {
        let out = cfg.vq_embed_dim.unwrap_or(2 * cfg.latent_channels);
        conv(g, "quant_conv", moments, out, 1, 1, 0)
    } else {
        Ok(moments)
    }
}
