//! The page's animation export: a walk's or morph's frames as one animated PNG or GIF,
//! written by the same encoders as `easel morph` (`pipelines::animation`, `pipelines::gif`).

use wasm_bindgen::prelude::*;

use crate::pipelines::animation::encode_apng;
use crate::pipelines::gif::encode_gif;
use crate::pipelines::Rgba;

/// `frames` RGBA images of `width` x `height`, concatenated in `rgba`, as an APNG that loops,
/// `delay_ms` per frame, with `text_json` (an object of string values) as its text chunks.
#[wasm_bindgen(js_name = encodeApng)]
pub fn encode_apng_js(width: usize, height: usize, rgba: &[u8], delay_ms: u16, text_json: &str) -> Result<Vec<u8>, JsError> {
    let frame = width * height * 4;
    if frame == 0 || !rgba.len().is_multiple_of(frame) {
        return Err(JsError::new(&format!("{} bytes are not whole {width}x{height} RGBA frames", rgba.len())));
    }
    let text: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text_json).map_err(|e| JsError::new(&format!("animation text: {e}")))?;
    let text: Vec<(&str, String)> = text.iter().map(|(k, v)| (k.as_str(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect();
    let frames: Vec<Rgba> = rgba.chunks(frame).map(|c| Rgba { width, height, data: c.to_vec() }).collect();
    encode_apng(&frames, delay_ms, &text).map_err(|e| JsError::new(&e))
}

/// The same frames as a looping GIF (256 colours per frame), `comment` in its comment block.
#[wasm_bindgen(js_name = encodeGif)]
pub fn encode_gif_js(width: usize, height: usize, rgba: &[u8], delay_ms: u16, comment: &str) -> Result<Vec<u8>, JsError> {
    let frame = width * height * 4;
    if frame == 0 || !rgba.len().is_multiple_of(frame) {
        return Err(JsError::new(&format!("{} bytes are not whole {width}x{height} RGBA frames", rgba.len())));
    }
    let frames: Vec<Rgba> = rgba.chunks(frame).map(|c| Rgba { width, height, data: c.to_vec() }).collect();
    encode_gif(&frames, delay_ms, comment).map_err(|e| JsError::new(&e))
}
