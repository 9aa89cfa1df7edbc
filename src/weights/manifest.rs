//! Easel's model format: `manifest.json` plus shard files of at most 32 MiB. The manifest
//! names every tensor (checkpoint names, prefixed by component: `unet.conv_in.weight`), its
//! shape and storage type, and where its bytes are (a tensor larger than a shard spans
//! consecutive shards); every shard with its size and sha256; the model's configs; and a
//! hash of all of that, so a cached model can be checked as a whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::WeightsError;
use crate::ops::quant::BLOCK;
use crate::ops::StorageType;

/// The manifest version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Default and maximum shard size.
pub const MAX_SHARD_BYTES: u64 = 32 << 20;

/// A run of a tensor's bytes inside one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub shard: usize,
    pub offset: u64,
    pub length: u64,
}

/// One tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub storage: StorageType,
    /// In order; their lengths add up to the tensor's byte length.
    pub parts: Vec<Part>,
}

impl TensorEntry {
    /// Bytes of the tensor as stored (saturating: `validate` refuses sums that overflow).
    pub fn byte_len(&self) -> u64 {
        self.parts.iter().fold(0u64, |a, p| a.saturating_add(p.length))
    }
}

/// One shard file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

/// A non-tensor file that travels with the model (tokenizer files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// The manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// "stable-diffusion", "vqgan-taming", "vqmodel", "amused", "ddpm", or a single component.
    pub family: String,
    pub name: String,
    /// Component name -> its config (`config.json`, `scheduler_config.json`, taming's
    /// config), exactly as the source had it. `model_index` holds model_index.json.
    pub configs: BTreeMap<String, serde_json::Value>,
    pub tensors: Vec<TensorEntry>,
    pub shards: Vec<ShardEntry>,
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// sha256 of the canonical JSON of everything above.
    pub content_sha256: String,
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl Manifest {
    /// The hash over configs, tensors, shards and files (serde_json writes maps sorted).
    pub fn compute_hash(&self) -> String {
        let body = serde_json::json!({
            "format_version": self.format_version,
            "family": self.family,
            "name": self.name,
            "configs": self.configs,
            "tensors": self.tensors,
            "shards": self.shards,
            "files": self.files,
        });
        sha256_hex(body.to_string().as_bytes())
    }

    /// Parses and checks a manifest: version, hash, and that every tensor's bytes lie inside
    /// its shards and match its shape and storage type.
    pub fn parse(json: &[u8]) -> Result<Self, WeightsError> {
        let probe: serde_json::Value = serde_json::from_slice(json).map_err(|e| WeightsError::Manifest(format!("not JSON: {e}")))?;
        match probe.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v == FORMAT_VERSION as u64 => {}
            Some(v) => {
                return Err(WeightsError::Manifest(format!(
                    "format version {v} is not supported by this Easel (it reads version {FORMAT_VERSION}); update Easel or re-convert the model"
                )))
            }
            None => return Err(WeightsError::Manifest("no format_version: this is not an Easel manifest".into())),
        }
        let m: Manifest = serde_json::from_value(probe).map_err(|e| WeightsError::Manifest(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// The structural checks of `parse`.
    pub fn validate(&self) -> Result<(), WeightsError> {
        let err = |m: String| Err(WeightsError::Manifest(m));
        if self.compute_hash() != self.content_sha256 {
            return err("content hash mismatch: the manifest was edited or damaged".into());
        }
        for s in &self.shards {
            if s.size > MAX_SHARD_BYTES || s.file.contains('/') || s.file.contains("..") || s.sha256.len() != 64 {
                return err(format!("shard entry {s:?} is invalid"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.tensors {
            if !seen.insert(&t.name) {
                return err(format!("tensor '{}' is listed twice", t.name));
            }
            // Checked arithmetic throughout: shapes and lengths here are untrusted (found by fuzzing).
            let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let want = numel.and_then(|n| t.storage.checked_byte_len(n)).map(|b| b as u64);
            let have = t.parts.iter().try_fold(0u64, |a, p| a.checked_add(p.length));
            if want.is_none() || want != have {
                return err(format!("tensor '{}': {} bytes do not fit shape {:?} as {}", t.name, t.byte_len(), t.shape, t.storage.name()));
            }
            // A zero first axis leaves numel 0 however large the rest: check the row on its own.
            let row = t.shape.iter().skip(1).try_fold(1usize, |a, &d| a.checked_mul(d));
            if t.storage.is_quantized() && (t.shape.len() < 2 || row.is_none_or(|r| r % BLOCK != 0)) {
                return err(format!("tensor '{}': {} needs rows of whole {BLOCK}-value blocks, shape {:?} does not have them", t.name, t.storage.name(), t.shape));
            }
            for p in &t.parts {
                let Some(shard) = self.shards.get(p.shard) else {
                    return err(format!("tensor '{}' points at shard {} of {}", t.name, p.shard, self.shards.len()));
                };
                if p.offset.checked_add(p.length).is_none_or(|end| end > shard.size) {
                    return err(format!("tensor '{}' runs past the end of {}", t.name, shard.file));
                }
            }
        }
        Ok(())
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorEntry, WeightsError> {
        self.tensors.iter().find(|t| t.name == name).ok_or_else(|| WeightsError::Manifest(format!("tensor '{name}' is not in the manifest")))
    }

    /// The manifest as both converters write it (pretty JSON): the CLI's file and Hub
    /// mode's cached copy are byte for byte the same.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest is always serializable")
    }

    /// Total bytes of all shards.
    pub fn total_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.size).sum()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::weights::ShardWriter;

    /// Two tensors in 40-byte shards, the second spanning both; with the shards' bytes.
    pub(crate) fn manifest() -> (Manifest, Vec<Vec<u8>>) {
        let mut w = ShardWriter::new(40);
        w.push("a", &[4], StorageType::F32, &[1; 16]);
        w.push("big", &[16], StorageType::F32, &[2; 64]);
        let (tensors, entries, shards) = w.finish();
        let mut m = Manifest {
            format_version: FORMAT_VERSION,
            family: "test".into(),
            name: "t".into(),
            configs: BTreeMap::new(),
            tensors,
            shards: entries,
            files: vec![],
            content_sha256: String::new(),
        };
        m.content_sha256 = m.compute_hash();
        (m, shards.into_iter().map(|s| s.1).collect())
    }

    #[test]
    fn tensors_span_shards_and_round_trip() {
        let (m, shards) = manifest();
        assert_eq!(shards.iter().map(Vec::len).collect::<Vec<_>>(), vec![40, 40]);
        let big = m.tensor("big").unwrap();
        assert_eq!(big.parts, vec![Part { shard: 0, offset: 16, length: 24 }, Part { shard: 1, offset: 0, length: 40 }]);
        let json = serde_json::to_vec(&m).unwrap();
        assert_eq!(Manifest::parse(&json).unwrap(), m);
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let (m, _) = manifest();
        let mut v = serde_json::to_value(&m).unwrap();
        v["format_version"] = 2.into();
        let err = Manifest::parse(v.to_string().as_bytes()).unwrap_err().to_string();
        assert!(err.contains("format version 2 is not supported"), "{err}");
        let mut v = serde_json::to_value(&m).unwrap();
        v["tensors"][0]["shape"] = serde_json::json!([5]);
        assert!(Manifest::parse(v.to_string().as_bytes()).unwrap_err().to_string().contains("hash mismatch"));
        let mut edited = m.clone();
        edited.tensors[0].shape = vec![5];
        edited.content_sha256 = edited.compute_hash();
        let err = edited.validate().unwrap_err().to_string();
        assert!(err.contains("tensor 'a'") && err.contains("do not fit"), "{err}");
        assert!(m.tensor("missing.weight").unwrap_err().to_string().contains("'missing.weight' is not in the manifest"));
    }

    /// Re-hashes `m` after an edit, as a hostile writer would, and returns parse's error.
    fn rehashed_error(mut m: Manifest) -> String {
        m.content_sha256 = m.compute_hash();
        Manifest::parse(&serde_json::to_vec(&m).unwrap()).unwrap_err().to_string()
    }

    #[test]
    fn hostile_sizes_are_refused_without_overflowing() {
        let (m, _) = manifest();
        // 4 bytes x 2^62 values (2^30 on wasm32) wraps to 0 bytes: once a panic (debug) or
        // an accepted empty tensor.
        let mut huge = m.clone();
        huge.tensors[0].shape = vec![usize::MAX / 4 + 1];
        huge.tensors[0].parts.clear();
        let err = rehashed_error(huge);
        assert!(err.contains("tensor 'a'") && err.contains("do not fit"), "{err}");
        // Part lengths whose sum overflows u64.
        let mut parts = m.clone();
        let p = Part { shard: 0, offset: 0, length: 1 << 63 };
        parts.tensors[0].parts = vec![p.clone(), p];
        let err = rehashed_error(parts);
        assert!(err.contains("tensor 'a'") && err.contains("do not fit"), "{err}");
        // A zero first axis with an overflowing row, quantized.
        let mut rows = m.clone();
        rows.tensors[0].shape = vec![0, usize::MAX / 2, 4];
        rows.tensors[0].storage = StorageType::Q8_0;
        rows.tensors[0].parts.clear();
        let err = rehashed_error(rows);
        assert!(err.contains("whole 32-value blocks"), "{err}");
        // 33 values stored as one Q8_0 block: the byte count fits, the blocks do not.
        let mut odd = m.clone();
        odd.tensors[0].shape = vec![1, 33];
        odd.tensors[0].storage = StorageType::Q8_0;
        odd.tensors[0].parts = vec![Part { shard: 0, offset: 0, length: 34 }];
        let err = rehashed_error(odd);
        assert!(err.contains("tensor 'a'") && err.contains("whole 32-value blocks"), "{err}");
    }
}
