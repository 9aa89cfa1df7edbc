//! Shared by the SD fidelity tests: the fixture models (diffusers folders converted in a
//! temp dir, the way `easel convert` does) and their diffusers reference tensors.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use easel::ops::{StorageType, WeightStore};
use easel::weights::convert::{convert, ConvertOptions};
use easel::weights::folder::load_folder;
use easel::weights::manifest::Manifest;
use easel::weights::safetensors::{self, SafeDType};

pub fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(case)
}

/// A fixture converted to Easel's format at `quant`, and loaded back.
pub fn converted(case: &str, quant: StorageType) -> (Manifest, WeightStore, PathBuf) {
    let out = std::env::temp_dir().join(format!("easel-test-{case}-{quant:?}-{}", std::process::id()));
    convert(&fixture(case), &out, &ConvertOptions { quant, shard_bytes: 32 << 20 }).expect("fixture converts");
    let (m, s) = load_folder(&out).expect("converted fixture loads");
    (m, s, out)
}

/// A reference tensor: shape and values (integers widened to f32).
pub struct Ref {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Every tensor of `reference.safetensors`.
pub fn references(case: &str) -> HashMap<String, Ref> {
    let path = fixture(case).join("reference.safetensors");
    let bytes = std::fs::read(&path).expect("reference.safetensors");
    let name = path.display().to_string();
    let header = safetensors::parse(&name, &bytes).unwrap();
    header
        .tensors
        .iter()
        .map(|(k, info)| {
            let raw = &bytes[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
            let values = match info.dtype {
                SafeDType::I64 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
                _ => safetensors::to_f32(&name, k, info, raw).unwrap(),
            };
            (k.clone(), Ref { shape: info.shape.clone(), values })
        })
        .collect()
}

/// ||a - b|| / ||b||.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}
