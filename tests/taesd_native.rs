//! The TAESD decoder (diffusers `AutoencoderTiny`) natively, on the CPU backend and the GPU
//! (lavapipe), against the taesd-tiny fixture's numpy reference (an independent float64
//! re-implementation of diffusers' formulas: torch is not available to make one); and its
//! weight schema against the fixture's checkpoint and the real TAESD config.

#![cfg(not(target_arch = "wasm32"))]

#[allow(dead_code)]
#[path = "sd/refs.rs"]
mod refs;
#[path = "sd/taesd.rs"]
mod taesd;

use easel::gpu::{GpuContext, GpuOptions};
use easel::models::schema::taesd_decoder;
use easel::models::taesd::TaesdConfig;
use easel::models::Session;
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
