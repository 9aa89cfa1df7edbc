//! taming-transformers' `VQModel` (and LDM's, which has the same layout) as a diffusers
//! `VQModel`: its `config.yaml` read into a `VqConfig`, and its checkpoint keys renamed to
//! diffusers' so one encoder/decoder graph (`vae.rs`) serves both.

use serde_json::Value;

use super::config::Cfg;
use super::vae::VaeConfig;
use super::vqgan::{VqConfig, SCOPE};
use super::yaml;
use crate::error::OpError;
use crate::ops::{HostWeight, WeightStore};

fn refuse(message: String) -> OpError {
    OpError::Config { component: "taming".into(), message }
}

/// The model's settings from a taming `config.yaml` (`model.params` with its `ddconfig`).
pub fn config_from_yaml(text: &str) -> Result<VqConfig, OpError> {
    let doc = yaml::parse(text).map_err(|e| refuse(format!("config.yaml: {e}")))?;
    if let Some(target) = doc.pointer("/model/target").and_then(Value::as_str) {
        // GumbelVQ and EMAVQ quantize differently and name their codebook otherwise.
        if !target.ends_with(".VQModel") {
            return Err(refuse(format!("model target '{target}' is not supported (supported: taming/LDM VQModel)")));
        }
    }
    let params = doc.pointer("/model/params").unwrap_or(&doc);
    if params.get("remap").is_some_and(|v| !v.is_null()) {
        return Err(refuse("'remap' (a remapped codebook subset) is not supported".into()));
    }
    let p = Cfg::new("taming", params);
    let dd = params.get("ddconfig").ok_or_else(|| refuse("config.yaml has no model.params.ddconfig".into()))?;
    let d = Cfg::new("taming ddconfig", dd);
    for key in ["tanh_out", "give_pre_end"] {
        if d.bool_or(key, false)? {
            return Err(refuse(format!("ddconfig '{key}: true' is not supported")));
        }
    }
    if !d.bool_or("resamp_with_conv", true)? {
        return Err(refuse("ddconfig 'resamp_with_conv: false' is not supported".into()));
    }
    let ch = d.usize("ch")?;
    let block_out_channels: Vec<usize> = d.usizes("ch_mult")?.iter().map(|m| ch * m).collect();
    let n = block_out_channels.len();
    if n == 0 {
        return Err(refuse("ddconfig 'ch_mult' is empty".into()));
    }
    let resolution = d.usize("resolution")?;
    let attn = match dd.get("attn_resolutions") {
        None | Some(Value::Null) => vec![],
        Some(_) => d.usizes("attn_resolutions")?,
    };
    // Level i works at resolution / 2^i in both halves; the decoder's up_blocks.0 is
    // taming's deepest level.
    let down_attention: Vec<bool> = (0..n).map(|i| attn.contains(&(resolution >> i))).collect();
    let up_attention = down_attention.iter().rev().copied().collect();
    let vae = VaeConfig {
        in_channels: d.usize_or("in_channels", 3)?,
        out_channels: d.usize_or("out_ch", 3)?,
        latent_channels: d.usize("z_channels")?,
        block_out_channels,
        layers_per_block: d.usize("num_res_blocks")?,
        groups: 32,
        scaling_factor: 1.0,
        shift_factor: 0.0,
        mid_attention: true,
        down_attention,
        up_attention,
        quant_conv: true,
        post_quant_conv: true,
        vq_embed_dim: Some(p.usize("embed_dim")?),
    };
    Ok(VqConfig { vae, num_embeddings: p.usize("n_embed")?, embed_dim: p.usize("embed_dim")? })
}

/// A taming key as diffusers names it (under `vqvae.`), given the number of resolution
/// levels (the decoder's `up.{i}` is `up_blocks.{levels-1-i}`); None for the training
/// loss's tensors (`loss.*`).
pub fn diffusers_name(name: &str, levels: usize) -> Option<String> {
    let parts: Vec<&str> = name.split('.').collect();
    let renamed = match parts.as_slice() {
        ["loss", ..] => return None,
        [part @ ("encoder" | "decoder"), rest @ ..] => format!("{part}.{}", coder(rest, levels)),
        _ => name.to_string(),
    };
    Some(format!("{SCOPE}.{renamed}"))
}

