//! Native file plumbing for the CLI and the tests: a model from a converted folder, a
//! diffusers folder or a taming checkpoint, exact float inputs and integer codes from
//! safetensors files, PNG in and out.

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

/// What `easel convert` reads for `path`: a diffusers repository or component folder, a
/// taming folder's checkpoint (model.safetensors, else model.ckpt, beside config.yaml), or
/// a checkpoint file itself.
fn convert_source(path: &Path) -> Option<std::path::PathBuf> {
    if path.join("model_index.json").is_file() || path.join("config.json").is_file() || path.is_file() {
        return Some(path.to_path_buf());
    }
    ["model.safetensors", "model.ckpt"].iter().map(|f| path.join(f)).find(|p| p.is_file())
}

/// Loads a converted folder (manifest.json + shards, verified), or converts a diffusers
/// folder or taming checkpoint on the fly at `quant` (in a temporary folder, removed
/// afterwards).
pub fn load_model_dir(path: &Path, quant: StorageType) -> Result<ModelFiles, PipelineError> {
    if path.join("manifest.json").is_file() {
        return load_converted(path);
    }
    let Some(source) = convert_source(path) else {
        let message = "is neither a converted model (manifest.json), a diffusers repository (model_index.json) or component (config.json), nor a taming checkpoint (model.safetensors or model.ckpt)";
        return Err(PipelineError::Model(format!("{} {message}", path.display())));
    };
    // Unique per call: tests convert in parallel threads of one process.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = std::env::temp_dir().join(format!("easel-convert-{}-{call}", std::process::id()));
    let result = convert(&source, &tmp, &ConvertOptions { quant, shard_bytes: 32 << 20 }).map_err(|e| PipelineError::Model(e.to_string())).and_then(|_| load_converted(&tmp));
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
    tensor_in(path, &bytes, name).map_err(PipelineError::Request)
}

/// Tensor `name` of safetensors `bytes` read from `path` (named in messages).
fn tensor_in(path: &Path, bytes: &[u8], name: &str) -> Result<Option<Tensor>, String> {
    let file = path.display().to_string();
    let header = safetensors::parse(&file, bytes).map_err(|e| e.to_string())?;
    let Some((_, info)) = header.tensors.iter().find(|(n, _)| n.as_str() == name) else { return Ok(None) };
    let raw = &bytes[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
    let values = safetensors::to_f32(&file, name, info, raw).map_err(|e| e.to_string())?;
    Ok(Some((info.shape.clone(), values)))
}

/// Integer tensor `name` of a safetensors file (code indices): its shape and values. A float
/// tensor is refused by name: indices must be exact.
pub fn read_int_tensor(path: &Path, name: &str) -> Result<(Vec<usize>, Vec<i64>), PipelineError> {
    let bytes = fs::read(path).map_err(|e| io(path, e))?;
    let file = path.display().to_string();
    let bad = |e: String| PipelineError::Request(format!("{file}: {e}"));
    let header = safetensors::parse(&file, &bytes).map_err(|e| bad(e.to_string()))?;
    let (_, info) = header.tensors.iter().find(|(n, _)| n.as_str() == name).ok_or_else(|| bad(format!("no tensor '{name}'")))?;
    let raw = &bytes[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
    let values = safetensors::decode_i64(info.dtype, raw).ok_or_else(|| bad(format!("'{name}' is {:?}; it must be an integer tensor (I64, I32 or U8)", info.dtype)))?;
    Ok((info.shape.clone(), values))
}

/// An init image or mask from a file: a PNG's pixels, or exact floats from safetensors.
pub enum ImageFile {
    Pixels(Rgba),
    Floats(FloatImage),
}

impl ImageFile {
    /// Width and height.
    pub fn size(&self) -> (usize, usize) {
        match self {
            Self::Pixels(p) => (p.width, p.height),
            Self::Floats(f) => (f.width(), f.height()),
        }
    }

    /// As the generation's input of `width` x `height` (`name`: "init image" or "mask"). A PNG of
    /// another size is resized, and the note says so; exact floats must already fit.
    pub fn to_input(&self, name: &str, width: usize, height: usize) -> (FloatImage, Option<String>) {
        match self {
            Self::Floats(f) => (f.clone(), None),
            Self::Pixels(p) => {
                let note = ((p.width, p.height) != (width, height)).then(|| format!("the {name} ({}x{}) was resized to {width}x{height}", p.width, p.height));
                let px = p.resized(width, height);
                (if name == "mask" { px.to_float_mask() } else { px.to_float_rgb() }, note)
            }
        }
    }
}

/// Reads an init image or mask: PNG (any bit depth or colour type), or a safetensors file
/// with a float tensor `name` (NCHW in [0, 1]) for exact inputs. Other image formats are
/// named, so the user knows what to convert.
pub fn read_image(path: &Path, name: &str) -> Result<ImageFile, PipelineError> {
    let bytes = fs::read(path).map_err(|e| PipelineError::Request(format!("{}: {e}", path.display())))?;
    let bad = |e: String| PipelineError::Request(format!("{}: {e}", path.display()));
    let other_format = match bytes.as_slice() {
        [0x89, b'P', b'N', b'G', ..] => return Ok(ImageFile::Pixels(Rgba::from_png(&bytes).map_err(bad)?)),
        [0xff, 0xd8, 0xff, ..] => Some("a JPEG"),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some("a WebP"),
        [b'G', b'I', b'F', b'8', ..] => Some("a GIF"),
        _ => None,
    };
    if let Some(format) = other_format {
        return Err(bad(format!("this is {format} image; the CLI reads PNG (convert it with any image tool) or safetensors")));
    }
    let tensor = tensor_in(path, &bytes, name).map_err(|e| bad(format!("neither a PNG nor a readable safetensors file ({e})")))?;
    let (shape, values) = tensor.ok_or_else(|| bad(format!("no tensor '{name}'")))?;
    let shape: [usize; 4] = shape.try_into().map_err(|s| bad(format!("'{name}' has shape {s:?}, want NCHW")))?;
    Ok(ImageFile::Floats(FloatImage { shape, values }))
}

/// Writes f32 and i64 tensors to a safetensors file.
pub fn write_values(path: &Path, tensors: &[(&str, &[usize], safetensors::Values)]) -> Result<(), PipelineError> {
    fs::write(path, safetensors::write(tensors)).map_err(|e| io(path, e))
}

/// Writes f32 tensors to a safetensors file.
pub fn write_tensors(path: &Path, tensors: &[(&str, &[usize], &[f32])]) -> Result<(), PipelineError> {
    fs::write(path, safetensors::write_f32(tensors)).map_err(|e| io(path, e))
}
