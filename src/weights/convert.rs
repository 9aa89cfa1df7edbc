//! Native converter: a diffusers repository folder, a single diffusers component folder, or
//! a taming-transformers checkpoint (`.ckpt`, read natively only; or `.safetensors` with
//! taming names) into a manifest + shards. The rules (which files, which tensors get the
//! chosen quantization) are `rules.rs`; diffusers weights go through `RepoConverter`, the
//! same code Hub mode runs in the browser, read here in ranges from disk.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

pub use super::builder::ConvertSummary;
use super::builder::{Finished, ModelBuilder, ModelInfo};
use super::manifest::ShardEntry;
use super::repo::RepoConverter;
pub use super::rules::quantizable;
use super::rules::{repo_components, repo_family, TAESD, WEIGHT_FILES};
use super::safetensors::{self, SafeDType};
use crate::error::WeightsError;
use crate::ops::StorageType;

/// What to produce.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// f32, f16, q8_0 or q4_0 for linear/conv weights (f16: every float tensor).
    pub quant: StorageType,
    pub shard_bytes: u64,
}

/// Largest read of weights data at a time (the browser's Range requests use the same).
const CHUNK_BYTES: u64 = 32 << 20;

fn io(path: &Path, e: impl std::fmt::Display) -> WeightsError {
    WeightsError::Io { path: path.display().to_string(), message: e.to_string() }
}

fn refuse(source: &Path, message: String) -> WeightsError {
    WeightsError::Convert { source_path: source.display().to_string(), message }
}

fn read_json(path: &Path) -> Result<serde_json::Value, WeightsError> {
    let text = fs::read(path).map_err(|e| io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| io(path, format!("not JSON: {e}")))
}

/// Writes shards as they fill, so a conversion never holds the whole model.
struct ShardSink<'a> {
    out: &'a Path,
}

impl ShardSink<'_> {
    fn write(&self, shards: Vec<(ShardEntry, Vec<u8>)>) -> Result<(), WeightsError> {
        for (entry, bytes) in shards {
            let path = self.out.join(&entry.file);
            fs::write(&path, bytes).map_err(|e| io(&path, e))?;
        }
        Ok(())
    }

    fn file(&self, rel: &str, bytes: &[u8]) -> Result<(), WeightsError> {
        let path = self.out.join(rel);
        fs::create_dir_all(path.parent().unwrap_or(self.out)).map_err(|e| io(&path, e))?;
        fs::write(&path, bytes).map_err(|e| io(&path, e))
    }
}

/// Plans one safetensors file from its header and feeds its planned ranges from disk.
fn convert_weights(conv: &mut RepoConverter, sink: &ShardSink, component: &str, path: &Path) -> Result<(), WeightsError> {
    let name = path.display().to_string();
    let mut f = File::open(path).map_err(|e| io(path, e))?;
    let size = f.metadata().map_err(|e| io(path, e))?.len();
    let mut first8 = [0u8; 8];
    f.read_exact(&mut first8).map_err(|e| io(path, e))?;
    let n = safetensors::header_len(&name, &first8, size)?;
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|e| io(path, e))?;
    let header = safetensors::parse_header(&name, &header, size)?;
    let mut buf = Vec::new();
    for (start, end) in conv.add_weights(component, &name, &header, size, CHUNK_BYTES)? {
        buf.resize((end - start) as usize, 0);
        f.seek(SeekFrom::Start(start)).and_then(|_| f.read_exact(&mut buf)).map_err(|e| io(path, e))?;
        conv.feed(&buf)?;
        sink.write(conv.take_ready())?;
    }
    Ok(())
}

