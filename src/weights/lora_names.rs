//! Which model weight a LoRA layer's name means, and its alpha when the file keeps it in its
//! metadata. Facts from diffusers' converter (`lora_conversion_utils.py`), not its code:
//!
//! - kohya / A1111 names are the module path with `_` for `.`: `lora_unet_…`, `lora_te_…`
//!   (SD 1/2) or `lora_te1_…` / `lora_te2_…` (SDXL's two encoders), both under `text_model_`
//!   except te2's `text_projection`. They are matched against the model's own names, so no
//!   table of layers is needed.
//! - kohya trains SDXL on the sgm UNet, whose blocks are numbered differently:
//!   `input_blocks_0_0` is conv_in, `input_blocks_i_j` (i >= 1) is down block (i-1)/(L+1),
//!   layer (i-1)%(L+1), j = 0 resnet / 1 attention (`_0_op`: its downsampler), with L the
//!   layers per block; `middle_block_0/1/2` are resnet 0, attention 0, resnet 1;
//!   `output_blocks_i_j` is up block i/(L+1), layer i%(L+1), j = 0 resnet / 1 attention /
//!   2 upsampler; resnets say `in_layers_2` (conv1), `out_layers_3` (conv2), `emb_layers_1`
//!   (time_emb_proj), `skip_connection` (conv_shortcut); `time_embed_0/2`, `label_emb_0_0/2`
//!   and `out_2` are the time and added embeddings' linears and conv_out.
//! - peft files written by diffusers' `save_lora_weights` keep alphas in the metadata
//!   `lora_adapter_metadata` (JSON: `<component>.lora_alpha`, `.alpha_pattern`,
//!   `.use_rslora`, `.use_dora`).

use std::collections::{BTreeMap, HashMap};

/// kohya module name -> the model's weight name, for every weight in `names`.
pub(super) fn kohya_index(names: &[&str]) -> HashMap<String, String> {
    let mut index = HashMap::new();
    for &name in names {
        let Some(module) = name.strip_suffix(".weight") else { continue };
        let mut add = |kohya: String| {
            index.insert(kohya, name.to_string());
        };
        if let Some(rest) = module.strip_prefix("unet.") {
            add(format!("lora_unet_{}", rest.replace('.', "_")));
        } else if let Some(rest) = module.strip_prefix("text_encoder_2.") {
            add(format!("lora_te2_{}", te_path(rest)));
        } else if let Some(rest) = module.strip_prefix("text_encoder.") {
            add(format!("lora_te_{}", te_path(rest)));
            add(format!("lora_te1_{}", te_path(rest)));
        }
    }
    index
}

/// A text encoder's module path in kohya's spelling: under `text_model_` (transformers 5
/// drops that level for CLIPTextModel), except the projection of CLIPTextModelWithProjection.
fn te_path(rest: &str) -> String {
    let rest = rest.strip_prefix("text_model.").unwrap_or(rest);
    if rest == "text_projection" {
        return rest.into();
    }
    format!("text_model_{}", rest.replace('.', "_"))
}

/// Layers per block of the model's UNet, from its weight names (sgm numbering needs it).
pub(super) fn layers_per_block(names: &[&str]) -> usize {
    names.iter().filter_map(|n| n.strip_prefix("unet.down_blocks.0.resnets.")).filter_map(|r| r.split('.').next()?.parse::<usize>().ok()).max().map_or(2, |m| m + 1)
}

