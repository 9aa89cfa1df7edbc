//! diffusers reference tensors and fixture runs, from bytes (shared by the native and the
//! browser suites; the browser gets the files through include_bytes!).

use std::collections::HashMap;

use easel::pipelines::{FloatImage, Request};
use easel::weights::safetensors::{self, SafeDType};

/// A reference tensor: shape and values (integers widened to f32).
pub struct Ref {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Every tensor of a `reference.safetensors`.
pub fn parse_references(name: &str, bytes: &[u8]) -> HashMap<String, Ref> {
    let header = safetensors::parse(name, bytes).unwrap();
    header
        .tensors
        .iter()
        .map(|(k, info)| {
            let raw = &bytes[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
            let values = match info.dtype {
                SafeDType::I64 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
                _ => safetensors::to_f32(name, k, info, raw).unwrap(),
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

fn image(r: &Ref) -> FloatImage {
    FloatImage { shape: r.shape.clone().try_into().unwrap(), values: r.values.clone() }
}

/// A fixture run (`reference.json` runs[i]) as a request: its prompts, steps, guidance,
/// effective scheduler config, size and every random draw diffusers made (LoRA fixtures
/// included: they keep latents only).
pub fn fixture_request(run: &serde_json::Value, refs: &HashMap<String, Ref>) -> Request {
    let name = run["name"].as_str().unwrap();
    let call = &run["call"];
    let first = |v: &serde_json::Value| v.as_array().and_then(|a| a[0].as_str()).unwrap_or("").to_string();
    let get = |k: &str| refs.get(&format!("{name}/{k}"));
    // The call's size, else the decoded image's (img2img takes the init image's).
    let size = |key: &str, axis: usize| call[key].as_u64().map_or_else(|| refs[&format!("{name}/decoded_raw")].shape[axis], |v| v as usize);
    Request {
        prompt: first(&call["prompt"]),
        negative_prompt: first(&call["negative_prompt"]),
        steps: call["num_inference_steps"].as_u64().unwrap() as usize,
        guidance: call["guidance_scale"].as_f64().unwrap() as f32,
        scheduler_config: Some(run["scheduler"].clone()),
        // diffusers' defaults: 0.8 for img2img, 1.0 for inpainting.
        strength: call["strength"].as_f64().unwrap_or(if call.get("mask_image").is_some() { 1.0 } else { 0.8 }) as f32,
        init_latents: get("init_latents").map(|r| r.values.clone()),
        posterior_noise: get("randn_draw_0").map(|r| r.values.clone()),
        image_noise: get("randn_draw_1").map(|r| r.values.clone()),
        init_image: get("init_image").map(image),
        mask: get("mask").map(image),
        height: size("height", 2),
        width: size("width", 3),
        ..Request::default()
    }
}
