//! The SDXL-Turbo shape, shared by the native and the browser full-size tests: configs
//! written from the published architecture (tests/fixtures/configs/sdxl-turbo, see
//! SOURCES.md), the tokenizer files, every weight from the builders' schema with the storage
//! `easel convert --quant q4_0` gives it, and Turbo's 1-step request.

#![allow(dead_code)] // each test binary uses a different part of this file

use std::collections::{BTreeMap, HashMap};

use easel::models::clip::ClipTextConfig;
use easel::models::schema;
use easel::models::unet::UNetConfig;
use easel::models::vae::VaeConfig;
use easel::ops::StorageType;
use easel::pipelines::Request;
use easel::weights::rules::storage_for;

macro_rules! cfg {
    ($path:literal) => {
        include_str!(concat!("../fixtures/configs/sdxl-turbo/", $path))
    };
}

const CONFIGS: [(&str, &str); 6] = [
    ("text_encoder", cfg!("text_encoder/config.json")),
    ("text_encoder_2", cfg!("text_encoder_2/config.json")),
    ("unet", cfg!("unet/config.json")),
    ("vae", cfg!("vae/config.json")),
    ("scheduler", cfg!("scheduler/scheduler_config.json")),
    ("model_index", cfg!("model_index.json")),
];

/// Component configs, as a loaded model holds them.
pub fn configs() -> BTreeMap<String, serde_json::Value> {
    CONFIGS.iter().map(|(c, text)| (c.to_string(), serde_json::from_str(text).unwrap())).collect()
}

/// Both tokenizers' files (CLIP's vocabulary; bigG's pads with '!').
pub fn files() -> HashMap<String, Vec<u8>> {
    let vocab = include_bytes!("../fixtures/sd2-tiny/tokenizer/vocab.json").to_vec();
    HashMap::from([
        ("tokenizer/tokenizer_config.json".to_string(), cfg!("tokenizer/tokenizer_config.json").as_bytes().to_vec()),
        ("tokenizer/vocab.json".to_string(), vocab.clone()),
        ("tokenizer_2/tokenizer_config.json".to_string(), cfg!("tokenizer_2/tokenizer_config.json").as_bytes().to_vec()),
        ("tokenizer_2/vocab.json".to_string(), vocab),
    ])
}

/// Every weight's name and shape: both text encoders, the UNet, the VAE.
pub fn weight_list(configs: &BTreeMap<String, serde_json::Value>) -> Vec<(String, Vec<usize>)> {
    let mut list = schema::clip_text(&ClipTextConfig::from_json(&configs["text_encoder"]).unwrap());
    list.extend(
        schema::clip_text_as(&ClipTextConfig::from_json(&configs["text_encoder_2"]).unwrap(), true)
            .into_iter()
            .map(|(n, s)| (n.replacen("text_encoder.", "text_encoder_2.", 1), s)),
    );
    list.extend(schema::unet(&UNetConfig::from_json(&configs["unet"]).unwrap()));
    list.extend(schema::vae(&VaeConfig::from_json(&configs["vae"]).unwrap()));
    list
}

/// The weight list with each tensor's storage as `easel convert --quant` gives it when
/// converting the repository's fp16 files (what a browser downloads, and Hub mode's "fp16
/// files first"): linear and conv weights in `quant`, norms and embeddings as they are (f16).
pub fn weight_specs(configs: &BTreeMap<String, serde_json::Value>, quant: StorageType) -> Vec<(String, Vec<usize>, StorageType)> {
    weight_list(configs)
        .into_iter()
        .map(|(n, s)| {
            let storage = storage_for(&n, &s, true, quant);
            (n, s, storage)
        })
        .collect()
}

/// SDXL-Turbo's use: one trailing Euler step without guidance, at `side` x `side`.
pub fn request(side: usize) -> Request {
    Request {
        steps: 1,
        guidance: 0.0,
        width: side,
        height: side,
        seed: 7,
        scheduler: Some("euler".into()),
        ..Request::new("a cinematic photo of a red fox in the snow, 一只狐狸 🦊")
    }
}

/// Where the CPU backend's q4_0 outputs at 64x64 are kept for the browser test (checked,
/// and with EASEL_WRITE_REFERENCE=1 rewritten, by sdxl_full_native).
pub const Q4_0_REFERENCE: &str = "tests/fixtures/sdxl_full/q4_0_cpu.safetensors";

/// ||a - b|| / ||b||.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}
