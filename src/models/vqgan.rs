//! VQ autoencoders: diffusers' `VQModel` (aMUSEd, LDM) and taming-transformers' `VQModel`
//! (renamed onto diffusers' keys by `taming.rs`). Encoder and decoder are the VAE's
//! (`vae.rs`); between them, nearest-codebook quantization: image -> encoder -> quant_conv
//! -> indices + z_q, and indices -> codebook rows -> post_quant_conv -> decoder.

use serde_json::Value;

use super::config::Cfg;
use super::layers::within;
use super::vae::{self, VaeConfig};
use crate::error::OpError;
use crate::ops::{Graph, TensorId, WeightShapes};

/// Where the model's weights live (diffusers' component name in aMUSEd repositories).
pub const SCOPE: &str = "vqvae";

/// The codebook: [num_embeddings, embed_dim].
const CODEBOOK: &str = "quantize.embedding.weight";

/// A VQ model's encoder/decoder and codebook size.
#[derive(Debug, Clone)]
pub struct VqConfig {
    pub vae: VaeConfig,
    pub num_embeddings: usize,
    pub embed_dim: usize,
}

fn refuse(message: String) -> OpError {
    OpError::Config { component: SCOPE.into(), message }
}

impl VqConfig {
    /// From a diffusers `VQModel` config.json.
    pub fn from_json(v: &Value) -> Result<Self, OpError> {
        let c = Cfg::new(SCOPE, v);
        // "spatial" is MoVQ's SpatialNorm decoder, conditioned on the codes.
        c.expect_one_of("norm_type", &["group"])?;
        let mut vae = VaeConfig::from_json_as(SCOPE, v)?;
        let embed_dim = match v.get("vq_embed_dim") {
            None | Some(Value::Null) => vae.latent_channels,
            Some(_) => c.usize("vq_embed_dim")?,
        };
        vae.vq_embed_dim = Some(embed_dim);
        Ok(Self { num_embeddings: c.usize_or("num_vq_embeddings", 256)?, embed_dim, vae })
    }

    /// From the weights' shapes alone (diffusers names under `vqvae.`), for checkpoints
    /// without a config: taming's GroupNorms always have 32 groups.
    pub fn infer(shapes: &dyn WeightShapes) -> Result<Self, OpError> {
        let shape = |name: &str| shapes.weight_shape(&format!("{SCOPE}.{name}"));
        let need = |name: &str| shape(name).ok_or_else(|| refuse(format!("no config, and no '{SCOPE}.{name}' to infer it from")));
        let has = |name: &str| shape(name).is_some();
        let codebook = need(CODEBOOK)?;
        let levels = (0..).take_while(|i| has(&format!("encoder.down_blocks.{i}.resnets.0.conv1.weight"))).count();
        let layers_per_block = (0..).take_while(|j| has(&format!("encoder.down_blocks.0.resnets.{j}.conv1.weight"))).count();
        let block_out_channels = (0..levels).map(|i| need(&format!("encoder.down_blocks.{i}.resnets.0.conv1.weight")).map(|s| s[0])).collect::<Result<Vec<_>, _>>()?;
        if levels == 0 || codebook.len() != 2 {
            return Err(refuse("the weights hold no VQ encoder (encoder.down_blocks.*) and codebook".into()));
        }
        let vae = VaeConfig {
            in_channels: need("encoder.conv_in.weight")?[1],
            out_channels: need("decoder.conv_out.weight")?[0],
            latent_channels: need("decoder.conv_in.weight")?[1],
            block_out_channels,
            layers_per_block,
            groups: 32,
            scaling_factor: 1.0,
            shift_factor: 0.0,
            mid_attention: has("encoder.mid_block.attentions.0.to_q.weight"),
            down_attention: (0..levels).map(|i| has(&format!("encoder.down_blocks.{i}.attentions.0.to_q.weight"))).collect(),
            up_attention: (0..levels).map(|i| has(&format!("decoder.up_blocks.{i}.attentions.0.to_q.weight"))).collect(),
            quant_conv: has("quant_conv.weight"),
            post_quant_conv: has("post_quant_conv.weight"),
            vq_embed_dim: Some(codebook[1]),
        };
        Ok(Self { vae, num_embeddings: codebook[0], embed_dim: codebook[1] })
    }

    /// How much smaller the code grid is than the image.
    pub fn downscale(&self) -> usize {
        self.vae.downscale()
    }
}

/// `quant_conv(encoder(image))`: image [B, C, H, W] in [-1, 1] -> pre-quantization latents
/// [B, embed_dim, H/f, W/f].
pub fn encode(g: &mut Graph, cfg: &VqConfig, image: TensorId) -> Result<TensorId, OpError> {
    g.scoped(SCOPE, |g| vae::encode(g, &cfg.vae, image))
}

/// Nearest codebook entries of latents [B, D, h, w]: (indices u32 [B, h, w], z_q, the
/// codebook rows [B, D, h, w]). z_q is the rows themselves, which the reference's
/// straight-through `h + (e - h)` equals up to rounding.
pub fn quantize(g: &mut Graph, cfg: &VqConfig, latents: TensorId) -> Result<(TensorId, TensorId), OpError> {
    let s = g.shape(latents).to_vec();
    let rows = g.permute(latents, &[0, 2, 3, 1])?;
    let rows = g.reshape(rows, &[s[0] * s[2] * s[3], s[1]])?;
    let codebook = codebook(g, cfg)?;
    let indices = g.vq_nearest(rows, codebook)?;
    let indices = g.reshape(indices, &[s[0], s[2], s[3]])?;
    Ok((indices, lookup(g, cfg, indices)?))
}

/// Codebook rows of indices u32 [B, h, w] -> z_q [B, D, h, w] (taming's
/// `get_codebook_entry`, diffusers' `lookup_from_codebook`).
pub fn lookup(g: &mut Graph, cfg: &VqConfig, indices: TensorId) -> Result<TensorId, OpError> {
    let codebook = codebook(g, cfg)?;
    let rows = g.embedding(indices, codebook)?;
    g.permute(rows, &[0, 3, 1, 2])
}

fn codebook(g: &mut Graph, cfg: &VqConfig) -> Result<TensorId, OpError> {
    let (n, d) = (cfg.num_embeddings, cfg.embed_dim);
    within(g, SCOPE, |g| g.param(CODEBOOK, &[n, d]))
}

/// `decoder(post_quant_conv(z_q))`: z_q [B, D, h, w] -> image [B, C, H, W], not clamped.
pub fn decode(g: &mut Graph, cfg: &VqConfig, z_q: TensorId) -> Result<TensorId, OpError> {
    decode_within(g, cfg, z_q, u64::MAX)
}

/// `decode` with no tensor over `max_bytes`: the last blocks in bands of rows where a map
/// would be larger (`vae_bands`; blocks with attention cannot be cut).
pub fn decode_within(g: &mut Graph, cfg: &VqConfig, z_q: TensorId, max_bytes: u64) -> Result<TensorId, OpError> {
    g.scoped(SCOPE, |g| vae::decode_within(g, &cfg.vae, z_q, max_bytes))
}
