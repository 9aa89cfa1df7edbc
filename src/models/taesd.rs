//! diffusers' `AutoencoderTiny` (TAESD) decoder: latents -> image in a few plain conv/ReLU
//! blocks, cheap enough to show every denoising step. Weights keep diffusers' names: the
//! decoder is one `nn.Sequential`, so `decoder.layers.N` counts every module, the weightless
//! ReLU and Upsample ones included.

use serde_json::Value;

use super::config::Cfg;
use super::layers::{conv, conv_with, within, ConvSpec};
use crate::error::OpError;
use crate::ops::{Graph, TensorId, UnaryOp};

/// The decoder's part of the `config.json`.
#[derive(Debug, Clone)]
pub struct TaesdConfig {
    pub latent_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub num_blocks: Vec<usize>,
    /// Pipelines decode `latents / scaling_factor + shift_factor` (1 and 0 for SD's TAESD,
    /// which was trained on the UNet's scaled latents).
    pub scaling_factor: f32,
    pub shift_factor: f32,
}

fn refuse(message: String) -> OpError {
    OpError::Config { component: "taesd".into(), message }
}

impl TaesdConfig {
    /// Reads diffusers' AutoencoderTiny config. `latent_magnitude` / `latent_shift` are not
    /// read: diffusers uses them only to round-trip latents through bytes in `forward`,
    /// never in `decode`.
    pub fn from_json(v: &Value) -> Result<Self, OpError> {
        let c = Cfg::new("taesd", v);
        c.expect_one_of("act_fn", &["relu"])?;
        c.expect_one_of("upsample_fn", &["nearest"])?;
        if c.usize_or("upsampling_scaling_factor", 2)? != 2 {
            return Err(refuse("'upsampling_scaling_factor' other than 2 is not supported".into()));
        }
        let block_out_channels = c.usizes("decoder_block_out_channels")?;
        let num_blocks = c.usizes("num_decoder_blocks")?;
        if block_out_channels.len() != num_blocks.len() || block_out_channels.is_empty() {
            return Err(refuse("'decoder_block_out_channels' and 'num_decoder_blocks' differ in length".into()));
        }
        // DecoderTiny's stage convs keep their width, so the next stage must have the same.
        if block_out_channels.iter().any(|&c| c != block_out_channels[0]) {
            return Err(refuse(format!("'decoder_block_out_channels' {block_out_channels:?} differ; DecoderTiny needs them equal")));
        }
        Ok(Self {
            latent_channels: c.usize_or("latent_channels", 4)?,
            out_channels: c.usize_or("out_channels", 3)?,
            block_out_channels,
            num_blocks,
            scaling_factor: c.f32_or("scaling_factor", 1.0)?,
            shift_factor: c.f32_or("shift_factor", 0.0)?,
        })
    }

    /// How much larger the image is than the latent.
    pub fn upscale(&self) -> usize {
        1 << (self.num_blocks.len() - 1)
    }

    /// `decoder.layers` in order (the schema and the graph both walk this list).
    pub fn layers(&self) -> Vec<Layer> {
        let ch = &self.block_out_channels;
        let mut list = vec![Layer::Conv { inp: self.latent_channels, out: ch[0], bias: true }, Layer::Relu];
        let last = self.num_blocks.len() - 1;
        for (i, &n) in self.num_blocks.iter().enumerate() {
            list.extend(std::iter::repeat_n(Layer::Block { channels: ch[i] }, n));
            if i < last {
                list.push(Layer::Upsample);
            }
            // Only the output conv has a bias: the others feed a block's conv straight away.
            let (out, bias) = if i < last { (ch[i], false) } else { (self.out_channels, true) };
            list.push(Layer::Conv { inp: ch[i], out, bias });
        }
        list
    }
}

/// One module of `decoder.layers`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layer {
    /// A 3x3 conv, padding 1.
    Conv {
        inp: usize,
        out: usize,
        bias: bool,
    },
    Relu,
    /// `AutoencoderTinyBlock`: relu(conv(relu(conv(relu(conv(x))))) + x) with convs `conv.0/2/4`.
    Block {
        channels: usize,
    },
    /// Nearest 2x.
    Upsample,
}

/// `AutoencoderTinyBlock` in the current scope. Decoder blocks never change width, so the
/// skip is the identity (a 1x1 `skip` conv exists only when they do).
fn block(g: &mut Graph, x: TensorId) -> Result<TensorId, OpError> {
    let c = g.shape(x)[1];
    let h = conv(g, "conv.0", x, c, 3, 1, 1)?;
    let h = g.unary(h, UnaryOp::Relu)?;
    let h = conv(g, "conv.2", h, c, 3, 1, 1)?;
    let h = g.unary(h, UnaryOp::Relu)?;
    let h = conv(g, "conv.4", h, c, 3, 1, 1)?;
    let skip = x;
    let sum = g.add(h, skip)?;
    g.unary(sum, UnaryOp::Relu)
}

/// `taesd.decode(z)` in the current scope ("taesd"): z [B, latent, h, w] (already divided by
/// the scaling factor) -> image [B, 3, 8h, 8w] in about [-1, 1], not clamped.
pub fn decode(g: &mut Graph, cfg: &TaesdConfig, z: TensorId) -> Result<TensorId, OpError> {
    // DecoderTiny's soft clamp of the latents to (-3, 3): tanh(z / 3) * 3.
    let x = g.unary(z, UnaryOp::Affine { mul: 1.0 / 3.0, add: 0.0 })?;
    let x = g.unary(x, UnaryOp::Tanh)?;
    let mut x = g.unary(x, UnaryOp::Affine { mul: 3.0, add: 0.0 })?;
    let x = within(g, "decoder.layers", |g| -> Result<TensorId, OpError> {
        for (i, layer) in cfg.layers().into_iter().enumerate() {
            let name = i.to_string();
            x = match layer {
                Layer::Conv { out, bias, .. } => conv_with(g, &name, x, ConvSpec { out, kernel: 3, stride: 1, padding: [1; 4], bias })?,
                Layer::Relu => g.unary(x, UnaryOp::Relu)?,
                Layer::Block { .. } => g.scoped(&name, |g| block(g, x))?,
                Layer::Upsample => g.upsample2x(x)?,
            };
        }
        Ok(x)
    })?;
    // The layers end in [0, 1] (TAESD's convention); diffusers returns [-1, 1].
    g.unary(x, UnaryOp::Affine { mul: 2.0, add: -1.0 })
}
