//! What a conversion reads from a diffusers repository and how each tensor is stored: one set
//! of rules for `easel convert` (files on disk) and Hub mode (the same repository read over
//! HTTP in the browser), so both produce the same manifest and shards.

use serde::Serialize;
use serde_json::Value;

use crate::ops::quant::BLOCK;
use crate::ops::StorageType;

/// A component's weights files in order of preference: full precision first, so that a
/// repository holding both gives the converter's reference result.
pub const WEIGHT_FILES: [&str; 4] = ["diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors"];

/// Tokenizer files carried into the manifest (each one when present).
pub const TOKENIZER_FILES: [&str; 5] = ["vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

/// The optional preview decoder (a diffusers `AutoencoderTiny`) a Stable Diffusion model may
/// carry next to its model_index.json components.
pub const TAESD: &str = "taesd";

/// Whether `component`'s tensor `name` goes into the model: the preview decoder keeps only
/// `decoder.*` (previews never encode; its encoder would double the download).
pub fn converts_tensor(component: &str, name: &str) -> bool {
    component != TAESD || name.starts_with("decoder.")
}

/// Whether a tensor is a linear or conv weight the kernels can read quantized. Norm
/// weights are 1-D; a linear inside a norm module (aMUSEd's AdaLayerNormContinuous
/// `norm1.linear`, a tenth of its transformer) is an ordinary linear.
pub fn quantizable(name: &str, shape: &[usize]) -> bool {
    let row: usize = shape.iter().skip(1).product();
    shape.len() >= 2 && name.ends_with(".weight") && row.is_multiple_of(BLOCK) && !name.contains("embedding") && !name.contains("embed_tokens")
}

/// How a tensor is stored for `quant`: linear/conv weights take a block format; the rest
/// keep their source precision (half stays f16, else f32); `f16` makes every tensor f16.
pub fn storage_for(name: &str, shape: &[usize], source_half: bool, quant: StorageType) -> StorageType {
    match quant {
        StorageType::F16 => StorageType::F16,
        q if q.is_quantized() && quantizable(name, shape) => q,
        _ if source_half => StorageType::F16,
        _ => StorageType::F32,
    }
}

/// Family name of a diffusers pipeline class.
pub fn family_of(class: &str) -> Option<&'static str> {
    Some(match class {
        c if c.starts_with("StableDiffusionXL") => "stable-diffusion-xl",
        c if c.starts_with("StableDiffusion") => "stable-diffusion",
        c if c.starts_with("Amused") => "amused",
        "DDPMPipeline" | "DDIMPipeline" => "ddpm",
        _ => return None,
    })
}

/// The family of a repository's model_index.json, or a sentence saying why it is refused.
pub fn repo_family(index: &Value) -> Result<&'static str, String> {
    let class = index.get("_class_name").and_then(|v| v.as_str()).unwrap_or("");
    family_of(class).ok_or_else(|| format!("unknown architecture '{class}' (supported: Stable Diffusion 1.x/2.x/Turbo/XL, aMUSEd, DDPM)"))
}

/// What to read for one component of a repository.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentPlan {
    pub name: String,
    /// The class model_index.json gives it (for messages).
    pub class: String,
    /// Config files; the first one present is the component's config.
    pub configs: Vec<&'static str>,
    /// Extra files copied into the model when present (the tokenizer's).
    pub files: Vec<&'static str>,
    /// Weights files; the first one present is converted.
    pub weights: Vec<&'static str>,
    /// Whether a missing weights file is an error.
    pub weights_required: bool,
}

/// The components of model_index.json in conversion order (by name: the order fixes the
/// shard layout, so both converters must agree). `prefer_fp16` tries `*.fp16.*` first.
pub fn repo_components(index: &Value, prefer_fp16: bool) -> Vec<ComponentPlan> {
    let mut plans: Vec<ComponentPlan> = index
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, spec)| {
            let spec = spec.as_array().filter(|a| a.len() == 2 && !a[0].is_null())?;
            let class = spec[1].as_str().unwrap_or("").to_string();
            let mut plan = ComponentPlan { name: name.clone(), class, configs: vec![], files: vec![], weights: vec![], weights_required: false };
            if name.starts_with("tokenizer") {
                plan.files = TOKENIZER_FILES.to_vec();
            } else if name.starts_with("scheduler") {
                plan.configs = vec!["scheduler_config.json"];
            } else if !name.contains("feature_extractor") {
                plan.configs = vec!["config.json"];
                plan.weights = WEIGHT_FILES.to_vec();
                if prefer_fp16 {
                    plan.weights.rotate_left(2);
                }
                plan.weights_required = true;
            }
            Some(plan)
        })
        .collect();
    plans.sort_by(|a, b| a.name.cmp(&b.name));
    plans
}

