//! `Engine.benchUnet`: one UNet step of the SD-Turbo shape (random full-size weights), or one
//! decode of SD's VAE decoder, in the browser, on the backend the engine picked, with peak
//! bytes.

use wasm_bindgen::prelude::*;

use super::Engine;
use crate::bench::decoder::{decode_time, sd_vae_decoder_weights};
use crate::bench::unet::{sd_turbo_unet_weights, unet_step};
use crate::error::OpError;
use crate::models::Session;
use crate::ops::{BackendKind, StorageType};

#[wasm_bindgen]
impl Engine {
    /// `options`: JSON `{size, quant ("f32"|"q8_0"|"q4_0"), batch, runs, profile, part
    /// ("unet", the default, or "vae": the decoder)}`. Weights are made
    /// in wasm (the CPU backend keeps them there; q8_0 is 0.9 GB, f32 would not fit wasm's
    /// 4 GiB next to the work buffers). Resolves to the `bench::unet::UnetStep` JSON.
    #[wasm_bindgen(js_name = benchUnet)]
    pub async fn bench_unet(&self, options: String) -> Result<String, JsError> {
        let v: serde_json::Value = serde_json::from_str(&options).map_err(|e| JsError::new(&format!("bench options: {e}")))?;
        let size = v["size"].as_u64().unwrap_or(256) as usize;
        let storage = match v["quant"].as_str().unwrap_or("q8_0") {
            "f32" => StorageType::F32,
            "q4_0" => StorageType::Q4_0,
            _ => StorageType::Q8_0,
        };
        let decoder = match v["part"].as_str().unwrap_or("unet") {
            "unet" => false,
            "vae" => true,
            other => return Err(JsError::new(&format!("bench part '{other}': expected unet or vae"))),
        };
        let session = |store| -> Result<Session, JsError> {
            Ok(match (self.choice.kind, &self.gpu) {
                (BackendKind::Gpu, Some(ctx)) => Session::gpu(ctx.clone(), &store).map_err(|e| JsError::new(&e.to_string()))?,
                _ => Session::cpu(store),
            })
        };
        let batch = v["batch"].as_u64().unwrap_or(1) as usize;
        let runs = v["runs"].as_u64().unwrap_or(1).max(1) as usize;
        let profile = v["profile"].as_bool().unwrap_or(false);
        let failed = |e: OpError| JsError::new(&e.to_string());
        let r = if decoder {
            let (cfg, store) = sd_vae_decoder_weights(storage).map_err(failed)?;
            decode_time(&mut session(store)?, &cfg, size, batch, runs, storage, profile).await.map_err(failed)?
        } else {
            let (cfg, store) = sd_turbo_unet_weights(storage).map_err(failed)?;
            unet_step(&mut session(store)?, &cfg, size, batch, runs, storage, profile).await.map_err(failed)?
        };
        Ok(serde_json::to_string(&r).unwrap_or_default())
    }
}
