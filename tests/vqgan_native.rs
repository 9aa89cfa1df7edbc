//! VQ autoencoders natively against their PyTorch references (tests/fixtures): taming-transformers' VQModel (vqgan-taming-tiny: attention at 16 px,
//! Lightning .ckpt and .safetensors) and diffusers' VQModel (vqmodel-tiny, aMUSEd-like), on
//! the CPU backend and the GPU (lavapipe). Indices exact; latents, z_q and decodes within
//! relative error 1e-4. Then `easel vqgan encode` / `decode` as a user runs them.

#![cfg(not(target_arch = "wasm32"))]

#[allow(dead_code)]
#[path = "sd/refs.rs"]
mod refs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::vqgan::VqConfig;
use easel::models::Session;
use easel::models::{taming, yaml};
use easel::ops::{StorageType, WeightStore};
use easel::pipelines::native::{load_model_dir, read_int_tensor, read_tensor};
use easel::pipelines::vqgan::prepare;
use easel::pipelines::VqGan;
use refs::{parse_references, rel_err, Ref};

const TOL: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn references(case: &str) -> HashMap<String, Ref> {
    let path = fixture(case).join("reference.safetensors");
    parse_references(case, &std::fs::read(&path).unwrap())
}

/// The model at `path` as the CLI loads it: (config, `vqvae.*` weights).
fn load(path: &Path) -> (VqConfig, WeightStore) {
    let m = load_model_dir(path, StorageType::F32).unwrap();
    prepare(&m.family, &m.configs, m.weights).unwrap()
}

fn gpu() -> GpuContext {
    pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (install mesa-vulkan-drivers)")
}