/// A kohya SDXL (sgm) UNet name in diffusers' numbering, still underscored
/// (`lora_unet_input_blocks_4_1_proj_in` -> `lora_unet_down_blocks_1_attentions_1_proj_in`
/// with 2 layers per block). Names already in diffusers' numbering come back as they are.
pub(super) fn sgm_to_diffusers(name: &str, lpb: usize) -> String {
    let Some(rest) = name.strip_prefix("lora_unet_") else { return name.into() };
    let parts: Vec<&str> = rest.split('_').collect();
    let num = |i: usize| parts.get(i).and_then(|p| p.parse::<usize>().ok());
    let tail = |from: usize| parts.get(from..).map(|p| p.join("_")).unwrap_or_default();
    let resnet = |t: String| {
        for (sgm, ours) in [("in_layers_2", "conv1"), ("out_layers_3", "conv2"), ("emb_layers_1", "time_emb_proj"), ("skip_connection", "conv_shortcut")] {
            if t == sgm {
                return ours.to_string();
            }
        }
        t
    };
    let mapped = match (parts.first().copied(), parts.get(1).copied()) {
        (Some("time"), Some("embed")) => match num(2) {
            Some(0) => Some("time_embedding_linear_1".to_string()),
            Some(2) => Some("time_embedding_linear_2".to_string()),
            _ => None,
        },
        (Some("label"), Some("emb")) => match (num(2), num(3)) {
            (Some(0), Some(0)) => Some("add_embedding_linear_1".into()),
            (Some(0), Some(2)) => Some("add_embedding_linear_2".into()),
            _ => None,
        },
        (Some("out"), Some("2")) if parts.len() == 2 => Some("conv_out".into()),
        (Some("input"), Some("blocks")) => match (num(2), num(3)) {
            (Some(0), Some(0)) => Some("conv_in".into()),
            (Some(i), Some(j)) if i >= 1 => {
                let (block, layer) = ((i - 1) / (lpb + 1), (i - 1) % (lpb + 1));
                match (j, tail(4).as_str()) {
                    (0, "op") => Some(format!("down_blocks_{block}_downsamplers_0_conv")),
                    (0, t) => Some(format!("down_blocks_{block}_resnets_{layer}_{}", resnet(t.into()))),
                    (1, t) => Some(format!("down_blocks_{block}_attentions_{layer}_{t}")),
                    _ => None,
                }
            }
            _ => None,
        },
        (Some("middle"), Some("block")) => match num(2) {
            Some(0) => Some(format!("mid_block_resnets_0_{}", resnet(tail(3)))),
            Some(1) => Some(format!("mid_block_attentions_0_{}", tail(3))),
            Some(2) => Some(format!("mid_block_resnets_1_{}", resnet(tail(3)))),
            _ => None,
        },
        (Some("output"), Some("blocks")) => match (num(2), num(3)) {
            (Some(i), Some(j)) => {
                let (block, layer) = (i / (lpb + 1), i % (lpb + 1));
                match j {
                    0 => Some(format!("up_blocks_{block}_resnets_{layer}_{}", resnet(tail(4)))),
                    1 => Some(format!("up_blocks_{block}_attentions_{layer}_{}", tail(4))),
                    2 => Some(format!("up_blocks_{block}_upsamplers_0_{}", tail(4))),
                    _ => None,
                }
            }
            _ => None,
        },
        _ => None,
    };
    mapped.map_or_else(|| name.into(), |m| format!("lora_unet_{m}"))
}

/// Alphas diffusers keeps in a peft file's metadata, per component (`unet`, `text_encoder`,
/// `text_encoder_2`).
#[derive(Debug, Default)]
pub(super) struct PeftAlphas(BTreeMap<String, serde_json::Value>);

