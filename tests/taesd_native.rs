//! The TAESD decoder (diffusers `AutoencoderTiny`) natively, on the CPU backend and the GPU
//! (lavapipe), against the taesd-tiny fixture's numpy reference (an independent float64
//! re-implementation of diffusers' formulas: torch is not available to make one); and its
//! weight schema against the fixture's checkpoint and the real TAESD config; `easel convert
//! --taesd` and the pipeline's per-step previews with and without it.

#![cfg(not(target_arch = "wasm32"))]

#[allow(dead_code)]
#[path = "sd/refs.rs"]
mod refs;
#[path = "sd/taesd.rs"]
mod taesd;

use std::path::{Path, PathBuf};

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::schema::taesd_decoder;
use easel::models::taesd::TaesdConfig;
use easel::models::Session;
use easel::ops::StorageType;
use easel::pipelines::native::load_model_dir;
use easel::pipelines::{generate, Output, Progress, Request, Rgba, StableDiffusion};
use easel::weights::convert::{convert_with_taesd, ConvertOptions};
use easel::weights::folder::load_folder;
use refs::{parse_references, rel_err};
use taesd::{taesd_errors, taesd_store, TAESD_TOL};

const CONFIG: &str = include_str!("fixtures/taesd-tiny/config.json");
const WEIGHTS: &[u8] = include_bytes!("fixtures/taesd-tiny/diffusion_pytorch_model.safetensors");
const REFERENCE: &[u8] = include_bytes!("fixtures/taesd-tiny/reference.safetensors");

fn check(mut session: Session) {
    let kind = session.kind();
    for (case, e) in pollster::block_on(taesd_errors(&mut session, CONFIG, REFERENCE)) {
        println!("taesd-tiny {case} [{kind}]: relative error {e:.2e}");
        assert!(e <= TAESD_TOL, "taesd-tiny {case} on {kind}: relative error {e:e} > {TAESD_TOL:e}");
    }
}

#[test]
fn taesd_decoder_matches_the_reference_on_the_cpu() {
    check(Session::cpu(taesd_store(WEIGHTS)));
}

#[test]
fn taesd_decoder_matches_the_reference_on_the_gpu() {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (install mesa-vulkan-drivers)");
    check(Session::gpu(ctx, &taesd_store(WEIGHTS)).unwrap());
}

