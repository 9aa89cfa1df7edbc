//! Hub mode's conversion core (`RepoConverter`) fed the way the browser feeds it (headers
//! first, then small ranges arriving in odd pieces) makes exactly the manifest and shards
//! of `easel convert`; and it refuses short or surplus data by name.

#![cfg(not(target_arch = "wasm32"))]

use std::fs;
use std::path::{Path, PathBuf};

use easel::ops::StorageType;
use easel::weights::convert::{convert, ConvertOptions};
use easel::weights::repo::RepoConverter;
use easel::weights::rules::{repo_components, repo_family};
use easel::weights::safetensors;

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(p)
}

/// What www/hub.js does, with files for URLs: returns the manifest text and every shard.
fn hub_like(repo: &Path, quant: StorageType, shard_bytes: u64, chunk_bytes: u64, piece: usize) -> (String, Vec<(String, Vec<u8>)>) {
    let index: serde_json::Value = serde_json::from_slice(&fs::read(repo.join("model_index.json")).unwrap()).unwrap();
    let name = repo.file_name().unwrap().to_string_lossy().into_owned();
    let mut conv = RepoConverter::new("hub", repo_family(&index).unwrap(), &name, quant, shard_bytes);
    conv.add_config("model_index", index.clone());
    let mut shards = Vec::new();
    let mut weights = Vec::new();
    for plan in repo_components(&index, false) {
        let dir = repo.join(&plan.name);
        if let Some(cfg) = plan.configs.iter().map(|f| dir.join(f)).find(|p| p.is_file()) {
            conv.add_config(&plan.name, serde_json::from_slice(&fs::read(cfg).unwrap()).unwrap());
        }
        // The browser adds tokenizer files in whatever order its fetches finish.
        for f in plan.files.iter().rev() {
            if let Ok(bytes) = fs::read(dir.join(f)) {
                conv.add_file(&format!("{}/{f}", plan.name), &bytes);
            }
        }
        // All headers first (the browser knows the total before the first data byte).
        if let Some(path) = plan.weights.iter().map(|f| dir.join(f)).find(|p| p.is_file()) {
            let bytes = fs::read(&path).unwrap();
            let header = safetensors::parse("src", &bytes).unwrap();
            let ranges = conv.add_weights(&plan.name, "src", &header, bytes.len() as u64, chunk_bytes).unwrap();
            weights.push((bytes, ranges));
        }
    }
    for (bytes, ranges) in &weights {
        for &(start, end) in ranges {
            assert!(end - start <= chunk_bytes);
            for piece in bytes[start as usize..end as usize].chunks(piece) {
                conv.feed(piece).unwrap();
                shards.extend(conv.take_ready().into_iter().map(|(e, b)| (e.file, b)));
            }
        }
    }
    let done = conv.finish().unwrap();
    shards.extend(done.shards.into_iter().map(|(e, b)| (e.file, b)));
    (done.manifest.to_json_pretty(), shards)
}

#[test]
fn piecewise_conversion_equals_the_cli_byte_for_byte() {
    for (quant, repo) in [(StorageType::Q8_0, "sd2-tiny"), (StorageType::F32, "sd2-tiny"), (StorageType::Q4_0, "sd1-tiny")] {
        let out = std::env::temp_dir().join(format!("easel-repo-{}-{repo}-{}", std::process::id(), quant.name()));
        let _ = fs::remove_dir_all(&out);
        convert(&fixture(repo), &out, &ConvertOptions { quant, shard_bytes: 256 << 10 }).unwrap();
        let (manifest, shards) = hub_like(&fixture(repo), quant, 256 << 10, 40_000, 777);
        assert_eq!(manifest, fs::read_to_string(out.join("manifest.json")).unwrap(), "{repo} {quant:?}");
        assert!(shards.len() > 2, "{repo}: {} shards", shards.len());
        for (file, bytes) in &shards {
            assert!(fs::read(out.join(file)).unwrap() == *bytes, "{repo} {quant:?}: {file} differs");
        }
        let _ = fs::remove_dir_all(&out);
    }
}

#[test]
fn missing_and_surplus_data_are_refused_by_name() {
    let path = fixture("sd2-tiny/vae/diffusion_pytorch_model.safetensors");
    let bytes = fs::read(&path).unwrap();
    let header = safetensors::parse("vae.safetensors", &bytes).unwrap();
    let plan = |conv: &mut RepoConverter| conv.add_weights("vae", "vae.safetensors", &header, bytes.len() as u64, 1 << 20).unwrap();

    let mut conv = RepoConverter::new("hub/sd2-tiny", "stable-diffusion", "t", StorageType::Q8_0, 1 << 20);
    let ranges = plan(&mut conv);
    let (start, end) = (ranges[0].0 as usize, ranges.last().unwrap().1 as usize);
    conv.feed(&bytes[start..end - 10]).unwrap();
    let last = header.tensors.keys().last().unwrap();
    let err = conv.finish().err().unwrap().to_string();
    assert!(err.contains("hub/sd2-tiny") && err.contains(&format!("tensor 'vae.{last}'")) && err.contains("never arrived"), "{err}");

    let mut conv = RepoConverter::new("hub/sd2-tiny", "stable-diffusion", "t", StorageType::Q8_0, 1 << 20);
    plan(&mut conv);
    let mut surplus = bytes[start..end].to_vec();
    surplus.extend_from_slice(&[0; 3]);
    let err = conv.feed(&surplus).unwrap_err().to_string();
    assert!(err.contains("3 bytes arrived after the last planned tensor"), "{err}");
}

#[test]
fn a_header_that_does_not_match_the_config_is_refused_before_any_data() {
    let mut conv = RepoConverter::new("hub/sd2-tiny", "stable-diffusion", "t", StorageType::Q8_0, 1 << 20);
    let mut cfg: serde_json::Value = serde_json::from_slice(&fs::read(fixture("sd2-tiny/unet/config.json")).unwrap()).unwrap();
    cfg["in_channels"] = 9.into();
    conv.add_config("unet", cfg);
    let bytes = fs::read(fixture("sd2-tiny/unet/diffusion_pytorch_model.safetensors")).unwrap();
    let header = safetensors::parse("unet.safetensors", &bytes).unwrap();
    let err = conv.add_weights("unet", "unet.safetensors", &header, bytes.len() as u64, 1 << 20).unwrap_err().to_string();
    assert!(err.contains("unet.conv_in.weight") && err.contains("config.json says 9"), "{err}");
}
