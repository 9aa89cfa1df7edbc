//! The SD-Turbo shape shared by the native and the browser full-size tests: the real
//! stable-diffusion-2-1-base configs with sd-turbo's scheduler, the tokenizer files, the
//! schema of every weight, and the 64x64 one-step request.

use std::collections::{BTreeMap, HashMap};

use easel::models::clip::ClipTextConfig;
use easel::models::schema;
use easel::models::unet::UNetConfig;
use easel::models::vae::VaeConfig;
use easel::ops::StorageType;
use easel::pipelines::Request;
use easel::weights::rules::storage_for;

const BASE: [(&str, &str); 3] = [
    ("text_encoder", include_str!("../fixtures/configs/stable-diffusion-2-1-base/text_encoder/config.json")),
    ("unet", include_str!("../fixtures/configs/stable-diffusion-2-1-base/unet/config.json")),
    ("vae", include_str!("../fixtures/configs/stable-diffusion-2-1-base/vae/config.json")),
];

/// Component configs, as a loaded model holds them.
pub fn configs() -> BTreeMap<String, serde_json::Value> {
    let mut configs: BTreeMap<String, serde_json::Value> = BASE.iter().map(|(c, text)| (c.to_string(), serde_json::from_str(text).unwrap())).collect();
    configs.insert("scheduler".into(), serde_json::from_str(include_str!("../fixtures/configs/sd-turbo/scheduler/scheduler_config.json")).unwrap());
    configs
}

/// The tokenizer files (every SD 2.x repository has the same CLIP vocabulary).
pub fn files() -> HashMap<String, Vec<u8>> {
    HashMap::from([
        ("tokenizer/tokenizer_config.json".to_string(), include_bytes!("../fixtures/configs/stable-diffusion-2-1-base/tokenizer/tokenizer_config.json").to_vec()),
        ("tokenizer/vocab.json".to_string(), include_bytes!("../fixtures/sd2-tiny/tokenizer/vocab.json").to_vec()),
    ])
}

/// Every weight's name and shape: text encoder, UNet, VAE.
pub fn weight_list(configs: &BTreeMap<String, serde_json::Value>) -> Vec<(String, Vec<usize>)> {
    let mut list = schema::clip_text(&ClipTextConfig::from_json(&configs["text_encoder"]).unwrap());
    list.extend(schema::unet(&UNetConfig::from_json(&configs["unet"]).unwrap()));
    list.extend(schema::vae(&VaeConfig::from_json(&configs["vae"]).unwrap()));
    list
}

/// The weight list with each tensor's storage as `easel convert --quant` would choose it.
pub fn weight_specs(configs: &BTreeMap<String, serde_json::Value>, quant: StorageType) -> Vec<(String, Vec<usize>, StorageType)> {
    weight_list(configs)
        .into_iter()
        .map(|(n, s)| {
            let storage = storage_for(&n, &s, false, quant);
            (n, s, storage)
        })
        .collect()
}

/// Where the CPU backend's q8_0 outputs are kept for the browser test (checked, and with
/// EASEL_WRITE_REFERENCE=1 rewritten, by turbo_native's `q8_0_cpu_reference_is_current`).
#[allow(dead_code)] // the browser test embeds the file by its path
pub const Q8_0_REFERENCE: &str = "tests/fixtures/turbo/q8_0_cpu.safetensors";

/// SD-Turbo's use: one trailing Euler step at t=999 without guidance, at 64x64.
pub fn request() -> Request {
    Request { prompt: "a photo of a cat".into(), steps: 1, guidance: 0.0, width: 64, height: 64, seed: 7, ..Request::default() }
}

#[allow(dead_code)] // each test binary uses a different part of this file
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}
