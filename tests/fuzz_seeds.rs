//! The fuzzers' seed corpus (fuzz/corpus) must stay valid input: a seed the parser refuses
//! would only ever fuzz its error paths.

#![cfg(not(target_arch = "wasm32"))]

use std::fs;
use std::path::{Path, PathBuf};

use easel::weights::{safetensors, Manifest};

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut out: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).map(|p| (p.clone(), fs::read(&p).unwrap())).collect();
    out.sort();
    out
}

#[test]
fn safetensors_seeds_parse() {
    let seeds = seeds("safetensors_header");
    assert!(seeds.len() >= 4, "{} seeds", seeds.len());
    let mut tensors = 0;
    for (path, bytes) in &seeds {
        let h = safetensors::parse("seed", bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        tensors += h.tensors.len();
    }
    assert!(tensors >= 8, "the seeds hold {tensors} tensors");
}

#[test]
fn manifest_seeds_parse() {
    let seeds = seeds("manifest");
    assert!(seeds.len() >= 3, "{} seeds", seeds.len());
    let mut storages = std::collections::BTreeSet::new();
    for (path, bytes) in &seeds {
        let m = Manifest::parse(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        storages.extend(m.tensors.iter().map(|t| t.storage.name()));
    }
    assert_eq!(storages.into_iter().collect::<Vec<_>>(), ["f32", "q4_0", "q8_0"]);
}
