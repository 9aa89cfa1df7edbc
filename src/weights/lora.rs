//! LoRA files and their merge into a model's weights: delta = scale x (alpha / rank) x
//! up @ down on every layer the file names, added to the base weight (dequantized first
//! and stored again in the base's own format, so q8_0 / q4_0 models take LoRAs too).
//!
//! Formats read: diffusers / peft, as `save_lora_weights` writes it (`unet.<module>.lora_A.weight`
//! [rank, in(, k, k)] and `lora_B.weight` [out, rank(, 1, 1)], optional `<module>.alpha`,
//! text-encoder keys with transformers 5's or 4's names), and kohya / A1111
//! (`lora_unet_<module with _>.lora_down.weight` / `.lora_up.weight` / `.alpha`, `lora_te_…`
//! for the text encoder): their underscored names are matched against the model's own weight
//! names (SDXL's sgm block numbering and `lora_te1_`/`lora_te2_` included; see `lora_names`).
//! A key that names no layer of the model, or a shape that does not fit its layer, is
//! refused, by name, before any weight changes.

use std::collections::BTreeMap;

use super::lora_names::{kohya_index, layers_per_block, sgm_to_diffusers, PeftAlphas};
use super::manifest::sha256_hex;
use super::safetensors;
use crate::ops::cpu::gemm::{par_gemm, BMatrix};
use crate::ops::WeightStore;

/// One adapted layer: the model weight it changes and its low-rank factors.
#[derive(Debug, Clone)]
pub struct LoraLayer {
    /// The base weight's name in the model, e.g. `unet.….attn1.to_q.weight`.
    pub target: String,
    pub rank: usize,
    pub alpha: f32,
    /// [rank, in * k * k] and [out, rank], row-major.
    pub down: Vec<f32>,
    pub up: Vec<f32>,
    /// The shapes as stored, for messages.
    down_shape: Vec<usize>,
    up_shape: Vec<usize>,
}

/// A LoRA file, read.
#[derive(Debug, Clone)]
pub struct Lora {
    /// The file's name without its extension (what A1111's `<lora:name:scale>` says).
    pub name: String,
    /// sha256 of the file (hex): the "Lora hashes" field records its first 12 characters.
    pub sha256: String,
    /// Layers by the file's module name.
    pub layers: BTreeMap<String, LoraLayer>,
}

/// The weight a peft module name adapts, in the model's (diffusers, transformers 5) names.
fn target_of(module: &str) -> String {
    format!("{module}.weight")
}

