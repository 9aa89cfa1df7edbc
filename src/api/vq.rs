//! VQ models in the page: an image to its code grid and back (the round-trip panel), and
//! any edited grid decoded (randomized or swapped codes).

use js_sys::{Object, Uint32Array};
use wasm_bindgen::prelude::*;

use super::generate::{image_object, set};
use super::Engine;
use crate::pipelines::{Generator, Rgba, VqGan};

fn err(e: impl ToString) -> JsError {
    JsError::new(&e.to_string())
}

impl Engine {
    fn vq(&mut self) -> Result<&mut VqGan, JsError> {
        match self.pipeline()? {
            Generator::Vq(v) => Ok(v),
            _ => Err(JsError::new("the loaded model is not a VQ model (VQGAN or VQModel)")),
        }
    }
}

#[wasm_bindgen]
impl Engine {
    /// Encodes an RGBA image (`width` x `height`, multiples of the model's downscale) to its
    /// code grid, and decodes that grid again. Resolves to `{gridWidth, gridHeight, codes,
    /// indices: Uint32Array (row-major), image: {width, height, rgba}}`.
    #[wasm_bindgen(js_name = vqEncode)]
    pub async fn vq_encode(&mut self, rgba: Vec<u8>, width: usize, height: usize) -> Result<JsValue, JsError> {
        if rgba.len() != width * height * 4 {
            return Err(JsError::new(&format!("{} bytes are not a {width}x{height} RGBA image", rgba.len())));
        }
        let image = Rgba { width, height, data: rgba }.to_float_rgb();
        let v = self.vq()?;
        let codes = v.cfg.num_embeddings;
        let encoded = v.encode_image(&image).await.map_err(err)?;
        let [_, gh, gw] = encoded.grid;
        let decoded = v.decode(encoded.grid, &encoded.indices).await.map_err(err)?;
        let out = Object::new();
        set(&out, "gridWidth", gw as u32);
        set(&out, "gridHeight", gh as u32);
        set(&out, "codes", codes as u32);
        set(&out, "indices", Uint32Array::from(encoded.indices.as_slice()));
        set(&out, "image", image_object(&Rgba::from_nchw(&decoded, width, height)));
        Ok(out.into())
    }

    /// Decodes a code grid (`indices` row-major, `grid_width` x `grid_height`) to
    /// `{width, height, rgba}`. Codes outside the codebook are refused with their position.
    #[wasm_bindgen(js_name = vqDecode)]
    pub async fn vq_decode(&mut self, indices: Vec<u32>, grid_width: usize, grid_height: usize) -> Result<JsValue, JsError> {
        let v = self.vq()?;
        let f = v.cfg.downscale();
        let decoded = v.decode([1, grid_height, grid_width], &indices).await.map_err(err)?;
        Ok(image_object(&Rgba::from_nchw(&decoded, grid_width * f, grid_height * f)).into())
    }
}