fn session(store: &WeightStore, on_gpu: bool) -> Session {
    if on_gpu {
        Session::gpu(gpu(), store).unwrap()
    } else {
        Session::cpu(store.clone())
    }
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Prints and checks one float result against its reference.
fn close(case: &str, kind: &str, name: &str, got: &[f32], want: &Ref) {
    assert_eq!(got.len(), want.values.len(), "{case} {name}: length");
    let e = rel_err(got, &want.values);
    println!("{case} {name} [{kind}]: relative error {e:.2e}, max |diff| {:.2e}", max_abs(got, &want.values));
    assert!(e <= TOL, "{case} {name} on {kind}: relative error {e:e} > {TOL:e}");
}

fn exact(case: &str, kind: &str, name: &str, got: &[u32], want: &Ref) {
    let want: Vec<u32> = want.values.iter().map(|&v| v as u32).collect();
    let wrong = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    println!("{case} {name} [{kind}]: {wrong} of {} indices differ", want.len());
    assert_eq!(got, &want[..], "{case} {name} on {kind}");
}

fn shape4(r: &Ref) -> [usize; 4] {
    r.shape.clone().try_into().unwrap()
}

/// The reference's indices are the f64 argmin of the squared distances from its own
/// latents [1, D, h, w] to the codebook, by a margin (so exact agreement is no luck of
/// rounding); returns the smallest margin.
fn f64_margin(latents: &Ref, codebook: &[f32], indices: &Ref) -> f64 {
    let (d, hw) = (latents.shape[1], latents.shape[2] * latents.shape[3]);
    let mut margin = f64::INFINITY;
    for (p, &want) in indices.values.iter().enumerate() {
        let mut dist: Vec<(f64, usize)> =
            codebook.chunks(d).enumerate().map(|(k, e)| (e.iter().enumerate().map(|(c, &v)| (latents.values[c * hw + p] as f64 - v as f64).powi(2)).sum(), k)).collect();
        dist.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(dist[0].1, want as usize, "position {p}");
        margin = margin.min(dist[1].0 - dist[0].0);
    }
    margin
}

#[test]
fn reference_indices_are_the_nearest_codes_by_a_margin() {
    let taming = references("vqgan-taming-tiny");
    let m = f64_margin(&taming["encode/h"], &taming["codebook"].values, &taming["encode/indices"]);
    println!("vqgan-taming-tiny: smallest argmin margin {m:.3e}");
    assert!(m > 1e-4, "{m}");
    let (_, store) = load(&fixture("vqmodel-tiny"));
    let codebook = store.get("vqvae.quantize.embedding.weight").unwrap().to_f32();
    let vq = references("vqmodel-tiny");
    let m = f64_margin(&vq["encode/latents"], &codebook, &vq["quantize/indices"]);
    println!("vqmodel-tiny: smallest argmin margin {m:.3e}");
    assert!(m > 8e-5, "{m}");
}

fn taming_case(on_gpu: bool) {
    let case = "vqgan-taming-tiny";
    let refs = references(case);
    let (cfg, store) = load(&fixture(case));
    let mut vq = VqGan::new(session(&store, on_gpu), cfg);
    let kind = vq.session.kind();
    let image = &refs["encode/image"];
    let e = pollster::block_on(vq.encode(shape4(image), image.values.clone())).unwrap();
    assert_eq!(e.grid, [1, 16, 16]);
    close(case, kind, "encode/h", &e.latents, &refs["encode/h"]);
    exact(case, kind, "encode/indices", &e.indices, &refs["encode/indices"]);
    close(case, kind, "encode/quant", &e.z_q, &refs["encode/quant"]);
    close(case, kind, "decode_code/zq", &e.z_q, &refs["decode_code/zq"]);
    let codes = &refs["decode_code/codes"];
    let codes_u32: Vec<u32> = codes.values.iter().map(|&v| v as u32).collect();
    let out = pollster::block_on(vq.decode(codes.shape.clone().try_into().unwrap(), &codes_u32)).unwrap();
    close(case, kind, "decode_code/output", &out, &refs["decode_code/output"]);
    // model.decode(quant): quant is the codebook rows up to rounding, so the same decode.
    close(case, kind, "decode/output", &out, &refs["decode/output"]);
}

fn vqmodel_case(on_gpu: bool) {
    let case = "vqmodel-tiny";
    let refs = references(case);
    let (cfg, store) = load(&fixture(case));
    let mut vq = VqGan::new(session(&store, on_gpu), cfg);
    let kind = vq.session.kind();
    let image = &refs["encode/image"];
    let e = pollster::block_on(vq.encode(shape4(image), image.values.clone())).unwrap();
    assert_eq!(e.grid, [1, 8, 8]);
    close(case, kind, "encode/latents", &e.latents, &refs["encode/latents"]);
    exact(case, kind, "quantize/indices", &e.indices, &refs["quantize/indices"]);
    close(case, kind, "quantize/quant", &e.z_q, &refs["quantize/quant"]);
    let latents = &refs["encode/latents"];
    let out = pollster::block_on(vq.decode_latents(shape4(latents), latents.values.clone())).unwrap();
    close(case, kind, "decode/from_latents", &out, &refs["decode/from_latents"]);
    let codes = &refs["decode/codes"];
    let codes_u32: Vec<u32> = codes.values.iter().map(|&v| v as u32).collect();
    let out = pollster::block_on(vq.decode(codes.shape.clone().try_into().unwrap(), &codes_u32)).unwrap();
    close(case, kind, "decode/from_indices", &out, &refs["decode/from_indices"]);
}

#[test]
fn taming_vqgan_matches_the_reference_on_the_cpu() {
    taming_case(false);
}

#[test]
fn taming_vqgan_matches_the_reference_on_the_gpu() {
    taming_case(true);
}

#[test]
fn diffusers_vqmodel_matches_the_reference_on_the_cpu() {
    vqmodel_case(false);
}

#[test]
fn diffusers_vqmodel_matches_the_reference_on_the_gpu() {
    vqmodel_case(true);
}

#[test]
fn taming_ckpt_and_safetensors_load_the_same_weights() {
    let (_, from_ckpt) = load(&fixture("vqgan-taming-tiny/model.ckpt"));
    let (_, from_safetensors) = load(&fixture("vqgan-taming-tiny"));
    assert_eq!(from_ckpt.names(), from_safetensors.names());
    assert!(!from_ckpt.names().iter().any(|n| n.contains("loss")), "loss.* is training state");
    for n in from_ckpt.names() {
        let (a, b) = (from_ckpt.get(n).unwrap(), from_safetensors.get(n).unwrap());
        assert_eq!((&a.shape, &a.bytes), (&b.shape, &b.bytes), "{n}");
    }
    let codebook = &references("vqgan-taming-tiny")["codebook"];
    assert_eq!(from_ckpt.get("vqvae.quantize.embedding.weight").unwrap().to_f32(), codebook.values);
}

#[test]
fn taming_config_from_the_shapes_equals_the_yaml() {
    let (from_yaml, store) = load(&fixture("vqgan-taming-tiny"));
    let inferred = VqConfig::infer(&store).unwrap();
    assert_eq!(format!("{inferred:?}"), format!("{from_yaml:?}"));
    assert_eq!(from_yaml.vae.down_attention, vec![false, true]);
    assert_eq!(from_yaml.vae.up_attention, vec![true, false]);
    let yaml = std::fs::read_to_string(fixture("vqgan-taming-tiny/config.yaml")).unwrap();
    assert_eq!(format!("{:?}", taming::config_from_yaml(&yaml).unwrap()), format!("{from_yaml:?}"));
}

#[test]
fn bad_codes_and_images_are_refused_with_a_reason() {
    let (cfg, store) = load(&fixture("vqmodel-tiny"));
    let mut vq = VqGan::new(Session::cpu(store), cfg);
    let mut codes = vec![0u32; 64];
    codes[9] = 64;
    let err = pollster::block_on(vq.decode([1, 8, 8], &codes)).unwrap_err().to_string();
    assert_eq!(err, "request: index 64 at (batch 0, row 1, column 1) is outside the codebook (0..64)");
    let err = pollster::block_on(vq.decode([1, 8, 8], &codes[..10])).unwrap_err().to_string();
    assert!(err.contains("10 indices"), "{err}");
    let err = pollster::block_on(vq.encode([1, 3, 13, 16], vec![0.0; 3 * 13 * 16])).unwrap_err().to_string();
    assert!(err.contains("16x13") && err.contains("multiples of 2"), "{err}");
    let err = pollster::block_on(vq.encode([1, 4, 16, 16], vec![0.0; 4 * 256])).unwrap_err().to_string();
    assert!(err.contains("4 channels"), "{err}");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("vqmodel-tiny/config.json")).unwrap()).unwrap();
    cfg["norm_type"] = "spatial".into();
    let err = VqConfig::from_json(&cfg).unwrap_err().to_string();
    assert!(err.contains("norm_type"), "{err}");
}