impl Lora {
    /// Reads a LoRA safetensors file (`file` names it in errors).
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Lora, String> {
        let header = safetensors::parse(file, bytes).map_err(|e| e.to_string())?;
        let name = std::path::Path::new(file).file_stem().and_then(|s| s.to_str()).unwrap_or(file).to_string();
        let kohya = header.tensors.keys().any(|k| k.starts_with("lora_unet_") || k.starts_with("lora_te"));
        let peft_alphas = PeftAlphas::from_metadata(file, &header.metadata)?;
        let (down_suffix, up_suffix) = if kohya { (".lora_down.weight", ".lora_up.weight") } else { (".lora_A.weight", ".lora_B.weight") };
        let read = |key: &str| -> Result<(Vec<f32>, Vec<usize>), String> {
            let info = &header.tensors[key];
            let raw = &bytes[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
            Ok((safetensors::to_f32(file, key, info, raw).map_err(|e| e.to_string())?, info.shape.clone()))
        };
        let mut layers = BTreeMap::new();
        for key in header.tensors.keys() {
            let Some(module) = key.strip_suffix(down_suffix) else {
                let known = key.ends_with(up_suffix) || key.ends_with(".alpha");
                if !known {
                    return Err(format!("{file}: tensor '{key}' is not a LoRA factor ({} / {} / alpha)", &down_suffix[1..], &up_suffix[1..]));
                }
                continue;
            };
            let up_key = format!("{module}{up_suffix}");
            if !header.tensors.contains_key(&up_key) {
                return Err(format!("{file}: '{key}' has no '{up_key}'"));
            }
            let ((down, down_shape), (up, up_shape)) = (read(key)?, read(&up_key)?);
            let rank = down_shape[0];
            if up_shape.len() < 2 || up_shape[1] != rank {
                return Err(format!("{file}: '{up_key}' {up_shape:?} does not fit '{key}' {down_shape:?} (rank {rank})"));
            }
            // An `.alpha` tensor (kohya), else diffusers' metadata, else peft's default: the
            // rank (scaling 1).
            let alpha = match header.tensors.get(&format!("{module}.alpha")) {
                Some(_) => read(&format!("{module}.alpha"))?.0.first().copied().unwrap_or(rank as f32),
                None => peft_alphas.alpha(module, rank).unwrap_or(rank as f32),
            };
            let target = if kohya { module.to_string() } else { target_of(module) };
            layers.insert(module.to_string(), LoraLayer { target, rank, alpha, down, up, down_shape, up_shape });
        }
        for key in header.tensors.keys().filter(|k| k.ends_with(up_suffix)) {
            if !layers.contains_key(key.trim_end_matches(up_suffix)) {
                return Err(format!("{file}: '{key}' has no {}", &down_suffix[1..]));
            }
        }
        if layers.is_empty() {
            return Err(format!("{file}: no LoRA layers ({} / {} tensors)", &down_suffix[1..], &up_suffix[1..]));
        }
        Ok(Lora { name, sha256: sha256_hex(bytes), layers })
    }

    /// Each layer's target among a model's weights (`names`, `shape_of`), checked: the weight
    /// exists, under transformers 5's or 4's text-encoder names, and its shape fits. Fails
    /// on the first layer that does not, naming it, so a LoRA for another model is refused
    /// before anything changes.
    /// Returns (model weight, the file's module name, layer) per layer.
    pub fn resolve<'a>(&'a self, names: &[&str], shape_of: impl Fn(&str) -> Option<Vec<usize>>) -> Result<Vec<(String, &'a str, &'a LoraLayer)>, String> {
        let kohya_names = kohya_index(names);
        let lpb = layers_per_block(names);
        let mut plan = vec![];
        for (module, l) in &self.layers {
            let found = match kohya_names.get(&sgm_to_diffusers(&l.target, lpb)) {
                Some(name) => Some(name.clone()),
                None => text_encoder_spellings(&l.target).into_iter().find(|t| shape_of(t).is_some()),
            };
            let target = found.ok_or_else(|| {
                let sdxl = module.starts_with("lora_te1_") || module.starts_with("lora_te2_") || module.starts_with("text_encoder_2.");
                let hint = if sdxl { " (an SDXL text-encoder key)" } else { "" };
                format!("LoRA '{}': layer '{module}' names no weight of this model{hint}: is it a LoRA for another architecture?", self.name)
            })?;
            let shape = shape_of(&target).unwrap_or_default();
            let (out, inp): (usize, usize) = (shape.first().copied().unwrap_or(0), shape.iter().skip(1).product());
            let fits = l.up_shape[0] == out && l.down_shape[1..].iter().product::<usize>() == inp && l.up_shape[2..].iter().all(|&d| d == 1);
            if !fits {
                return Err(format!(
                    "LoRA '{}': layer '{module}' ({:?} x {:?}) does not fit '{target}' {shape:?}: is it a LoRA for another architecture?",
                    self.name, l.up_shape, l.down_shape
                ));
            }
            plan.push((target, module.as_str(), l));
        }
        Ok(plan)
    }

