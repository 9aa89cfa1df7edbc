//! A model assembled tensor by tensor: source bytes (f32/f16/bf16, in pieces of any size)
//! are converted to each tensor's storage type as they arrive and packed into shards, so a
//! conversion holds one shard and a few blocks at a time, natively and in wasm alike.

use std::collections::BTreeMap;

use super::error::WeightsError;
use super::manifest::{sha256_hex, FileEntry, Manifest, ShardEntry, FORMAT_VERSION};
use super::rules::storage_for;
use super::safetensors::{decode_f32, not_float, SafeDType};
use super::shards::ShardWriter;
use crate::ops::quant::{self, BLOCK};
use crate::ops::StorageType;

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

/// The non-tensor part of a model.
#[derive(Debug, Clone, Default)]
pub struct ModelInfo {
    pub family: String,
    pub name: String,
    pub configs: BTreeMap<String, serde_json::Value>,
    pub files: Vec<FileEntry>,
    pub source_bytes: u64,
}

impl ModelInfo {
    /// Records a file that travels with the model (its bytes are the caller's to store).
    pub fn add_file(&mut self, path: &str, bytes: &[u8]) {
        self.files.push(FileEntry { path: path.into(), size: bytes.len() as u64, sha256: sha256_hex(bytes) });
    }
}

/// A finished conversion: the manifest and the shards nobody has taken yet.
pub struct Finished {
    pub manifest: Manifest,
    pub shards: Vec<(ShardEntry, Vec<u8>)>,
    pub summary: ConvertSummary,
}

/// The tensor being written.
struct Open {
    name: String,
    dtype: SafeDType,
    storage: StorageType,
    /// Source bytes still to come.
    left: u64,
    /// Source bytes short of a whole conversion unit (a value, or a 32-value block).
    carry: Vec<u8>,
}

/// Tensors in, shards out.
pub struct ModelBuilder {
    quant: StorageType,
    writer: ShardWriter,
    open: Option<Open>,
    bytes_by_storage: BTreeMap<String, u64>,
}

impl ModelBuilder {
    /// A builder storing linear/conv weights as `quant`, cutting shards at `shard_bytes`.
    pub fn new(quant: StorageType, shard_bytes: u64) -> Self {
        Self { quant, writer: ShardWriter::new(shard_bytes), open: None, bytes_by_storage: BTreeMap::new() }
    }

    /// The storage a tensor gets.
    pub fn storage(&self, name: &str, shape: &[usize], dtype: SafeDType) -> StorageType {
        storage_for(name, shape, matches!(dtype, SafeDType::F16 | SafeDType::BF16), self.quant)
    }

    /// Starts tensor `name` (from `file`, for messages); its source bytes follow via `write`.
    pub fn begin(&mut self, file: &str, name: &str, shape: &[usize], dtype: SafeDType) -> Result<(), WeightsError> {
        if !dtype.is_float() {
            return Err(not_float(file, name, dtype));
        }
        assert!(self.open.is_none(), "ModelBuilder::begin({name}) while another tensor is open");
        let storage = self.storage(name, shape, dtype);
        let left = (shape.iter().product::<usize>() * dtype.size()) as u64;
        self.writer.begin(name, shape, storage);
        self.open = Some(Open { name: name.into(), dtype, storage, left, carry: Vec::new() });
        Ok(())
    }

    /// Source bytes the open tensor still needs (0 when none is open).
    pub fn left(&self) -> u64 {
        self.open.as_ref().map_or(0, |o| o.left)
    }

    /// The open tensor's name, if one is open.
    pub fn open_name(&self) -> Option<&str> {
        self.open.as_ref().map(|o| o.name.as_str())
    }

    /// Adds source bytes of the open tensor, converting every whole unit at once.
    pub fn write(&mut self, raw: &[u8]) {
        let o = self.open.as_mut().expect("ModelBuilder::write needs begin first");
        assert!(raw.len() as u64 <= o.left, "tensor '{}' got {} bytes past its end", o.name, raw.len() as u64 - o.left);
        o.left -= raw.len() as u64;
        // Blocks are 32 consecutive values, so converting whole blocks piecewise gives the
        // bytes of converting the tensor at once.
        let unit = o.dtype.size() * if o.storage.is_quantized() { BLOCK } else { 1 };
        let mut joined;
        let mut data = raw;
        if !o.carry.is_empty() {
            joined = std::mem::take(&mut o.carry);
            joined.extend_from_slice(raw);
            data = &joined[..];
        }
        let whole = data.len() / unit * unit;
        o.carry = data[whole..].to_vec();
        if whole > 0 {
            let values = decode_f32(o.dtype, &data[..whole]).expect("begin admits float dtypes only");
            let bytes = quant::quantize(o.storage, &values);
            *self.bytes_by_storage.entry(o.storage.name().to_string()).or_default() += bytes.len() as u64;
            self.writer.append(&bytes);
        }
    }