#[test]
fn yaml_reader_takes_taming_configs() {
    let text = "model:\n  base_learning_rate: 4.5e-06   # lr\n  target: taming.models.vqgan.VQModel\n  params:\n    embed_dim: 8\n    ddconfig:\n      double_z: false\n      ch_mult:\n      - 1\n      - 2\n      attn_resolutions: [16]\n      empty: []\n      nested:\n        - 3\n    lossconfig:\n      target: 'a # b'\n";
    let v = yaml::parse(text).unwrap();
    let p = &v["model"]["params"];
    assert_eq!(v["model"]["base_learning_rate"].as_f64(), Some(4.5e-6));
    assert_eq!(p["embed_dim"], 8);
    assert_eq!(p["ddconfig"]["double_z"], false);
    assert_eq!(p["ddconfig"]["ch_mult"], serde_json::json!([1, 2]));
    assert_eq!(p["ddconfig"]["attn_resolutions"], serde_json::json!([16]));
    assert_eq!(p["ddconfig"]["empty"], serde_json::json!([]));
    assert_eq!(p["ddconfig"]["nested"], serde_json::json!([3]));
    assert_eq!(p["lossconfig"]["target"], "a # b");
}

#[test]
fn yaml_reader_names_the_line_it_cannot_read() {
    assert!(yaml::parse("a:\n  - b: 1\n").unwrap_err().contains("line 2"));
    assert!(yaml::parse("a: 1\n    b: 2\n").unwrap_err().contains("line 2"));
}

