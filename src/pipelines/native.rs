//! Native file plumbing for the CLI and the tests: a model from a converted folder or a
//! diffusers folder, exact float inputs from safetensors files, PNG in and out.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use super::request::FloatImage;
use super::{PipelineError, Rgba};
use crate::ops::{StorageType, WeightStore};
use crate::weights::convert::{convert, ConvertOptions};
use crate::weights::folder::load_folder;
use crate::weights::safetensors;

/// A model's configs, tokenizer files and weights, on the host.
pub struct ModelFiles {
    pub name: String,
    pub family: String,
    pub configs: BTreeMap<String, serde_json::Value>,
    pub files: HashMap<String, Vec<u8>>,
    pub weights: WeightStore,
}

fn io(path: &Path, e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Model(format!("{}: {e}", path.display()))
}

/// Loads a converted folder (manifest.json + shards, verified), or converts a diffusers
/// folder on the fly at `quant` (in a temporary folder, removed afterwards).
pub fn load_model_dir(path: &Path, quant: StorageType) -> Result<ModelFiles, PipelineError> {
    if path.join("manifest.json").is_file() {
        return load_converted(path);
    }
    if !path.join("model_index.json").is_file() {
        return Err(PipelineError::Model(format!("{} is neither a converted model (manifest.json) nor a diffusers repository (model_index.json)", path.display())));
    }
    // Unique per call: tests convert in parallel threads of one process.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = std::env::temp_dir().join(format!("easel-convert-{}-{call}", std::process::id()));
    let result = convert(path, &tmp, &ConvertOptions { quant, shard_bytes: 32 << 20 }).map_err(|e| PipelineError::Model(e.to_string())).and_then(|_| load_converted(&tmp));
    let _ = fs::remove_dir_all(&tmp);
    result
}

fn load_converted(dir: &Path) -> Result<ModelFiles, PipelineError> {
    let (manifest, weights) = load_folder(dir).map_err(|e| PipelineError::Model(e.to_string()))?;
    let mut files = HashMap::new();
    for f in &manifest.files {
        let p = dir.join(&f.path);
        let bytes = fs::read(&p).map_err(|e| io(&p, e))?;
        if crate::weights::manifest::sha256_hex(&bytes) != f.sha256 {
            return Err(PipelineError::Model(format!("{}: sha256 mismatch (corrupt file)", p.display())));
        }
        files.insert(f.path.clone(), bytes);
    }
    Ok(ModelFiles { name: manifest.name, family: manifest.family, configs: manifest.configs, files, weights })
}

/// A tensor read from a file: shape and f32 values.
pub type Tensor = (Vec<usize>, Vec<f32>);

/// Tensor `name` of a safetensors file: its shape and f32 values.
pub fn read_tensor(path: &Path, name: &str) -> Result<Tensor, PipelineError> {
    read_tensor_opt(path, name)?.ok_or_else(|| PipelineError::Request(format!("{} has no tensor '{name}'", path.display())))
}

/// Tensor `name` of a safetensors file, or None when the file has no such tensor.
pub fn read_tensor_opt(path: &Path, name: &str) -> Result<Option<Tensor>, PipelineError> {
    let bytes = fs::read(path).map_err(|e| io(path, e))?;
    let file = path.display().to_string();
    let header = safetensors::parse(&file, &bytes).map_err(|e| PipelineError::Request(e.to_string()))?;
    let Some((_, info)) = header.tensors.iter().find(|(n, _)| n.as_str() == name) else { return Ok(None) };
    let raw = &bytes[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
    let values = safetensors::to_f32(&file, name, info, raw).map_err(|e| PipelineError::Request(e.to_string()))?;
    Ok(Some((info.shape.clone(), values)))
}

/// An init image or mask: a PNG, or a safetensors file with a float tensor `name`
/// (NCHW in [0, 1]) for exact inputs.
pub fn read_image(path: &Path, name: &str) -> Result<FloatImage, PipelineError> {
    let is_png = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if is_png {
        let bytes = fs::read(path).map_err(|e| io(path, e))?;
        let img = Rgba::from_png(&bytes).map_err(|e| PipelineError::Request(format!("{}: {e}", path.display())))?;
        return Ok(if name == "mask" { img.to_float_mask() } else { img.to_float_rgb() });
    }
    let (shape, values) = read_tensor(path, name)?;
    let shape: [usize; 4] = shape.try_into().map_err(|s| PipelineError::Request(format!("{}: '{name}' has shape {s:?}, want NCHW", path.display())))?;
    Ok(FloatImage { shape, values })
}

/// Writes f32 tensors to a safetensors file.
pub fn write_tensors(path: &Path, tensors: &[(&str, &[usize], &[f32])]) -> Result<(), PipelineError> {
    fs::write(path, safetensors::write_f32(tensors)).map_err(|e| io(path, e))
}