    /// Adds `scale` x this LoRA to `store`'s weights (all layers checked first, see `resolve`).
    pub fn merge_into(&self, store: &mut WeightStore, scale: f32) -> Result<(), String> {
        let plan = {
            let names = store.names();
            self.resolve(&names, |n| store.get(n).ok().map(|w| w.shape.clone()))?
        };
        for (target, _, l) in plan {
            let w = store.get(&target).map_err(|e| e.to_string())?;
            let (shape, storage) = (w.shape.clone(), w.storage);
            let mut values = w.to_f32();
            l.add_to(&mut values, scale);
            store.insert(&target, &shape, storage, &values).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl LoraLayer {
    /// `values` (the target weight, [out, in * k * k] row-major) += scale x (alpha / rank) x
    /// up @ down.
    /// Through the CPU backend's packed GEMM (on every core natively): a full-size SD 1.5
    /// LoRA is some 10 GFLOP, which a plain loop takes seconds over.
    pub fn add_to(&self, values: &mut [f32], scale: f32) {
        let (out, rank) = (self.up_shape[0], self.rank);
        let inp = values.len() / out.max(1);
        let s = scale * self.alpha / rank as f32;
        let up: Vec<f32> = self.up.iter().map(|u| s * u).collect();
        par_gemm(out, inp, rank, &up, rank, &BMatrix::KN { data: &self.down, ld: inp }, values, inp);
    }
}

/// A peft target as the model may spell it: transformers 4 nests a text encoder's modules
/// under `text_model.`, transformers 5 does not for CLIPTextModel (it does for the
/// projection model).
fn text_encoder_spellings(target: &str) -> Vec<String> {
    let mut out = vec![target.to_string()];
    for te in ["text_encoder.", "text_encoder_2."] {
        if let Some(rest) = target.strip_prefix(te) {
            match rest.strip_prefix("text_model.") {
                Some(bare) => out.push(format!("{te}{bare}")),
                None => out.push(format!("{te}text_model.{rest}")),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::StorageType;

    fn file(tensors: &[(&str, &[usize], &[f32])]) -> Vec<u8> {
        safetensors::write_f32(tensors)
    }

    #[test]
    fn a_merge_adds_scale_alpha_over_rank_up_down() {
        // W [2, 3] = 0; up [2, 1] = [1, 2], down [1, 3] = [1, 0, -1], alpha 2 (rank 1), scale 0.5:
        // delta = 0.5 * 2 * [[1, 0, -1], [2, 0, -2]].
        let bytes = file(&[("unet.a.to_q.lora_A.weight", &[1, 3], &[1., 0., -1.]), ("unet.a.to_q.lora_B.weight", &[2, 1], &[1., 2.]), ("unet.a.to_q.alpha", &[], &[2.])]);
        let lora = Lora::parse("style.safetensors", &bytes).unwrap();
        assert_eq!((lora.name.as_str(), lora.layers.len()), ("style", 1));
        let mut store = WeightStore::new();
        store.insert_f32("unet.a.to_q.weight", &[2, 3], &[0.0; 6]).unwrap();
        lora.merge_into(&mut store, 0.5).unwrap();
        assert_eq!(store.get("unet.a.to_q.weight").unwrap().to_f32(), vec![1., 0., -1., 2., 0., -2.]);
        // A quantized base stays quantized.
        let mut q = WeightStore::new();
        q.insert("unet.a.to_q.weight", &[2, 32], StorageType::Q8_0, &[0.0; 64]).unwrap();
        let wide = file(&[("unet.a.to_q.lora_A.weight", &[1, 32], &[1.0; 32]), ("unet.a.to_q.lora_B.weight", &[2, 1], &[1., 2.])]);
        Lora::parse("w", &wide).unwrap().merge_into(&mut q, 1.0).unwrap();
        assert_eq!(q.get("unet.a.to_q.weight").unwrap().storage, StorageType::Q8_0);
        // Row 1 is 2 * 1: exact up to the q8_0 step (2 / 127).
        assert!(q.get("unet.a.to_q.weight").unwrap().to_f32()[32..64].iter().all(|v| (v - 2.0).abs() < 2.0 / 127.0));
    }

    #[test]
    fn lora_for_another_model_is_refused_before_anything_changes() {
        let bytes = file(&[
            ("unet.a.lora_A.weight", &[1, 3], &[1., 1., 1.]),
            ("unet.a.lora_B.weight", &[2, 1], &[1., 1.]),
            ("unet.b.lora_A.weight", &[1, 5], &[1.; 5]),
            ("unet.b.lora_B.weight", &[2, 1], &[1., 1.]),
        ]);
        let lora = Lora::parse("x.safetensors", &bytes).unwrap();
        let mut store = WeightStore::new();
        store.insert_f32("unet.a.weight", &[2, 3], &[0.0; 6]).unwrap();
        store.insert_f32("unet.b.weight", &[2, 4], &[0.0; 8]).unwrap();
        let err = lora.merge_into(&mut store, 1.0).unwrap_err();
        assert!(err.contains("'unet.b'") && err.contains("another architecture"), "{err}");
        assert_eq!(store.get("unet.a.weight").unwrap().to_f32(), vec![0.0; 6], "nothing applied");
        store.insert_f32("unet.b.weight", &[2, 5], &[0.0; 10]).unwrap();
        let mut missing = WeightStore::new();
        missing.insert_f32("unet.a.weight", &[2, 3], &[0.0; 6]).unwrap();
        assert!(lora.merge_into(&mut missing, 1.0).unwrap_err().contains("names no weight"));
        let sdxl = file(&[
            ("lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", &[1, 3], &[1.; 3]),
            ("lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", &[2, 1], &[1.; 2]),
        ]);
        let err = Lora::parse("k.safetensors", &sdxl).unwrap().merge_into(&mut missing, 1.0).unwrap_err();
        assert!(err.contains("SDXL"), "{err}");
        let stray = file(&[("unet.a.lora_A.weight", &[1, 3], &[1.; 3]), ("unet.a.lora_B.weight", &[2, 1], &[1., 1.]), ("unet.a.other", &[1], &[0.])]);
        assert!(Lora::parse("s.safetensors", &stray).unwrap_err().contains("'unet.a.other' is not a LoRA factor"));
    }
}