#[test]
fn keys_map_onto_diffusers_names() {
    let cases = [
        ("encoder.down.1.block.0.nin_shortcut.weight", "vqvae.encoder.down_blocks.1.resnets.0.conv_shortcut.weight"),
        ("encoder.down.1.attn.0.proj_out.bias", "vqvae.encoder.down_blocks.1.attentions.0.to_out.0.bias"),
        ("encoder.down.0.downsample.conv.weight", "vqvae.encoder.down_blocks.0.downsamplers.0.conv.weight"),
        ("encoder.mid.attn_1.norm.weight", "vqvae.encoder.mid_block.attentions.0.group_norm.weight"),
        ("decoder.mid.block_2.conv1.bias", "vqvae.decoder.mid_block.resnets.1.conv1.bias"),
        ("decoder.up.1.attn.1.q.weight", "vqvae.decoder.up_blocks.0.attentions.1.to_q.weight"),
        ("decoder.up.1.upsample.conv.weight", "vqvae.decoder.up_blocks.0.upsamplers.0.conv.weight"),
        ("decoder.up.0.block.2.norm2.weight", "vqvae.decoder.up_blocks.1.resnets.2.norm2.weight"),
        ("decoder.norm_out.bias", "vqvae.decoder.conv_norm_out.bias"),
        ("quantize.embedding.weight", "vqvae.quantize.embedding.weight"),
        ("post_quant_conv.weight", "vqvae.post_quant_conv.weight"),
    ];
    for (taming, diffusers) in cases {
        assert_eq!(taming::diffusers_name(taming, 2).as_deref(), Some(diffusers), "{taming}");
    }
    assert_eq!(taming::diffusers_name("loss.discriminator.main.0.weight", 2), None);
    assert_eq!(taming::levels(["decoder.up.3.block.0.conv1.weight", "decoder.up.10x.y", "encoder.down.7.block.0.conv1.weight"]), 4);
}

