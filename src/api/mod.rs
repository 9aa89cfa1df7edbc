//! The wasm-bindgen surface the Web Worker calls. Everything returns JSON strings or
//! errors whose message is meant for the person in front of the page.

use wasm_bindgen::prelude::*;

use crate::gpu::{self, GpuContext, GpuOptions};

/// Installs the panic hook so a Rust panic shows up in the console with its message.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The crate version.
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}

/// One engine per worker: owns the GPU device.
#[wasm_bindgen]
pub struct Engine {
    gpu: GpuContext,
}

#[wasm_bindgen]
impl Engine {
    /// Opens WebGPU. Fails with a message that says which browser or flag to use.
    pub async fn create() -> Result<Engine, JsError> {
        let gpu = GpuContext::new(&GpuOptions::default()).await.map_err(|e| JsError::new(&e.to_string()))?;
        Ok(Engine { gpu })
    }

    /// The adapter report as JSON (see `gpu::AdapterReport`).
    #[wasm_bindgen(js_name = adapterReport)]
    pub fn adapter_report(&self) -> String {
        serde_json::to_string(&self.gpu.report).unwrap_or_default()
    }

    /// Runs the GPU self-test (a small matmul checked against the CPU backend), JSON result.
    #[wasm_bindgen(js_name = selfTest)]
    pub async fn self_test(&self) -> Result<String, JsError> {
        let report = gpu::self_test(&self.gpu).await.map_err(|e| JsError::new(&e.to_string()))?;
        Ok(serde_json::to_string(&report).unwrap_or_default())
    }
}