/// Config-vs-weights checks that catch a wrong folder early, naming the tensor. `shape_of`
/// looks a tensor up by its name inside the component.
pub fn check_shapes(component: &str, config: &Value, shape_of: impl Fn(&str) -> Option<Vec<usize>>) -> Result<(), String> {
    // transformers writes CLIP keys with or without the `text_model.` prefix.
    let find = |n: &str| shape_of(n).or_else(|| shape_of(n.strip_prefix("text_model.").unwrap_or(n)));
    let want = |key: &str| config.get(key).and_then(|v| v.as_u64()).map(|v| v as usize);
    let checks: Vec<(&str, usize, Option<usize>)> = match config.get("_class_name").and_then(|v| v.as_str()).unwrap_or("") {
        "UNet2DConditionModel" | "UNet2DModel" => vec![("conv_in.weight", 1, want("in_channels")), ("conv_out.weight", 0, want("out_channels"))],
        "AutoencoderKL" | "VQModel" => vec![("encoder.conv_in.weight", 1, want("in_channels")), ("decoder.conv_out.weight", 0, want("out_channels"))],
        "AutoencoderTiny" => vec![("decoder.layers.0.weight", 1, want("latent_channels")), ("encoder.layers.0.weight", 1, want("in_channels"))],
        _ => vec![("text_model.embeddings.token_embedding.weight", 0, want("vocab_size")), ("text_model.embeddings.token_embedding.weight", 1, want("hidden_size"))],
    };
    for (name, axis, expected) in checks {
        if let (Some(shape), Some(expected)) = (find(name), expected) {
            if shape.get(axis) != Some(&expected) {
                return Err(format!("{component}.{name} has shape {shape:?} but config.json says {expected} on axis {axis}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_come_sorted_with_their_files() {
        let index = serde_json::json!({
            "_class_name": "StableDiffusionPipeline",
            "vae": ["diffusers", "AutoencoderKL"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", "PNDMScheduler"],
            "safety_checker": [null, null],
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "requires_safety_checker": false,
        });
        let plans = repo_components(&index, false);
        let names: Vec<_> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["feature_extractor", "scheduler", "tokenizer", "unet", "vae"]);
        assert_eq!(plans[1].configs, ["scheduler_config.json"]);
        assert!(plans[1].weights.is_empty() && !plans[1].weights_required);
        assert_eq!(plans[2].files.len(), 5);
        assert_eq!(plans[3].weights[0], "diffusion_pytorch_model.safetensors");
        assert!(plans[3].weights_required && plans[0].weights.is_empty());
        assert_eq!(repo_components(&index, true)[3].weights[0], "diffusion_pytorch_model.fp16.safetensors");
        assert_eq!(repo_family(&index), Ok("stable-diffusion"));
        assert!(repo_family(&serde_json::json!({"_class_name": "FluxPipeline"})).unwrap_err().contains("'FluxPipeline'"));
    }

    #[test]
    fn only_whole_block_linear_and_conv_weights_are_quantized() {
        let q = StorageType::Q8_0;
        assert_eq!(storage_for("unet.conv.weight", &[32, 64, 3, 3], false, q), q);
        assert_eq!(storage_for("unet.conv_in.weight", &[32, 4, 3, 3], false, q), StorageType::F32);
        assert_eq!(storage_for("unet.conv_in.bias", &[32], true, q), StorageType::F16);
        assert_eq!(storage_for("unet.norm.weight", &[32], false, q), StorageType::F32);
        // A linear inside a norm module (aMUSEd's AdaLayerNormContinuous) is a linear.
        assert_eq!(storage_for("transformer.transformer_layers.0.norm1.linear.weight", &[64, 32], false, q), q);
        assert_eq!(storage_for("te.token_embedding.weight", &[100, 64], false, q), StorageType::F32);
        assert_eq!(storage_for("unet.proj.weight", &[8, 33], false, q), StorageType::F32);
        assert_eq!(storage_for("unet.proj.weight", &[8, 64], false, StorageType::F16), StorageType::F16);
    }

    #[test]
    fn shape_checks_name_the_tensor() {
        let cfg = serde_json::json!({"_class_name": "UNet2DConditionModel", "in_channels": 4, "out_channels": 4});
        let ok = |n: &str| (n == "conv_in.weight").then(|| vec![32, 4, 3, 3]);
        assert_eq!(check_shapes("unet", &cfg, ok), Ok(()));
        let bad = |n: &str| (n == "conv_in.weight").then(|| vec![32, 9, 3, 3]);
        let err = check_shapes("unet", &cfg, bad).unwrap_err();
        assert!(err.contains("unet.conv_in.weight") && err.contains("config.json says 4 on axis 1"), "{err}");
        let tiny = serde_json::json!({"_class_name": "AutoencoderTiny", "latent_channels": 4});
        let err = check_shapes("taesd", &tiny, |n| (n == "decoder.layers.0.weight").then(|| vec![64, 16, 3, 3])).unwrap_err();
        assert!(err.contains("taesd.decoder.layers.0.weight"), "{err}");
    }

    #[test]
    fn the_preview_decoder_keeps_only_its_decoder() {
        assert!(converts_tensor("taesd", "decoder.layers.0.weight"));
        assert!(!converts_tensor("taesd", "encoder.layers.0.weight"));
        // A model whose own VAE is an AutoencoderTiny keeps its encoder (img2img needs it).
        assert!(converts_tensor("vae", "encoder.layers.0.weight"));
    }
}