#[test]
fn attention_levels_follow_attn_resolutions() {
    // vqgan_imagenet_f16_16384: 256 px, five levels, attention at 16 px only.
    let text = "model:\n  target: taming.models.vqgan.VQModel\n  params:\n    embed_dim: 256\n    n_embed: 16384\n    ddconfig:\n      double_z: False\n      z_channels: 256\n      resolution: 256\n      in_channels: 3\n      out_ch: 3\n      ch: 128\n      ch_mult: [ 1,1,2,2,4]\n      num_res_blocks: 2\n      attn_resolutions: [16]\n      dropout: 0.0\n";
    let c = taming::config_from_yaml(text).unwrap();
    assert_eq!(c.vae.block_out_channels, vec![128, 128, 256, 256, 512]);
    assert_eq!(c.vae.down_attention, vec![false, false, false, false, true]);
    assert_eq!(c.vae.up_attention, vec![true, false, false, false, false]);
    assert_eq!((c.num_embeddings, c.embed_dim, c.vae.latent_channels), (16384, 256, 256));
    let err = taming::config_from_yaml(&text.replace("vqgan.VQModel", "vqgan.GumbelVQ")).unwrap_err().to_string();
    assert!(err.contains("GumbelVQ"), "{err}");
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("easel-vqgan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn easel(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_easel")).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn cli_encodes_and_decodes_the_taming_fixture() {
    let refs = references("vqgan-taming-tiny");
    let model = fixture("vqgan-taming-tiny");
    let image = &refs["encode/image"];
    // The file holds [0, 1]; the reference's input is [-1, 1].
    let unit: Vec<f32> = image.values.iter().map(|v| (v + 1.0) / 2.0).collect();
    let input = tmp("image.safetensors");
    easel::pipelines::native::write_tensors(&input, &[("image", &image.shape, &unit)]).unwrap();
    let (codes, png, raw) = (tmp("codes.safetensors"), tmp("out.png"), tmp("image-out.safetensors"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (ok, err) = easel(&["vqgan", "encode", "--model", &s(&model), "--image", &s(&input), "--out", &s(&codes), "--backend", "cpu"]);
    assert!(ok, "{err}");
    let (shape, indices) = read_int_tensor(&codes, "indices").unwrap();
    assert_eq!(shape, vec![1, 16, 16]);
    let want: Vec<i64> = refs["encode/indices"].values.iter().map(|&v| v as i64).collect();
    assert_eq!(indices, want);
    let (zq_shape, z_q) = read_tensor(&codes, "z_q").unwrap();
    assert_eq!(zq_shape, vec![1, 8, 16, 16]);
    close("cli", "cpu", "encode/quant", &z_q, &refs["encode/quant"]);

    let (ok, err) = easel(&["vqgan", "decode", "--model", &s(&model), "--codes", &s(&codes), "--out", &s(&png), "--save-image-tensor", &s(&raw), "--backend", "cpu"]);
    assert!(ok, "{err}");
    let (shape, decoded) = read_tensor(&raw, "image").unwrap();
    assert_eq!(shape, vec![1, 3, 32, 32]);
    close("cli", "cpu", "decode_code/output", &decoded, &refs["decode_code/output"]);
    let pixels = easel::pipelines::Rgba::from_png(&std::fs::read(&png).unwrap()).unwrap();
    assert_eq!(pixels, easel::pipelines::Rgba::from_nchw(&decoded, 32, 32));

    // Codes the model cannot have made are refused by name.
    let bad = tmp("bad-codes.safetensors");
    let mut out_of_range = want.clone();
    out_of_range[5] = 64;
    let values = easel::weights::safetensors::Values::I64(&out_of_range);
    easel::pipelines::native::write_values(&bad, &[("indices", &[1, 16, 16], values)]).unwrap();
    let (ok, err) = easel(&["vqgan", "decode", "--model", &s(&model), "--codes", &s(&bad), "--out", &s(&png), "--backend", "cpu"]);
    assert!(!ok && err.contains("error: request: index 64 at (batch 0, row 0, column 5) is outside the codebook (0..64)"), "{err}");
    let (ok, err) = easel(&["vqgan", "decode", "--model", &s(&model), "--codes", &s(&raw), "--out", &s(&png), "--backend", "cpu"]);
    assert!(!ok && err.contains("no tensor 'indices'"), "{err}");
    easel::pipelines::native::write_tensors(&bad, &[("indices", &[1, 16, 16], &[0.0; 256])]).unwrap();
    let (ok, err) = easel(&["vqgan", "decode", "--model", &s(&model), "--codes", &s(&bad), "--out", &s(&png), "--backend", "cpu"]);
    assert!(!ok && err.contains("'indices' is F32; it must be an integer tensor"), "{err}");
    let (ok, err) = easel(&["vqgan", "encode", "--model", &s(&model), "--image", &s(&codes), "--out", &s(&bad), "--backend", "cpu"]);
    assert!(!ok && err.contains("no tensor 'image'"), "{err}");

    // A PNG in, and the model as `easel convert` writes it: the same decode, bit for bit.
    let (ok, err) = easel(&["vqgan", "encode", "--model", &s(&model), "--image", &s(&png), "--out", &s(&bad), "--backend", "cpu"]);
    assert!(ok, "{err}");
    assert_eq!(read_int_tensor(&bad, "indices").unwrap().0, vec![1, 16, 16]);
    let converted = tmp("taming-converted");
    let (ok, err) = easel(&["convert", &s(&model.join("model.ckpt")), "--out", &s(&converted), "--quant", "f32"]);
    assert!(ok, "{err}");
    let raw2 = tmp("image-converted.safetensors");
    let (ok, err) = easel(&["vqgan", "decode", "--model", &s(&converted), "--codes", &s(&codes), "--out", &s(&png), "--save-image-tensor", &s(&raw2), "--backend", "cpu"]);
    assert!(ok, "{err}");
    assert_eq!(read_tensor(&raw2, "image").unwrap().1, decoded);
}

#[test]
fn cli_encodes_with_a_converted_diffusers_vqmodel() {
    let refs = references("vqmodel-tiny");
    let converted = tmp("vqmodel-converted");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (ok, err) = easel(&["convert", &s(&fixture("vqmodel-tiny")), "--out", &s(&converted), "--quant", "f32"]);
    assert!(ok, "{err}");
    let image = &refs["encode/image"];
    let unit: Vec<f32> = image.values.iter().map(|v| (v + 1.0) / 2.0).collect();
    let (input, codes) = (tmp("vq-image.safetensors"), tmp("vq-codes.safetensors"));
    easel::pipelines::native::write_tensors(&input, &[("image", &image.shape, &unit)]).unwrap();
    let (ok, err) = easel(&["vqgan", "encode", "--model", &s(&converted), "--image", &s(&input), "--out", &s(&codes), "--backend", "cpu"]);
    assert!(ok, "{err}");
    let want: Vec<i64> = refs["quantize/indices"].values.iter().map(|&v| v as i64).collect();
    assert_eq!(read_int_tensor(&codes, "indices").unwrap(), (vec![1, 8, 8], want));
    close("cli", "cpu", "quantize/quant", &read_tensor(&codes, "z_q").unwrap().1, &refs["quantize/quant"]);
}
