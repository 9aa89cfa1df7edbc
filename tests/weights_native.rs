//! Converter and folder loader on the fixture models: round trips, and every bad input
//! refused with a message that names what is wrong.

#![cfg(not(target_arch = "wasm32"))]

use std::fs;
use std::path::{Path, PathBuf};

use easel::ops::quant;
use easel::ops::StorageType;
use easel::weights::convert::{convert, quantizable, ConvertOptions};
use easel::weights::folder::load_folder;
use easel::weights::safetensors;

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(p)
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("easel-weights-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

/// Every float tensor of a safetensors file, by name.
fn source_tensors(path: &Path, prefix: &str) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = fs::read(path).unwrap();
    let h = safetensors::parse("src", &bytes).unwrap();
    h.tensors
        .iter()
        .map(|(n, info)| {
            let raw = &bytes[(h.data_start + info.begin) as usize..(h.data_start + info.end) as usize];
            (format!("{prefix}{n}"), info.shape.clone(), safetensors::to_f32("src", n, info, raw).unwrap())
        })
        .collect()
}

fn check_round_trip(source: &Path, sources: &[(String, Vec<usize>, Vec<f32>)], quant_type: StorageType) {
    let out = out_dir(&format!("{}-{}", source.file_name().unwrap().to_string_lossy(), quant_type.name()));
    // Small shards so that tensors span shard boundaries.
    let summary = convert(source, &out, &ConvertOptions { quant: quant_type, shard_bytes: 256 << 10 }).unwrap();
    assert!(summary.shards > 1 || summary.output_bytes < 256 << 10);
    let (manifest, store) = load_folder(&out).unwrap();
    assert_eq!(manifest.tensors.len(), sources.len());
    for (name, shape, values) in sources {
        let w = store.get(name).unwrap();
        assert_eq!(&w.shape, shape, "{name}");
        let got = w.to_f32();
        if w.storage.is_quantized() {
            assert!(quantizable(name, shape));
            // Exactly the GGML blocks of the source values.
            assert_eq!(got, quant::dequantize(w.storage, &quant::quantize(w.storage, values)), "{name}");
        } else {
            assert_eq!(&got, values, "{name} ({:?}) must round-trip exactly", w.storage);
        }
    }
    let _ = fs::remove_dir_all(&out);
}

#[test]
fn diffusers_repo_round_trips_in_every_storage_type() {
    let repo = fixture("sd2-tiny");
    let mut sources = Vec::new();
    for (component, file) in [("text_encoder", "model.safetensors"), ("unet", "diffusion_pytorch_model.safetensors"), ("vae", "diffusion_pytorch_model.safetensors")] {
        sources.extend(source_tensors(&repo.join(component).join(file), &format!("{component}.")));
    }
    for q in [StorageType::F32, StorageType::Q8_0, StorageType::Q4_0] {
        check_round_trip(&repo, &sources, q);
    }
}

#[test]
fn diffusers_component_round_trips() {
    let dir = fixture("vqmodel-tiny");
    let sources = source_tensors(&dir.join("diffusion_pytorch_model.safetensors"), "vqvae.");
    check_round_trip(&dir, &sources, StorageType::Q8_0);
}

