//! Native converter: a diffusers repository folder, a single diffusers component folder, or
//! a taming-transformers checkpoint (`.ckpt`, read natively only; or `.safetensors` with
//! taming names) into a manifest + shards. Linear and conv weights whose rows are whole
//! 32-value blocks take the chosen quantization; norms, biases, embeddings and other small
//! tensors keep their source precision (f16 stays f16, else f32).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::manifest::{sha256_hex, FileEntry, Manifest, ShardWriter, FORMAT_VERSION};
use super::safetensors::{self, SafeDType};
use crate::error::WeightsError;
use crate::ops::quant::{self, BLOCK};
use crate::ops::StorageType;

/// What to produce.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// f32, f16, q8_0 or q4_0 for linear/conv weights (f16: every float tensor).
    pub quant: StorageType,
    pub shard_bytes: u64,
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct ConvertSummary {
    pub family: String,
    pub tensors: usize,
    pub bytes_by_storage: BTreeMap<String, u64>,
    pub shards: usize,
    pub source_bytes: u64,
    pub output_bytes: u64,
}

impl std::fmt::Display for ConvertSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} model: {} tensors in {} shards", self.family, self.tensors, self.shards)?;
        for (k, v) in &self.bytes_by_storage {
            writeln!(f, "  {k:<5} {:>10.2} MB", *v as f64 / 1e6)?;
        }
        write!(
            f,
            "  {:.2} MB from {:.2} MB of source weights ({:.1}% of the source)",
            self.output_bytes as f64 / 1e6,
            self.source_bytes as f64 / 1e6,
            100.0 * self.output_bytes as f64 / self.source_bytes.max(1) as f64
        )
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> WeightsError {
    WeightsError::Io { path: path.display().to_string(), message: e.to_string() }
}

fn refuse(source: &Path, message: String) -> WeightsError {
    WeightsError::Convert { source_path: source.display().to_string(), message }
}

/// A float tensor read from the source.
struct SourceTensor {
    name: String,
    shape: Vec<usize>,
    values: Vec<f32>,
    was_f16: bool,
}

/// Whether a tensor is a linear or conv weight the kernels can read quantized.
pub fn quantizable(name: &str, shape: &[usize]) -> bool {
    let row: usize = shape.iter().skip(1).product();
    shape.len() >= 2
        && name.ends_with(".weight")
        && row % BLOCK == 0
        && !name.contains("embedding")
        && !name.contains("embed_tokens")
        && !name.contains("norm")
}

fn storage_for(t: &SourceTensor, quant: StorageType) -> StorageType {
    match quant {
        StorageType::F16 => StorageType::F16,
        q if q.is_quantized() && quantizable(&t.name, &t.shape) => q,
        _ if t.was_f16 => StorageType::F16,
        _ => StorageType::F32,
    }
}