fn coder(parts: &[&str], levels: usize) -> String {
    match parts {
        ["down", i, rest @ ..] => format!("down_blocks.{i}.{}", level(rest)),
        ["up", i, rest @ ..] => match i.parse::<usize>() {
            Ok(i) if i < levels => format!("up_blocks.{}.{}", levels - 1 - i, level(rest)),
            _ => parts.join("."),
        },
        ["mid", "block_1", rest @ ..] => format!("mid_block.resnets.0.{}", resnet(rest)),
        ["mid", "block_2", rest @ ..] => format!("mid_block.resnets.1.{}", resnet(rest)),
        ["mid", "attn_1", rest @ ..] => format!("mid_block.attentions.0.{}", attention(rest)),
        ["norm_out", rest @ ..] => format!("conv_norm_out.{}", rest.join(".")),
        _ => parts.join("."),
    }
}

fn level(parts: &[&str]) -> String {
    match parts {
        ["block", j, rest @ ..] => format!("resnets.{j}.{}", resnet(rest)),
        ["attn", j, rest @ ..] => format!("attentions.{j}.{}", attention(rest)),
        ["downsample", rest @ ..] => format!("downsamplers.0.{}", rest.join(".")),
        ["upsample", rest @ ..] => format!("upsamplers.0.{}", rest.join(".")),
        _ => parts.join("."),
    }
}

fn resnet(parts: &[&str]) -> String {
    match parts {
        ["nin_shortcut", rest @ ..] => format!("conv_shortcut.{}", rest.join(".")),
        _ => parts.join("."),
    }
}

fn attention(parts: &[&str]) -> String {
    let layer = match parts.first() {
        Some(&"norm") => "group_norm",
        Some(&"q") => "to_q",
        Some(&"k") => "to_k",
        Some(&"v") => "to_v",
        Some(&"proj_out") => "to_out.0",
        _ => return parts.join("."),
    };
    format!("{layer}.{}", parts[1..].join("."))
}

/// Number of resolution levels: one per `decoder.up.{i}`.
pub fn levels<'a>(names: impl IntoIterator<Item = &'a str>) -> usize {
    names.into_iter().filter_map(|n| n.strip_prefix("decoder.up.")?.split('.').next()?.parse::<usize>().ok()).map(|i| i + 1).max().unwrap_or(0)
}

/// A taming tensor's diffusers name and shape (None: dropped, the loss's tensors). The
/// attention's q/k/v/proj_out are 1x1 convs there and linear layers here: the same values,
/// shape [C, C, 1, 1] -> [C, C].
pub fn renamed(name: &str, shape: &[usize], levels: usize) -> Option<(String, Vec<usize>)> {
    let new = diffusers_name(name, levels)?;
    let to_linear = [".to_q.weight", ".to_k.weight", ".to_v.weight", ".to_out.0.weight"].iter().any(|s| new.ends_with(s));
    let shape = if to_linear && shape.len() == 4 && shape[2] == 1 && shape[3] == 1 { shape[..2].to_vec() } else { shape.to_vec() };
    Some((new, shape))
}

/// A taming checkpoint's weights under diffusers' names (see `renamed`).
pub fn rename_store(store: WeightStore) -> Result<WeightStore, OpError> {
    let levels = levels(store.names());
    let mut out = WeightStore::new();
    for (name, w) in store.into_tensors() {
        let Some((new, shape)) = renamed(&name, &w.shape, levels) else { continue };
        out.insert_raw(&new, HostWeight { shape, ..w })?;
    }
    Ok(out)
}

/// A converted taming model's manifest under diffusers' names, before its shards stream
/// in (the browser writes each tensor straight to its buffer by the manifest's name):
/// dropped tensors' bytes are then skipped.
pub fn rename_manifest(manifest: &mut crate::weights::Manifest) {
    let levels = levels(manifest.tensors.iter().map(|t| t.name.as_str()));
    manifest.tensors.retain_mut(|t| match renamed(&t.name, &t.shape, levels) {
        Some((name, shape)) => {
            (t.name, t.shape) = (name, shape);
            true
        }
        None => false,
    });
}