/// Adds an AutoencoderTiny folder as the model's `taesd` preview decoder (after the
/// repository's own components, so a model without one converts as before).
fn add_taesd(conv: &mut RepoConverter, sink: &ShardSink, dir: &Path) -> Result<(), WeightsError> {
    let cfg = read_json(&dir.join("config.json"))?;
    let class = cfg.get("_class_name").and_then(|v| v.as_str()).unwrap_or("unknown");
    if class != "AutoencoderTiny" {
        return Err(refuse(dir, format!("--taesd wants an AutoencoderTiny folder; its config.json says '{class}'")));
    }
    let weights = WEIGHT_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file());
    let weights = weights.ok_or_else(|| refuse(dir, "no diffusion_pytorch_model.safetensors".into()))?;
    conv.add_config(TAESD, cfg);
    convert_weights(conv, sink, TAESD, &weights)
}

fn convert_repo(source: &Path, taesd: Option<&Path>, sink: &ShardSink, options: &ConvertOptions) -> Result<Finished, WeightsError> {
    let index = read_json(&source.join("model_index.json"))?;
    let family = repo_family(&index).map_err(|m| refuse(source, m))?;
    let mut conv = RepoConverter::new(&source.display().to_string(), family, &dir_name(source), options.quant, options.shard_bytes);
    conv.add_config("model_index", index.clone());
    for plan in repo_components(&index, false) {
        let dir = source.join(&plan.name);
        if !dir.is_dir() {
            return Err(refuse(source, format!("model_index.json lists component '{}' ({}) but the folder is missing", plan.name, plan.class)));
        }
        if let Some(cfg) = plan.configs.iter().map(|f| dir.join(f)).find(|p| p.is_file()) {
            conv.add_config(&plan.name, read_json(&cfg)?);
        }
        for f in &plan.files {
            if let Ok(bytes) = fs::read(dir.join(f)) {
                let rel = format!("{}/{f}", plan.name);
                sink.file(&rel, &bytes)?;
                conv.add_file(&rel, &bytes);
            }
        }
        match plan.weights.iter().map(|f| dir.join(f)).find(|p| p.is_file()) {
            Some(weights) => convert_weights(&mut conv, sink, &plan.name, &weights)?,
            None if plan.weights_required => return Err(refuse(source, format!("component '{}' has no safetensors weights", plan.name))),
            None => {}
        }
    }
    if let Some(dir) = taesd {
        add_taesd(&mut conv, sink, dir)?;
    }
    conv.finish()
}

fn convert_component(source: &Path, sink: &ShardSink, options: &ConvertOptions) -> Result<Finished, WeightsError> {
    let cfg = read_json(&source.join("config.json"))?;
    let class = cfg.get("_class_name").and_then(|v| v.as_str()).unwrap_or("unknown").to_string();
    let weights = WEIGHT_FILES.iter().map(|f| source.join(f)).find(|p| p.is_file());
    let weights = weights.ok_or_else(|| refuse(source, "no diffusion_pytorch_model.safetensors or model.safetensors".into()))?;
    let (component, family) = match class.as_str() {
        "VQModel" => ("vqvae", "vqmodel".to_string()),
        "DCGANGenerator" => ("generator", "dcgan".to_string()),
        _ => ("model", format!("component:{class}")),
    };
    let mut conv = RepoConverter::new(&source.display().to_string(), &family, &dir_name(source), options.quant, options.shard_bytes);
    conv.add_config(component, cfg);
    convert_weights(&mut conv, sink, component, &weights)?;
    conv.finish()
}

/// A float tensor of a taming checkpoint.
struct SourceTensor {
    name: String,
    shape: Vec<usize>,
    values: Vec<f32>,
    was_f16: bool,
}