fn read_safetensors(path: &Path, prefix: &str) -> Result<Vec<SourceTensor>, WeightsError> {
    let bytes = fs::read(path).map_err(|e| io(path, e))?;
    let file = path.display().to_string();
    let header = safetensors::parse(&file, &bytes)?;
    header
        .tensors
        .iter()
        .map(|(name, info)| {
            let raw = &bytes[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
            Ok(SourceTensor {
                name: format!("{prefix}{name}"),
                shape: info.shape.clone(),
                values: safetensors::to_f32(&file, name, info, raw)?,
                was_f16: matches!(info.dtype, SafeDType::F16 | SafeDType::BF16),
            })
        })
        .collect()
}

/// The weights file of a diffusers component folder: full precision first, else fp16.
fn component_weights(dir: &Path) -> Option<PathBuf> {
    ["diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

fn read_json(path: &Path) -> Result<serde_json::Value, WeightsError> {
    let text = fs::read(path).map_err(|e| io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| io(path, format!("not JSON: {e}")))
}

/// Config-vs-weights checks that catch a wrong folder early, naming the tensor.
fn check_shapes(source: &Path, component: &str, config: &serde_json::Value, tensors: &[SourceTensor]) -> Result<(), WeightsError> {
    // transformers writes CLIP keys with or without the `text_model.` prefix.
    let find = |n: &str| {
        let short = n.strip_prefix("text_model.").unwrap_or(n);
        tensors.iter().find(|t| t.name == format!("{component}.{n}") || t.name == format!("{component}.{short}"))
    };
    let want = |key: &str| config.get(key).and_then(|v| v.as_u64()).map(|v| v as usize);
    let checks: Vec<(&str, usize, Option<usize>)> = match config.get("_class_name").and_then(|v| v.as_str()).unwrap_or("") {
        "UNet2DConditionModel" | "UNet2DModel" => vec![("conv_in.weight", 1, want("in_channels")), ("conv_out.weight", 0, want("out_channels"))],
        "AutoencoderKL" | "VQModel" => vec![("encoder.conv_in.weight", 1, want("in_channels")), ("decoder.conv_out.weight", 0, want("out_channels"))],
        _ => vec![("text_model.embeddings.token_embedding.weight", 0, want("vocab_size")), ("text_model.embeddings.token_embedding.weight", 1, want("hidden_size"))],
    };
    for (name, axis, expected) in checks {
        if let (Some(t), Some(expected)) = (find(name), expected) {
            if t.shape.get(axis) != Some(&expected) {
                return Err(refuse(source, format!("{component}.{name} has shape {:?} but config.json says {expected} on axis {axis}", t.shape)));
            }
        }
    }
    Ok(())
}

/// Family name of a diffusers pipeline class.
fn family_of(class: &str) -> Option<&'static str> {
    Some(match class {
        c if c.starts_with("StableDiffusionXL") => "stable-diffusion-xl",
        c if c.starts_with("StableDiffusion") => "stable-diffusion",
        c if c.starts_with("Amused") => "amused",
        "DDPMPipeline" | "DDIMPipeline" => "ddpm",
        _ => return None,
    })
}

struct Collected {
    family: String,
    name: String,
    configs: BTreeMap<String, serde_json::Value>,
    tensors: Vec<SourceTensor>,
    files: Vec<(String, Vec<u8>)>,
    source_bytes: u64,
}

fn collect_diffusers_repo(source: &Path) -> Result<Collected, WeightsError> {
    let index = read_json(&source.join("model_index.json"))?;
    let class = index.get("_class_name").and_then(|v| v.as_str()).unwrap_or("");
    let family = family_of(class).ok_or_else(|| refuse(source, format!("unknown architecture '{class}' (supported: Stable Diffusion 1.x/2.x/Turbo/XL, aMUSEd, DDPM)")))?;
    let mut c = Collected { family: family.into(), name: dir_name(source), configs: BTreeMap::new(), tensors: vec![], files: vec![], source_bytes: 0 };
    c.configs.insert("model_index".into(), index.clone());
    for (component, spec) in index.as_object().into_iter().flatten() {
        let Some(spec) = spec.as_array().filter(|a| a.len() == 2 && !a[0].is_null()) else { continue };
        let dir = source.join(component);
        if !dir.is_dir() {
            return Err(refuse(source, format!("model_index.json lists component '{component}' ({}) but the folder is missing", spec[1])));
        }
        if let Ok(cfg) = read_json(&dir.join("config.json")).or_else(|_| read_json(&dir.join("scheduler_config.json"))) {
            c.configs.insert(component.clone(), cfg);
        }
        if component.starts_with("tokenizer") {
            for f in ["vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
                if let Ok(bytes) = fs::read(dir.join(f)) {
                    c.files.push((format!("{component}/{f}"), bytes));
                }
            }
            continue;
        }
        if let Some(weights) = component_weights(&dir) {
            c.source_bytes += fs::metadata(&weights).map_err(|e| io(&weights, e))?.len();
            let tensors = read_safetensors(&weights, &format!("{component}."))?;
            if let Some(cfg) = c.configs.get(component) {
                check_shapes(source, component, cfg, &tensors)?;
            }
            c.tensors.extend(tensors);
        } else if !component.starts_with("scheduler") && !component.contains("feature_extractor") {
            return Err(refuse(source, format!("component '{component}' has no safetensors weights")));
        }
    }
    Ok(c)
}

fn collect_component(source: &Path) -> Result<Collected, WeightsError> {
    let cfg = read_json(&source.join("config.json"))?;
    let class = cfg.get("_class_name").and_then(|v| v.as_str()).unwrap_or("unknown").to_string();
    let weights = component_weights(source).ok_or_else(|| refuse(source, "no diffusion_pytorch_model.safetensors or model.safetensors".into()))?;
    let component = if class == "VQModel" { "vqvae" } else { "model" };
    let tensors = read_safetensors(&weights, &format!("{component}."))?;
    check_shapes(source, component, &cfg, &tensors)?;
    let source_bytes = fs::metadata(&weights).map_err(|e| io(&weights, e))?.len();
    Ok(Collected {
        family: if class == "VQModel" { "vqmodel".into() } else { format!("component:{class}") },
        name: dir_name(source),
        configs: BTreeMap::from([(component.to_string(), cfg)]),
        tensors,
        files: vec![],
        source_bytes,
    })
}

fn collect_taming(source: &Path) -> Result<Collected, WeightsError> {
    let is_ckpt = source.extension().is_some_and(|e| e == "ckpt" || e == "pth");
    let mut tensors = if is_ckpt {
        // Lightning checkpoints keep the weights under "state_dict".
        let read = candle_core::pickle::read_all_with_key(source, Some("state_dict")).or_else(|_| candle_core::pickle::read_all(source));
        read.map_err(|e| refuse(source, format!("not a readable PyTorch checkpoint: {e}")))?
            .into_iter()
            .filter(|(n, _)| !n.starts_with("loss."))
            .map(|(name, t)| {
                let was_f16 = t.dtype() == candle_core::DType::F16;
                let shape = t.dims().to_vec();
                let values = t.to_dtype(candle_core::DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>());
                values.map(|values| SourceTensor { name, shape, values, was_f16 }).map_err(|e| refuse(source, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        read_safetensors(source, "")?
    };
    if !tensors.iter().any(|t| t.name.starts_with("decoder.")) || !tensors.iter().any(|t| t.name.starts_with("quantize.")) {
        return Err(refuse(source, "no taming VQGAN weights (decoder.*, quantize.*) found".into()));
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut configs = BTreeMap::new();
    if let Some(yaml) = source.parent().map(|p| p.join("config.yaml")).filter(|p| p.is_file()) {
        let text = fs::read_to_string(&yaml).map_err(|e| io(&yaml, e))?;
        configs.insert("taming".into(), serde_json::json!({ "yaml": text }));
    }
    let source_bytes = fs::metadata(source).map_err(|e| io(source, e))?.len();
    Ok(Collected { family: "vqgan-taming".into(), name: dir_name(source), configs, tensors, files: vec![], source_bytes })
}

fn dir_name(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
}

/// Converts `source` into `out` (created if needed): manifest.json, shard-*.bin, files.
pub fn convert(source: &Path, out: &Path, options: &ConvertOptions) -> Result<ConvertSummary, WeightsError> {
    let collected = if source.join("model_index.json").is_file() {
        collect_diffusers_repo(source)?
    } else if source.join("config.json").is_file() {
        collect_component(source)?
    } else if source.is_file() {
        collect_taming(source)?
    } else {
        return Err(refuse(source, "not a diffusers folder (model_index.json or config.json), a .ckpt or a .safetensors file".into()));
    };
    fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let mut summary = ConvertSummary { family: collected.family.clone(), source_bytes: collected.source_bytes, ..Default::default() };
    let mut writer = ShardWriter::new(options.shard_bytes);
    for t in &collected.tensors {
        let storage = storage_for(t, options.quant);
        let bytes = quant::quantize(storage, &t.values);
        *summary.bytes_by_storage.entry(storage.name().to_string()).or_default() += bytes.len() as u64;
        writer.push(&t.name, &t.shape, storage, &bytes);
    }
    let (tensors, shards) = writer.finish();
    for (entry, bytes) in &shards {
        let path = out.join(&entry.file);
        fs::write(&path, bytes).map_err(|e| io(&path, e))?;
    }
    let mut files = Vec::new();
    for (rel, bytes) in &collected.files {
        let path = out.join(rel);
        fs::create_dir_all(path.parent().unwrap_or(out)).map_err(|e| io(&path, e))?;
        fs::write(&path, bytes).map_err(|e| io(&path, e))?;
        files.push(FileEntry { path: rel.clone(), size: bytes.len() as u64, sha256: sha256_hex(bytes) });
    }
    let mut manifest = Manifest {
        format_version: FORMAT_VERSION,
        family: collected.family,
        name: collected.name,
        configs: collected.configs,
        tensors,
        shards: shards.iter().map(|s| s.0.clone()).collect(),
        files,
        content_sha256: String::new(),
    };
    manifest.content_sha256 = manifest.compute_hash();
    let path = out.join("manifest.json");
    fs::write(&path, serde_json::to_vec_pretty(&manifest).expect("manifest JSON")).map_err(|e| io(&path, e))?;
    summary.tensors = manifest.tensors.len();
    summary.shards = manifest.shards.len();
    summary.output_bytes = manifest.total_bytes();
    Ok(summary)
}