#[test]
fn taming_checkpoint_converts_natively() {
    let ckpt = fixture("vqgan-taming-tiny/model.ckpt");
    let reference = candle_core::pickle::read_all_with_key(&ckpt, Some("state_dict")).unwrap();
    let sources: Vec<_> =
        reference.into_iter().filter(|(n, _)| !n.starts_with("loss.")).map(|(n, t)| (n, t.dims().to_vec(), t.flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect();
    check_round_trip(&ckpt, &sources, StorageType::F32);
    let out = out_dir("taming-config");
    convert(&ckpt, &out, &ConvertOptions { quant: StorageType::Q4_0, shard_bytes: 32 << 20 }).unwrap();
    let (manifest, _) = load_folder(&out).unwrap();
    assert!(manifest.configs["taming"]["yaml"].as_str().unwrap().contains("n_embed: 64"));
    assert!(manifest.tensors.iter().any(|t| t.storage == StorageType::Q4_0));
}

fn converted(name: &str) -> PathBuf {
    let out = out_dir(name);
    convert(&fixture("vqmodel-tiny"), &out, &ConvertOptions { quant: StorageType::Q8_0, shard_bytes: 128 << 10 }).unwrap();
    out
}

#[test]
fn corrupt_truncated_or_missing_shards_are_refused_by_name() {
    let out = converted("corrupt");
    let shard = out.join("shard-00001.bin");
    let mut bytes = fs::read(&shard).unwrap();
    bytes[100] ^= 0x40;
    fs::write(&shard, &bytes).unwrap();
    let err = load_folder(&out).unwrap_err().to_string();
    assert!(err.contains("shard-00001.bin") && err.contains("sha256 mismatch"), "{err}");

    bytes[100] ^= 0x40;
    fs::write(&shard, &bytes[..bytes.len() - 10]).unwrap();
    let err = load_folder(&out).unwrap_err().to_string();
    assert!(err.contains("shard-00001.bin") && err.contains("truncated"), "{err}");

    fs::remove_file(&shard).unwrap();
    let err = load_folder(&out).unwrap_err().to_string();
    assert!(err.contains("shard-00001.bin") && err.contains("cannot be read"), "{err}");
    let _ = fs::remove_dir_all(&out);
}

#[test]
fn bad_manifests_are_refused() {
    let out = converted("manifest");
    let path = out.join("manifest.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    v["format_version"] = 7.into();
    fs::write(&path, v.to_string()).unwrap();
    assert!(load_folder(&out).unwrap_err().to_string().contains("format version 7 is not supported"));

    v["format_version"] = 1.into();
    v["tensors"].as_array_mut().unwrap().remove(0);
    fs::write(&path, v.to_string()).unwrap();
    assert!(load_folder(&out).unwrap_err().to_string().contains("content hash mismatch"));
    let _ = fs::remove_dir_all(&out);

    let out = converted("missing-tensor");
    let (_, store) = load_folder(&out).unwrap();
    assert!(store.get("vqvae.decoder.no_such_layer.weight").unwrap_err().to_string().contains("'vqvae.decoder.no_such_layer.weight' is missing"));
    let _ = fs::remove_dir_all(&out);
}

#[test]
fn unconvertible_sources_say_why() {
    let tmp = out_dir("unknown-arch");
    fs::create_dir_all(&tmp).unwrap();
    fs::write(tmp.join("model_index.json"), r#"{"_class_name": "FluxPipeline"}"#).unwrap();
    let err = convert(&tmp, &tmp.join("out"), &ConvertOptions { quant: StorageType::Q8_0, shard_bytes: 1 << 20 }).unwrap_err().to_string();
    assert!(err.contains("unknown architecture 'FluxPipeline'"), "{err}");
    fs::write(tmp.join("model_index.json"), r#"{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}"#).unwrap();
    let err = convert(&tmp, &tmp.join("out"), &ConvertOptions { quant: StorageType::Q8_0, shard_bytes: 1 << 20 }).unwrap_err().to_string();
    assert!(err.contains("component 'unet'") && err.contains("folder is missing"), "{err}");
    // A config that disagrees with the weights names the tensor.
    let comp = out_dir("bad-shape");
    fs::create_dir_all(&comp).unwrap();
    fs::copy(fixture("vqmodel-tiny/diffusion_pytorch_model.safetensors"), comp.join("diffusion_pytorch_model.safetensors")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_slice(&fs::read(fixture("vqmodel-tiny/config.json")).unwrap()).unwrap();
    cfg["in_channels"] = 5.into();
    fs::write(comp.join("config.json"), cfg.to_string()).unwrap();
    let err = convert(&comp, &comp.join("out"), &ConvertOptions { quant: StorageType::Q8_0, shard_bytes: 1 << 20 }).unwrap_err().to_string();
    assert!(err.contains("vqvae.encoder.conv_in.weight") && err.contains("config.json says 5"), "{err}");
    let _ = fs::remove_dir_all(&tmp);
    let _ = fs::remove_dir_all(&comp);
}

#[test]
fn ddpm_repo_round_trips() {
    let repo = fixture("ddpm-tiny");
    let sources = source_tensors(&repo.join("unet/diffusion_pytorch_model.safetensors"), "unet.");
    check_round_trip(&repo, &sources, StorageType::Q4_0);
}