fn read_taming(source: &Path) -> Result<Vec<SourceTensor>, WeightsError> {
    if source.extension().is_some_and(|e| e == "ckpt" || e == "pth") {
        // Lightning checkpoints keep the weights under "state_dict".
        let read = candle_core::pickle::read_all_with_key(source, Some("state_dict")).or_else(|_| candle_core::pickle::read_all(source));
        return read
            .map_err(|e| refuse(source, format!("not a readable PyTorch checkpoint: {e}")))?
            .into_iter()
            .filter(|(n, _)| !n.starts_with("loss."))
            .map(|(name, t)| {
                let was_f16 = t.dtype() == candle_core::DType::F16;
                let shape = t.dims().to_vec();
                let values = t.to_dtype(candle_core::DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>());
                values.map(|values| SourceTensor { name, shape, values, was_f16 }).map_err(|e| refuse(source, e.to_string()))
            })
            .collect();
    }
    let bytes = fs::read(source).map_err(|e| io(source, e))?;
    let file = source.display().to_string();
    let header = safetensors::parse(&file, &bytes)?;
    header
        .tensors
        .iter()
        .map(|(name, info)| {
            let raw = &bytes[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
            let values = safetensors::to_f32(&file, name, info, raw)?;
            Ok(SourceTensor { name: name.clone(), shape: info.shape.clone(), values, was_f16: matches!(info.dtype, SafeDType::F16 | SafeDType::BF16) })
        })
        .collect()
}

fn convert_taming(source: &Path, options: &ConvertOptions) -> Result<Finished, WeightsError> {
    let mut tensors = read_taming(source)?;
    if !tensors.iter().any(|t| t.name.starts_with("decoder.")) || !tensors.iter().any(|t| t.name.starts_with("quantize.")) {
        return Err(refuse(source, "no taming VQGAN weights (decoder.*, quantize.*) found".into()));
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut configs = BTreeMap::new();
    if let Some(yaml) = source.parent().map(|p| p.join("config.yaml")).filter(|p| p.is_file()) {
        let text = fs::read_to_string(&yaml).map_err(|e| io(&yaml, e))?;
        configs.insert("taming".into(), serde_json::json!({ "yaml": text }));
    }
    let mut builder = ModelBuilder::new(options.quant, options.shard_bytes);
    for t in &tensors {
        builder.push_f32(&t.name, &t.shape, &t.values, t.was_f16);
    }
    let source_bytes = fs::metadata(source).map_err(|e| io(source, e))?.len();
    Ok(builder.finish(ModelInfo { family: "vqgan-taming".into(), name: dir_name(source), configs, files: vec![], source_bytes }))
}

/// The model's name: its folder's, or a checkpoint file's stem unless that is a generic
/// one (taming's `model.ckpt`, `last.ckpt`), which names nothing: then its folder's.
fn dir_name(p: &Path) -> String {
    let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
    match stem.as_deref() {
        Some("model" | "last") if p.is_file() => p.parent().and_then(|d| d.file_name()).map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into()),
        Some(s) => s.to_string(),
        None => "model".into(),
    }
}

/// Converts `source` into `out` (created if needed): manifest.json, shard-*.bin, files.
pub fn convert(source: &Path, out: &Path, options: &ConvertOptions) -> Result<ConvertSummary, WeightsError> {
    convert_with_taesd(source, None, out, options)
}

/// `convert`, adding a TAESD folder (config.json + weights of a diffusers AutoencoderTiny)
/// as the preview decoder of a diffusers repository.
pub fn convert_with_taesd(source: &Path, taesd: Option<&Path>, out: &Path, options: &ConvertOptions) -> Result<ConvertSummary, WeightsError> {
    let is_repo = source.join("model_index.json").is_file();
    if taesd.is_some() && !is_repo {
        return Err(refuse(source, "--taesd goes with a diffusers repository (model_index.json)".into()));
    }
    let is_component = !is_repo && source.join("config.json").is_file();
    if !is_repo && !is_component && !source.is_file() {
        return Err(refuse(source, "not a diffusers folder (model_index.json or config.json), a .ckpt or a .safetensors file".into()));
    }
    fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let sink = ShardSink { out };
    let done = if is_repo {
        convert_repo(source, taesd, &sink, options)?
    } else if is_component {
        convert_component(source, &sink, options)?
    } else {
        convert_taming(source, options)?
    };
    sink.write(done.shards)?;
    let path = out.join("manifest.json");
    fs::write(&path, done.manifest.to_json_pretty()).map_err(|e| io(&path, e))?;
    Ok(done.summary)
}