#[test]
fn the_schema_lists_exactly_the_fixture_decoder_tensors() {
    let cfg = TaesdConfig::from_json(&serde_json::from_str(CONFIG).unwrap()).unwrap();
    let store = taesd_store(WEIGHTS);
    let mut want: Vec<(String, Vec<usize>)> = store.names().iter().map(|n| (n.to_string(), store.get(n).unwrap().shape.clone())).collect();
    let mut got = taesd_decoder(&cfg);
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn the_real_taesd_config_gives_its_1_2m_parameter_decoder() {
    let cfg = TaesdConfig::from_json(&serde_json::from_str(include_str!("fixtures/configs/taesd/config.json")).unwrap()).unwrap();
    assert_eq!(cfg.upscale(), 8);
    let schema = taesd_decoder(&cfg);
    let shape = |n: &str| schema.iter().find(|(name, _)| name == &format!("taesd.decoder.layers.{n}")).map(|(_, s)| s.clone());
    // Counted by hand from DecoderTiny: conv_in 4->64 with bias, ten 64-wide blocks of three
    // biased 3x3 convs, three bias-free 3x3 convs after the upsamples, conv_out 64->3.
    let conv = 64 * 64 * 9;
    let want = (4 * 64 * 9 + 64) + 10 * 3 * (conv + 64) + 3 * conv + (64 * 3 * 9 + 3);
    assert_eq!(want, 1_222_531);
    assert_eq!(schema.iter().map(|(_, s)| s.iter().product::<usize>()).sum::<usize>(), want);
    assert_eq!(shape("0.weight"), Some(vec![64, 4, 3, 3]));
    assert_eq!(shape("2.conv.4.weight"), Some(vec![64, 64, 3, 3]));
    assert_eq!(shape("17.conv.0.bias"), Some(vec![64]));
    assert_eq!(shape("18.weight"), Some(vec![3, 64, 3, 3]));
    for n in [1, 5, 10, 15] {
        assert_eq!(shape(&format!("{n}.weight")), None, "layer {n} is a ReLU or an Upsample");
    }
    for n in [6, 11, 16] {
        assert_eq!(shape(&format!("{n}.weight")), Some(vec![64, 64, 3, 3]));
        assert_eq!(shape(&format!("{n}.bias")), None, "the conv after upsample {n} has no bias");
    }
}

#[test]
fn unsupported_taesd_configs_are_refused_by_key() {
    let base: serde_json::Value = serde_json::from_str(CONFIG).unwrap();
    for (key, value, says) in [
        ("act_fn", serde_json::json!("silu"), "act_fn"),
        ("upsample_fn", serde_json::json!("bilinear"), "upsample_fn"),
        ("decoder_block_out_channels", serde_json::json!([8, 8, 16, 8]), "decoder_block_out_channels"),
        ("num_decoder_blocks", serde_json::json!([3, 3, 1]), "num_decoder_blocks"),
    ] {
        let mut cfg = base.clone();
        cfg[key] = value;
        let err = TaesdConfig::from_json(&cfg).unwrap_err().to_string();
        assert!(err.contains(says), "{key}: {err}");
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// sd2-tiny converted as `easel convert --taesd taesd-tiny-2x` does, into a fresh folder.
fn convert_sd2_tiny(taesd: Option<&str>, tag: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!("easel-taesd-{tag}-{}", std::process::id()));
    let taesd = taesd.map(fixture);
    convert_with_taesd(&fixture("sd2-tiny"), taesd.as_deref(), &out, &ConvertOptions { quant: StorageType::F32, shard_bytes: 32 << 20 }).unwrap();
    out
}

#[test]
fn convert_adds_the_taesd_decoder_and_leaves_the_rest_as_it_was() {
    let (with, _) = load_folder(&convert_sd2_tiny(Some("taesd-tiny-2x"), "with")).unwrap();
    let (without, _) = load_folder(&convert_sd2_tiny(None, "without")).unwrap();
    assert_eq!(with.configs["taesd"]["_class_name"], "AutoencoderTiny");
    assert!(!without.configs.contains_key("taesd"));
    // Only the decoder comes along (the fixture file also holds an encoder).
    let taesd: Vec<(String, Vec<usize>)> = with.tensors.iter().filter(|t| t.name.starts_with("taesd.")).map(|t| (t.name.clone(), t.shape.clone())).collect();
    let cfg = TaesdConfig::from_json(&with.configs["taesd"]).unwrap();
    let mut schema = taesd_decoder(&cfg);
    schema.sort();
    assert_eq!(taesd, schema);
    // TAESD comes last, so every other tensor keeps its place in the shards.
    let rest: Vec<_> = with.tensors.iter().filter(|t| !t.name.starts_with("taesd.")).collect();
    assert_eq!(rest, without.tensors.iter().collect::<Vec<_>>());
}

#[test]
fn convert_refuses_a_taesd_folder_that_is_not_autoencoder_tiny() {
    let out = std::env::temp_dir().join(format!("easel-taesd-bad-{}", std::process::id()));
    let options = ConvertOptions { quant: StorageType::F32, shard_bytes: 32 << 20 };
    let vae = fixture("sd2-tiny").join("vae");
    let err = convert_with_taesd(&fixture("sd2-tiny"), Some(&vae), &out, &options).unwrap_err().to_string();
    assert!(err.contains("AutoencoderTiny") && err.contains("AutoencoderKL"), "{err}");
    let err = convert_with_taesd(&vae, Some(&fixture("taesd-tiny-2x")), &out, &options).unwrap_err().to_string();
    assert!(err.contains("model_index.json"), "{err}");
}

/// Every step's preview (kind, image) of a 2-step sd2-tiny generation, and the output.
fn previews(sd: &mut StableDiffusion) -> (Vec<(&'static str, Rgba)>, Output) {
    let req = Request { prompt: "a red house".into(), steps: 2, width: 16, height: 16, previews: true, ..Request::default() };
    let mut seen = vec![];
    let out = pollster::block_on(generate(sd, &req, &mut |p| {
        if let Progress::Step { preview: Some(p), .. } = p {
            seen.push((p.kind, p.image));
        }
        true
    }))
    .unwrap();
    (seen, out)
}

#[test]
fn a_model_with_taesd_previews_with_it_and_one_without_falls_back() {
    for backend in ["cpu", "gpu"] {
        let m = load_model_dir(&convert_sd2_tiny(Some("taesd-tiny-2x"), backend), StorageType::F32).unwrap();
        let session = match backend {
            "gpu" => Session::gpu(pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter"), &m.weights).unwrap(),
            _ => Session::cpu(m.weights),
        };
        let mut sd = StableDiffusion::new(session, &m.configs, &m.files).unwrap();
        // The pipeline's decode (scaling and shift applied) against the numpy reference.
        let refs = parse_references("taesd-tiny-2x", &std::fs::read(fixture("taesd-tiny-2x").join("reference.safetensors")).unwrap());
        let got = pollster::block_on(sd.preview_decode([1, 4, 8, 8], &refs["square.latents"].values)).unwrap().unwrap();
        let e = rel_err(&got, &refs["square.decoded"].values);
        println!("taesd-tiny-2x through StableDiffusion::preview_decode [{backend}]: relative error {e:.2e}");
        assert!(e <= TAESD_TOL, "{backend}: {e:e}");

        let (seen, out) = previews(&mut sd);
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|(kind, img)| *kind == "taesd" && (img.width, img.height) == (16, 16)));
        // The last preview is TAESD's picture of the final latents.
        let last = pollster::block_on(sd.preview_decode([1, 4, 8, 8], &out.latents)).unwrap().unwrap();
        assert_eq!(seen[1].1.data, Rgba::from_nchw(&last, 16, 16).data, "{backend}");
    }
    let m = load_model_dir(&fixture("sd2-tiny"), StorageType::F32).unwrap();
    let mut sd = StableDiffusion::new(Session::cpu(m.weights), &m.configs, &m.files).unwrap();
    let (seen, _) = previews(&mut sd);
    assert!(seen.len() == 2 && seen.iter().all(|(kind, _)| *kind == "latent"));
}

#[test]
fn a_taesd_that_does_not_fit_the_vae_is_refused_on_load() {
    // taesd-tiny upscales 8x; sd2-tiny's VAE 2x.
    let m = load_model_dir(&convert_sd2_tiny(Some("taesd-tiny"), "misfit"), StorageType::F32).unwrap();
    let err = StableDiffusion::new(Session::cpu(m.weights), &m.configs, &m.files).err().expect("refused").to_string();
    assert!(err.contains("does not fit") && err.contains("8x") && err.contains("2x"), "{err}");
}