    /// Finishes the open tensor; all its bytes must have arrived.
    pub fn end(&mut self) {
        let o = self.open.take().expect("ModelBuilder::end needs begin first");
        assert!(o.left == 0 && o.carry.is_empty(), "tensor '{}' ended {} bytes early", o.name, o.left);
        self.writer.end();
    }

    /// Adds a whole tensor already decoded to f32 (the taming checkpoint reader).
    pub fn push_f32(&mut self, name: &str, shape: &[usize], values: &[f32], source_half: bool) {
        let storage = storage_for(name, shape, source_half, self.quant);
        let bytes = quant::quantize(storage, values);
        *self.bytes_by_storage.entry(storage.name().to_string()).or_default() += bytes.len() as u64;
        self.writer.push(name, shape, storage, &bytes);
    }

    /// Full shards not taken yet.
    pub fn take_ready(&mut self) -> Vec<(ShardEntry, Vec<u8>)> {
        self.writer.take_ready()
    }

    /// The manifest (files listed by path, so the order they were added in does not matter).
    pub fn finish(self, mut info: ModelInfo) -> Finished {
        assert!(self.open.is_none(), "ModelBuilder::finish with a tensor still open");
        let (tensors, entries, shards) = self.writer.finish();
        info.files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut manifest = Manifest {
            format_version: FORMAT_VERSION,
            family: info.family.clone(),
            name: info.name,
            configs: info.configs,
            tensors,
            shards: entries,
            files: info.files,
            content_sha256: String::new(),
        };
        manifest.content_sha256 = manifest.compute_hash();
        let summary = ConvertSummary {
            family: info.family,
            tensors: manifest.tensors.len(),
            bytes_by_storage: self.bytes_by_storage,
            shards: manifest.shards.len(),
            source_bytes: info.source_bytes,
            output_bytes: manifest.total_bytes(),
        };
        Finished { manifest, shards, summary }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::random_values;

    /// One f16 conv weight and one f32 bias, fed whole or in awkward pieces.
    fn build(pieces: &[usize], quant: StorageType) -> (Manifest, Vec<Vec<u8>>) {
        let w: Vec<u8> = random_values(8 * 64, 7).iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect();
        let b: Vec<u8> = random_values(8, 8).iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut m = ModelBuilder::new(quant, 300);
        let mut shards = Vec::new();
        for (name, shape, dtype, raw) in [("l.weight", vec![8, 64], SafeDType::F16, &w), ("l.bias", vec![8], SafeDType::F32, &b)] {
            m.begin("src", name, &shape, dtype).unwrap();
            let (mut at, mut i) = (0, 0);
            while at < raw.len() {
                let end = (at + pieces[i % pieces.len()]).min(raw.len());
                m.write(&raw[at..end]);
                shards.extend(m.take_ready().into_iter().map(|s| s.1));
                (at, i) = (end, i + 1);
            }
            assert_eq!(m.left(), 0);
            m.end();
        }
        let done = m.finish(ModelInfo { family: "test".into(), ..Default::default() });
        shards.extend(done.shards.into_iter().map(|s| s.1));
        (done.manifest, shards)
    }

    #[test]
    fn pieces_of_any_size_give_the_bytes_of_a_whole_tensor() {
        for quant in [StorageType::Q8_0, StorageType::Q4_0, StorageType::F32, StorageType::F16] {
            let (whole, whole_shards) = build(&[usize::MAX], quant);
            let (pieces, piece_shards) = build(&[3, 1, 70, 5, 64], quant);
            assert_eq!(pieces, whole, "{quant:?}");
            assert_eq!(piece_shards, whole_shards, "{quant:?}");
            assert!(whole.shards.len() > 1 || quant.is_quantized(), "{quant:?}: shards {}", whole.shards.len());
        }
        let (m, _) = build(&[usize::MAX], StorageType::Q8_0);
        assert_eq!(m.tensors.iter().map(|t| t.storage).collect::<Vec<_>>(), [StorageType::Q8_0, StorageType::F32]);
    }

    #[test]
    fn integer_tensors_are_refused_by_name() {
        let mut m = ModelBuilder::new(StorageType::Q8_0, 1 << 20);
        let err = m.begin("unet.safetensors", "pos_ids", &[77], SafeDType::I64).unwrap_err().to_string();
        assert_eq!(err, "unet.safetensors: tensor 'pos_ids' is I64, not a float type");
    }
}
