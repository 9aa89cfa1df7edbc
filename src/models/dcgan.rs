//! A DCGAN generator (Radford et al. 2015), class- and style-conditional: the latent z and
//! the class and style embeddings, concatenated, as a 1x1 map -> transposed convs (4x4, the
//! first stride 1 without padding, then stride 2 padding 1, each doubling the side) with
//! ReLU between and tanh last. Batch norm is folded into the convs when the model is saved
//! (`scripts/train/emoji_dcgan.py`), so inference has no norm op.
//!
//! Easel's own family (`_class_name: "DCGANGenerator"` in config.json): weights
//! `class_embedding.weight` [classes, Dc], `style_embedding.weight` [styles, Ds] (each
//! optional: an unconditional generator has neither), `blocks.{i}.weight` [in, out, k, k]
//! and `blocks.{i}.bias` [out].

use serde_json::Value;

use super::config::Cfg;
use crate::error::OpError;
use crate::ops::{Graph, TensorId, UnaryOp};

/// One class the generator can draw: its emoji (if any), names and keywords.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassLabel {
    pub emoji: String,
    pub names: Vec<String>,
    pub keywords: Vec<String>,
}

/// The generator's `config.json`.
#[derive(Debug, Clone)]
pub struct DcganConfig {
    pub z_dim: usize,
    /// The side of the square image (4 * 2^(blocks - 1)).
    pub image_size: usize,
    pub kernel_size: usize,
    /// Output channels of each transposed conv; the last is the image's (3).
    pub block_out_channels: Vec<usize>,
    /// The classes (prompts pick one by name); empty for an unconditional generator.
    pub classes: Vec<ClassLabel>,
    pub styles: Vec<String>,
    /// Widths of the class and style embeddings (0 when there are none).
    pub class_embedding_dim: usize,
    pub style_embedding_dim: usize,
}

fn refuse(message: String) -> OpError {
    OpError::Config { component: "generator".into(), message }
}

impl DcganConfig {
    pub fn from_json(v: &Value) -> Result<Self, OpError> {
        let c = Cfg::new("generator", v);
        let block_out_channels = c.usizes("block_out_channels")?;
        if block_out_channels.len() < 2 || block_out_channels.last() != Some(&3) {
            return Err(refuse(format!("'block_out_channels' {block_out_channels:?} must list two or more layers ending in 3 (RGB)")));
        }
        let kernel_size = c.usize_or("kernel_size", 4)?;
        if kernel_size != 4 {
            return Err(refuse(format!("'kernel_size' {kernel_size} is not supported (DCGAN's 4x4 only: stride 2, padding 1 doubles the side)")));
        }
        let image_size = c.usize("image_size")?;
        let built = 4 << (block_out_channels.len() - 1);
        if image_size != built {
            return Err(refuse(format!("'image_size' {image_size} does not match {} blocks, which make {built}x{built}", block_out_channels.len())));
        }
        let classes = match v.get("classes").and_then(Value::as_array) {
            None => vec![],
            Some(list) => list.iter().enumerate().map(|(i, e)| class_label(i, e)).collect::<Result<_, _>>()?,
        };
        let styles = if v.get("styles").is_some() { c.strings("styles")? } else { vec![] };
        let class_embedding_dim = if classes.is_empty() { 0 } else { c.usize("class_embedding_dim")? };
        let style_embedding_dim = if styles.is_empty() { 0 } else { c.usize("style_embedding_dim")? };
        Ok(Self { z_dim: c.usize("z_dim")?, image_size, kernel_size, block_out_channels, classes, styles, class_embedding_dim, style_embedding_dim })
    }
}

fn class_label(i: usize, e: &Value) -> Result<ClassLabel, OpError> {
    let strings = |key: &str| -> Result<Vec<String>, OpError> {
        match e.get(key) {
            None => Ok(vec![]),
            Some(Value::Array(a)) => a.iter().map(|s| s.as_str().map(str::to_string).ok_or_else(|| refuse(format!("classes[{i}].{key} has a non-string entry")))).collect(),
            Some(_) => Err(refuse(format!("classes[{i}].{key} is not a list"))),
        }
    };
    let names = strings("names")?;
    if names.is_empty() {
        return Err(refuse(format!("classes[{i}] has no names")));
    }
    let emoji = e.get("emoji").and_then(Value::as_str).unwrap_or("").to_string();
    Ok(ClassLabel { emoji, names, keywords: strings("keywords")? })
}

/// What a conditional generator is asked for: class (and style) ids u32 [B] to start from
/// and to morph to, mixed as keep x embedding(from) + t x embedding(to) with keep and t
/// f32 [B, 1] (keep = 1 - t; a plain draw has to = from, t = 0, which is exact).
#[derive(Debug, Clone, Copy)]
pub struct Condition {
    pub class: [TensorId; 2],
    pub style: Option<[TensorId; 2]>,
    pub keep: TensorId,
    pub t: TensorId,
}

fn mixed_embedding(g: &mut Graph, table: &str, shape: [usize; 2], ids: [TensorId; 2], keep: TensorId, t: TensorId) -> Result<TensorId, OpError> {
    let w = g.param(table, &shape)?;
    let (from, to) = (g.embedding(ids[0], w)?, g.embedding(ids[1], w)?);
    let (a, b) = (g.mul(from, keep)?, g.mul(to, t)?);
    g.add(a, b)
}

/// The image [B, 3, S, S] in [-1, 1] for z [B, z_dim] and, when the model has classes,
/// their (mixed) embeddings.
pub fn generator(g: &mut Graph, cfg: &DcganConfig, z: TensorId, cond: Option<Condition>) -> Result<TensorId, OpError> {
    let b = g.shape(z)[0];
    let mut parts = vec![z];
    if let Some(c) = cond {
        parts.push(mixed_embedding(g, "class_embedding.weight", [cfg.classes.len(), cfg.class_embedding_dim], c.class, c.keep, c.t)?);
        if let Some(style) = c.style {
            parts.push(mixed_embedding(g, "style_embedding.weight", [cfg.styles.len(), cfg.style_embedding_dim], style, c.keep, c.t)?);
        }
    }
    let h = g.concat(&parts, 1)?;
    let width = g.shape(h)[1];
    let mut h = g.reshape(h, &[b, width, 1, 1])?;
    let last = cfg.block_out_channels.len() - 1;
    for i in 0..=last {
        let (stride, pad) = if i == 0 { (1, 0) } else { (2, 1) };
        let (inp, out, k) = (g.shape(h)[1], cfg.block_out_channels[i], cfg.kernel_size);
        h = g.scoped(&format!("blocks.{i}"), |g| {
            // ConvTranspose2d keeps its weight as [in, out, k, k].
            let w = g.param("weight", &[inp, out, k, k])?;
            let bias = g.param_opt("bias", &[out], true)?;
            g.conv_transpose2d(h, w, bias, stride, pad)
        })?;
        h = g.unary(h, if i == last { UnaryOp::Tanh } else { UnaryOp::Relu })?;
    }
    Ok(h)
}
