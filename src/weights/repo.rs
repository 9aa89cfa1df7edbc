//! A diffusers repository converted from pieces: configs and tokenizer files as they are
//! found, then each weights file planned from its header alone and fed as byte ranges.
//! `easel convert` reads the ranges from disk; Hub mode (`api::hub`) from HTTP Range
//! requests. Same rules, same code, so both make the same manifest and shards.

use std::collections::VecDeque;

use super::builder::{Finished, ModelBuilder, ModelInfo};
use super::error::WeightsError;
use super::manifest::ShardEntry;
use super::rules::check_shapes;
use super::safetensors::{not_float, Header, SafeDType};
use crate::ops::StorageType;

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
}

impl RepoConverter {
    /// A conversion of `source` (family and name as the manifest will say).
    pub fn new(source: &str, family: &str, name: &str, quant: StorageType, shard_bytes: u64) -> Self {
        let info = ModelInfo { family: family.into(), name: name.into(), ..Default::default() };
        Self { source: source.into(), info, builder: ModelBuilder::new(quant, shard_bytes), queue: VecDeque::new(), output_bytes: 0 }
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
        if let Some((name, t)) = header.tensors.iter().find(|(_, t)| !t.dtype.is_float()) {
            return Err(not_float(file, name, t.dtype));
        }
        let chunk = chunk_bytes.max(1);
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for (name, t) in &header.tensors {
            let full = format!("{component}.{name}");
            self.output_bytes += self.builder.storage(&full, &t.shape, t.dtype).byte_len(t.numel()) as u64;
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