impl PeftAlphas {
    pub(super) fn from_metadata(file: &str, metadata: &BTreeMap<String, String>) -> Result<Self, String> {
        let Some(text) = metadata.get("lora_adapter_metadata") else { return Ok(Self::default()) };
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("{file}: lora_adapter_metadata is not JSON: {e}"))?;
        let map: BTreeMap<String, serde_json::Value> = v.as_object().map(|o| o.clone().into_iter().collect()).unwrap_or_default();
        for (k, v) in &map {
            if k.ends_with(".use_dora") && v.as_bool() == Some(true) {
                return Err(format!("{file}: a DoRA ({k}): only plain LoRAs are supported"));
            }
        }
        Ok(Self(map))
    }

    /// The alpha of `module` (`unet.a.b`) with factors of `rank`, if the metadata gives one:
    /// its `alpha_pattern` entry (a module path, matched whole or as a dotted suffix), else
    /// the component's `lora_alpha`; rsLoRA's alpha / sqrt(rank) scaling as an alpha.
    pub(super) fn alpha(&self, module: &str, rank: usize) -> Option<f32> {
        let (component, path) = module.split_once('.')?;
        let get = |k: &str| self.0.get(&format!("{component}.{k}"));
        let pattern = get("alpha_pattern")
            .and_then(|p| p.as_object())
            .and_then(|p| p.iter().find(|(k, _)| path == k.as_str() || path.ends_with(&format!(".{k}"))).and_then(|(_, a)| a.as_f64()));
        let alpha = pattern.or_else(|| get("lora_alpha")?.as_f64())? as f32;
        let rslora = get("use_rslora").and_then(|v| v.as_bool()) == Some(true);
        Some(if rslora { alpha * (rank as f32).sqrt() } else { alpha })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgm_names_map_to_diffusers_blocks() {
        // SDXL: 2 layers per block.
        for (sgm, ours) in [
            ("lora_unet_input_blocks_0_0", "lora_unet_conv_in"),
            ("lora_unet_input_blocks_1_0_in_layers_2", "lora_unet_down_blocks_0_resnets_0_conv1"),
            ("lora_unet_input_blocks_3_0_op", "lora_unet_down_blocks_0_downsamplers_0_conv"),
            ("lora_unet_input_blocks_5_1_transformer_blocks_0_attn1_to_q", "lora_unet_down_blocks_1_attentions_1_transformer_blocks_0_attn1_to_q"),
            ("lora_unet_input_blocks_4_0_skip_connection", "lora_unet_down_blocks_1_resnets_0_conv_shortcut"),
            ("lora_unet_middle_block_1_proj_in", "lora_unet_mid_block_attentions_0_proj_in"),
            ("lora_unet_middle_block_2_emb_layers_1", "lora_unet_mid_block_resnets_1_time_emb_proj"),
            ("lora_unet_output_blocks_2_2_conv", "lora_unet_up_blocks_0_upsamplers_0_conv"),
            ("lora_unet_output_blocks_4_1_proj_out", "lora_unet_up_blocks_1_attentions_1_proj_out"),
            ("lora_unet_output_blocks_8_0_out_layers_3", "lora_unet_up_blocks_2_resnets_2_conv2"),
            ("lora_unet_time_embed_2", "lora_unet_time_embedding_linear_2"),
            ("lora_unet_label_emb_0_0", "lora_unet_add_embedding_linear_1"),
            ("lora_unet_out_2", "lora_unet_conv_out"),
            ("lora_unet_down_blocks_0_attentions_0_proj_in", "lora_unet_down_blocks_0_attentions_0_proj_in"),
        ] {
            assert_eq!(sgm_to_diffusers(sgm, 2), ours, "{sgm}");
        }
    }

    #[test]
    fn text_encoders_have_kohya_names_for_sd_and_sdxl() {
        let names = ["text_encoder.encoder.layers.0.mlp.fc1.weight", "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.weight", "text_encoder_2.text_projection.weight"];
        let index = kohya_index(&names);
        assert_eq!(index["lora_te_text_model_encoder_layers_0_mlp_fc1"], names[0]);
        assert_eq!(index["lora_te1_text_model_encoder_layers_0_mlp_fc1"], names[0]);
        assert_eq!(index["lora_te2_text_model_encoder_layers_0_self_attn_q_proj"], names[1]);
        assert_eq!(index["lora_te2_text_projection"], names[2]);
        assert_eq!(layers_per_block(&["unet.down_blocks.0.resnets.1.conv1.weight", "unet.down_blocks.0.resnets.0.conv1.weight"]), 2);
    }

    #[test]
    fn metadata_alphas_follow_patterns_and_rslora() {
        let meta = |json: &str| BTreeMap::from([("lora_adapter_metadata".to_string(), json.to_string())]);
        let a = PeftAlphas::from_metadata(
            "f",
            &meta(r#"{"unet.lora_alpha": 2, "unet.alpha_pattern": {"mid_block.attentions.0.proj_in": 8}, "text_encoder.lora_alpha": 4, "text_encoder.use_rslora": true}"#),
        )
        .unwrap();
        assert_eq!(a.alpha("unet.down_blocks.0.attentions.0.proj_in", 4), Some(2.0));
        assert_eq!(a.alpha("unet.mid_block.attentions.0.proj_in", 4), Some(8.0));
        assert_eq!(a.alpha("text_encoder.encoder.layers.0.mlp.fc1", 4), Some(8.0), "rsLoRA: alpha / sqrt(r) is alpha * sqrt(r) / r");
        assert_eq!(a.alpha("text_encoder_2.x", 4), None);
        assert!(PeftAlphas::from_metadata("f", &meta(r#"{"unet.use_dora": true}"#)).unwrap_err().contains("DoRA"));
    }
}
