//! A diffusers repository converted from pieces: configs and tokenizer files as they are
//! found, then each weights file planned from its header alone and fed as byte ranges.
//! `easel convert` reads the ranges from disk; Hub mode (`api::hub`) from HTTP Range
//! requests. Same rules, same code, so both make the same manifest and shards.

use std::collections::VecDeque;

use super::builder::{Finished, ModelBuilder, ModelInfo};
use super::error::WeightsError;
use super::fit::TensorSpec;
use super::manifest::ShardEntry;
use super::rules::{check_shapes, converts_tensor};
use super::safetensors::{not_float, Header, SafeDType};
use crate::ops::StorageType;

/// Integer buffers that older transformers exports saved next to the weights (CLIP's
/// `text_model.embeddings.position_ids`, an arange, as in SD 1.5's text encoder): not
/// parameters, so they are left out rather than refused.
fn is_index_buffer(name: &str) -> bool {
    name.ends_with("position_ids")
}

/// A tensor whose bytes are still to come, in feed order.
struct Pending {
    file: String,
    name: String,
    shape: Vec<usize>,
    dtype: SafeDType,
}

/// A conversion fed from a repository's files.
pub struct RepoConverter {
    /// The folder or URL converted, for messages.
    source: String,
    info: ModelInfo,
    builder: ModelBuilder,
    queue: VecDeque<Pending>,
    output_bytes: u64,
    /// Every tensor planned so far, as it will be stored (for the fit check).
    planned: Vec<TensorSpec>,
}

impl RepoConverter {
    /// A conversion of `source` (family and name as the manifest will say).
    pub fn new(source: &str, family: &str, name: &str, quant: StorageType, shard_bytes: u64) -> Self {
        let info = ModelInfo { family: family.into(), name: name.into(), ..Default::default() };
        Self { source: source.into(), info, builder: ModelBuilder::new(quant, shard_bytes), queue: VecDeque::new(), output_bytes: 0, planned: Vec::new() }
    }

    /// Records a config (`model_index`, or a component's config.json / scheduler_config.json).
    pub fn add_config(&mut self, key: &str, config: serde_json::Value) {
        self.info.configs.insert(key.into(), config);
    }

    /// Records a file that travels with the model (the caller stores its bytes).
    pub fn add_file(&mut self, path: &str, bytes: &[u8]) {
        self.info.add_file(path, bytes);
    }

    /// Plans component `component`'s weights file `file` (of `file_size` bytes) from its
    /// header: checks it against the component's config and returns the byte ranges
    /// `[start, end)` of the file, at most `chunk_bytes` each, whose bytes `feed` must then
    /// get in order. Tensors are taken by name (the shard layout depends on it), and
    /// neighbouring tensors share a range.
    pub fn add_weights(&mut self, component: &str, file: &str, header: &Header, file_size: u64, chunk_bytes: u64) -> Result<Vec<(u64, u64)>, WeightsError> {
        if let Some(config) = self.info.configs.get(component) {
            check_shapes(component, config, |n| header.tensors.get(n).map(|t| t.shape.clone()))
                .map_err(|message| WeightsError::Convert { source_path: self.source.clone(), message })?;
        }
        // Refuse before a byte of data is read.
        let wanted = || header.tensors.iter().filter(|(n, _)| converts_tensor(component, n));
        if let Some((name, t)) = wanted().find(|(n, t)| !t.dtype.is_float() && !is_index_buffer(n)) {
            return Err(not_float(file, name, t.dtype));
        }
        let chunk = chunk_bytes.max(1);
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for (name, t) in wanted().filter(|(_, t)| t.dtype.is_float()) {
            let full = format!("{component}.{name}");
            let storage = self.builder.storage(&full, &t.shape, t.dtype);
            self.output_bytes += storage.byte_len(t.numel()) as u64;
            self.planned.push((full.clone(), t.shape.clone(), storage));
            self.queue.push_back(Pending { file: file.into(), name: full, shape: t.shape.clone(), dtype: t.dtype });
            let (mut at, end) = (header.data_start + t.begin, header.data_start + t.end);
            while at < end {
                match ranges.last_mut() {
                    Some(r) if r.1 == at && r.1 - r.0 < chunk => r.1 = end.min(r.0 + chunk),
                    _ => ranges.push((at, end.min(at + chunk))),
                }
                at = ranges.last().expect("just pushed").1;
            }
        }
        self.info.source_bytes += file_size;
        Ok(ranges)
    }

