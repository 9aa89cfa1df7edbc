//! Native loader: a converted model from a folder, every shard verified before use.

use std::fs;
use std::path::Path;

use super::manifest::{sha256_hex, Manifest};
use crate::error::WeightsError;
use crate::ops::{HostWeight, WeightStore};

/// Reads `dir/manifest.json` and its shards (size and sha256 checked) into a weight store.
pub fn load_folder(dir: &Path) -> Result<(Manifest, WeightStore), WeightsError> {
    let path = dir.join("manifest.json");
    let json = fs::read(&path).map_err(|e| WeightsError::Io { path: path.display().to_string(), message: e.to_string() })?;
    let manifest = Manifest::parse(&json)?;
    let mut shards = Vec::with_capacity(manifest.shards.len());
    for s in &manifest.shards {
        let p = dir.join(&s.file);
        let bytes = fs::read(&p).map_err(|e| WeightsError::Shard { file: s.file.clone(), message: format!("cannot be read: {e}") })?;
        if bytes.len() as u64 != s.size {
            return Err(WeightsError::Shard { file: s.file.clone(), message: format!("{} bytes, the manifest says {} (truncated?)", bytes.len(), s.size) });
        }
        if sha256_hex(&bytes) != s.sha256 {
            return Err(WeightsError::Shard { file: s.file.clone(), message: "sha256 mismatch: the file is corrupt".into() });
        }
        shards.push(bytes);
    }
    let mut store = WeightStore::new();
    for t in &manifest.tensors {
        let mut bytes = Vec::with_capacity(t.byte_len() as usize);
        for p in &t.parts {
            bytes.extend_from_slice(&shards[p.shard][p.offset as usize..(p.offset + p.length) as usize]);
        }
        store.insert_raw(&t.name, HostWeight { shape: t.shape.clone(), storage: t.storage, bytes }).map_err(|e| WeightsError::Manifest(e.to_string()))?;
    }
    Ok((manifest, store))
}
