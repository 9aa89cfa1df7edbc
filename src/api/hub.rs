//! Hub mode's wasm side: `www/hub.js` fetches a diffusers repository's files (configs,
//! tokenizer files, then weights by HTTP Range) and feeds them here; this converts on the
//! device with `weights::repo::RepoConverter` (the code `easel convert` runs) and hands back
//! shards as they fill and, at the end, the manifest.
//!
//!   const conv = new HubConverter(source, name, modelIndexText, 'q8_0', shardBytes, preferFp16);
//!   JSON.parse(conv.plan())  -> [{name, class, configs, files, weights, weights_required}]
//!   conv.addConfig(component, file, text); conv.addFile(path, bytes)
//!   HubConverter.headerLength(file, first8, fileSize); conv.addWeights(component, url, header, fileSize, chunkBytes) -> JSON ranges
//!   conv.feed(bytes); conv.takeShard() -> HubShard | undefined; conv.finish() -> manifest text

use std::collections::VecDeque;

use wasm_bindgen::prelude::*;

use crate::ops::StorageType;
use crate::weights::manifest::ShardEntry;
use crate::weights::repo::RepoConverter;
use crate::weights::rules::{repo_components, repo_family, ComponentPlan};
use crate::weights::{safetensors, MAX_SHARD_BYTES};

fn js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// A finished shard: its file name and bytes.
#[wasm_bindgen]
pub struct HubShard {
    file: String,
    bytes: Vec<u8>,
}

#[wasm_bindgen]
impl HubShard {
    /// `shard-00000.bin` ...
    #[wasm_bindgen(getter)]
    pub fn file(&self) -> String {
        self.file.clone()
    }

    /// The bytes (moved out: a second call returns nothing).
    #[wasm_bindgen(js_name = takeBytes)]
    pub fn take_bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

/// One repository being converted.
#[wasm_bindgen]
pub struct HubConverter {
    conv: Option<RepoConverter>,
    plan: Vec<ComponentPlan>,
    ready: VecDeque<(ShardEntry, Vec<u8>)>,
}

#[wasm_bindgen]
impl HubConverter {
    /// Starts converting the repository at `source` (its URL, for messages) whose
    /// model_index.json is `model_index`, storing linear/conv weights as `quant`.
    #[wasm_bindgen(constructor)]
    pub fn new(source: &str, name: &str, model_index: &str, quant: &str, shard_bytes: f64, prefer_fp16: bool) -> Result<HubConverter, JsError> {
        let index: serde_json::Value = serde_json::from_str(model_index).map_err(|e| js(format!("{source}model_index.json is not JSON: {e}")))?;
        let family = repo_family(&index).map_err(|m| js(format!("cannot convert {source}: {m}")))?;
        let quant = StorageType::from_name(quant).ok_or_else(|| js(format!("unknown storage type '{quant}': use f32, f16, q8_0 or q4_0")))?;
        let shard_bytes = if shard_bytes > 0.0 { shard_bytes as u64 } else { MAX_SHARD_BYTES };
        let mut conv = RepoConverter::new(source, family, name, quant, shard_bytes);
        conv.add_config("model_index", index.clone());
        Ok(HubConverter { conv: Some(conv), plan: repo_components(&index, prefer_fp16), ready: VecDeque::new() })
    }

    /// What to fetch, component by component (JSON).
    pub fn plan(&self) -> String {
        serde_json::to_string(&self.plan).unwrap_or_default()
    }

    fn conv(&mut self) -> Result<&mut RepoConverter, JsError> {
        self.conv.as_mut().ok_or_else(|| js("this conversion has finished"))
    }

    /// Records component `component`'s config, read from `file` (named in errors).
    #[wasm_bindgen(js_name = addConfig)]
    pub fn add_config(&mut self, component: &str, file: &str, text: &str) -> Result<(), JsError> {
        let value = serde_json::from_str(text).map_err(|e| js(format!("{file} is not JSON: {e}")))?;
        self.conv()?.add_config(component, value);
        Ok(())
    }

    /// Records a file that travels with the model (the caller caches its bytes).
    #[wasm_bindgen(js_name = addFile)]
    pub fn add_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), JsError> {
        self.conv()?.add_file(path, bytes);
        Ok(())
    }

    /// The header length from a safetensors file's first 8 bytes, checked against its size.
    #[wasm_bindgen(js_name = headerLength)]
    pub fn header_length(file: &str, first8: &[u8], file_size: f64) -> Result<f64, JsError> {
        safetensors::header_len(file, first8, file_size as u64).map(|n| n as f64).map_err(js)
    }

    /// Plans a weights file from its header (the JSON bytes after the length): checks it
    /// and returns JSON `[[start, end], ...]`, the byte ranges whose data `feed` must get next.
    #[wasm_bindgen(js_name = addWeights)]
    pub fn add_weights(&mut self, component: &str, file: &str, header: &[u8], file_size: f64, chunk_bytes: f64) -> Result<String, JsError> {
        let header = safetensors::parse_header(file, header, file_size as u64).map_err(js)?;
        let ranges = self.conv()?.add_weights(component, file, &header, file_size as u64, chunk_bytes as u64).map_err(js)?;
        Ok(serde_json::to_string(&ranges).unwrap_or_default())
    }

    /// The model's name and planned tensors (for `Engine.checkConversion`).
    pub(crate) fn planned(&self) -> Option<(&str, &[crate::weights::fit::TensorSpec])> {
        self.conv.as_ref().map(|c| c.planned())
    }

    /// Bytes of the converted model (known once every header is planned).
    #[wasm_bindgen(js_name = outputBytes)]
    pub fn output_bytes(&self) -> f64 {
        self.conv.as_ref().map_or(0, |c| c.output_bytes()) as f64
    }

    /// The next bytes of the planned ranges, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), JsError> {
        let conv = self.conv()?;
        conv.feed(bytes).map_err(js)?;
        let full = conv.take_ready();
        self.ready.extend(full);
        Ok(())
    }

    /// A shard that is complete, oldest first; undefined when none is waiting.
    #[wasm_bindgen(js_name = takeShard)]
    pub fn take_shard(&mut self) -> Option<HubShard> {
        self.ready.pop_front().map(|(entry, bytes)| HubShard { file: entry.file, bytes })
    }

    /// Ends the conversion: the manifest text (as `easel convert` writes it); the last
    /// shards are then waiting in `takeShard`.
    pub fn finish(&mut self) -> Result<String, JsError> {
        let done = self.conv.take().ok_or_else(|| js("this conversion has finished"))?.finish().map_err(js)?;
        self.ready.extend(done.shards);
        Ok(done.manifest.to_json_pretty())
    }
}

/// SHA-256 of a file read in pieces: Hub mode checks each weights file against the LFS
/// sha256 the Hub's tree API lists (WebCrypto hashes whole buffers only).
#[wasm_bindgen]
pub struct FileHasher(sha2::Sha256);

impl Default for FileHasher {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen]
impl FileHasher {
    #[wasm_bindgen(constructor)]
    pub fn new() -> FileHasher {
        use sha2::Digest;
        FileHasher(sha2::Sha256::new())
    }

    /// The next bytes of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        self.0.update(bytes);
    }

    /// Lower-case hex digest of everything given so far.
    #[wasm_bindgen(js_name = hexDigest)]
    pub fn hex_digest(&self) -> String {
        use sha2::Digest;
        self.0.clone().finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}