    /// The model's name and its planned tensors as they will be stored: enough for
    /// `fit::check_tensors` before any weight byte is read.
    pub fn planned(&self) -> (&str, &[TensorSpec]) {
        (&self.info.name, &self.planned)
    }

    /// Bytes the model will take once converted (for a storage check before downloading).
    pub fn output_bytes(&self) -> u64 {
        self.output_bytes
    }

    /// Takes the next bytes of the planned ranges, in order.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), WeightsError> {
        loop {
            self.open_next()?;
            if bytes.is_empty() {
                return Ok(());
            }
            let left = self.builder.left();
            if left == 0 {
                return Err(WeightsError::Convert { source_path: self.source.clone(), message: format!("{} bytes arrived after the last planned tensor", bytes.len()) });
            }
            let take = (left.min(bytes.len() as u64)) as usize;
            self.builder.write(&bytes[..take]);
            bytes = &bytes[take..];
            if self.builder.left() == 0 {
                self.builder.end();
            }
        }
    }

    /// Opens the next pending tensor when none is open; tensors of no bytes end at once.
    fn open_next(&mut self) -> Result<(), WeightsError> {
        while self.builder.left() == 0 {
            let Some(p) = self.queue.pop_front() else { return Ok(()) };
            self.builder.begin(&p.file, &p.name, &p.shape, p.dtype)?;
            if self.builder.left() == 0 {
                self.builder.end();
            }
        }
        Ok(())
    }

    /// Full shards not taken yet, in order.
    pub fn take_ready(&mut self) -> Vec<(ShardEntry, Vec<u8>)> {
        self.builder.take_ready()
    }

    /// The manifest and the remaining shards; every planned byte must have arrived.
    pub fn finish(mut self) -> Result<Finished, WeightsError> {
        self.open_next()?;
        // open_next leaves a tensor open exactly when some planned bytes are missing.
        if let Some(name) = self.builder.open_name() {
            let message = format!("the data of tensor '{name}' and {} more never arrived", self.queue.len());
            return Err(WeightsError::Convert { source_path: self.source, message });
        }
        Ok(self.builder.finish(self.info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::safetensors::parse;

    /// A safetensors file with an int64 buffer `int_name` and an f32 weight `b.weight`.
    fn with_int_buffer(int_name: &str) -> Vec<u8> {
        let header = format!(r#"{{"{int_name}":{{"dtype":"I64","shape":[3],"data_offsets":[0,24]}},"b.weight":{{"dtype":"F32","shape":[2],"data_offsets":[24,32]}}}}"#);
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend((0i64..3).flat_map(|i| i.to_le_bytes()));
        bytes.extend([1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()));
        bytes
    }

    #[allow(clippy::type_complexity)] // a test helper's tuple
    fn plan(bytes: &[u8]) -> (RepoConverter, Header, Result<Vec<(u64, u64)>, WeightsError>) {
        let header = parse("te.safetensors", bytes).unwrap();
        let mut c = RepoConverter::new("repo", "stable-diffusion", "m", StorageType::F32, 1 << 20);
        let ranges = c.add_weights("text_encoder", "te.safetensors", &header, bytes.len() as u64, 1 << 20);
        (c, header, ranges)
    }

    #[test]
    fn integer_position_ids_are_left_out_and_other_integers_refused() {
        let bytes = with_int_buffer("a.position_ids");
        let (mut c, header, ranges) = plan(&bytes);
        // Only b.weight's 8 bytes are read.
        let start = header.data_start + 24;
        assert_eq!(ranges.unwrap(), vec![(start, start + 8)]);
        c.feed(&bytes[start as usize..]).unwrap();
        let names: Vec<String> = c.finish().unwrap().manifest.tensors.into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["text_encoder.b.weight"]);

        let err = plan(&with_int_buffer("a.token_count")).2.unwrap_err().to_string();
        assert!(err.contains("a.token_count") && err.contains("not a float type"), "{err}");
    }
}
