//! The wasm-bindgen surface the Web Worker calls. Everything returns JSON strings or
//! errors whose message is meant for the person in front of the page.

use wasm_bindgen::prelude::*;

use crate::gpu::{self, GpuContext, GpuOptions};
use crate::ops::{choose_backend, BackendChoice, BackendPreference};

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

/// One engine per worker: the GPU device when there is one, and the backend choice.
#[wasm_bindgen]
pub struct Engine {
    gpu: Option<GpuContext>,
    gpu_error: Option<String>,
    choice: BackendChoice,
}

#[wasm_bindgen]
impl Engine {
    /// Opens WebGPU unless `backend` is "cpu", then picks the backend: "auto" (default)
    /// takes the GPU only when it is real hardware. Fails only when "gpu" was asked for and
    /// no GPU is usable, with a message that says which browser or flag to use.
    pub async fn create(backend: Option<String>) -> Result<Engine, JsError> {
        let pref: BackendPreference = backend.as_deref().unwrap_or("auto").parse().map_err(|e: String| JsError::new(&e))?;
        let (gpu, gpu_error) = if pref == BackendPreference::Cpu {
            (None, None)
        } else {
            match GpuContext::new(&GpuOptions::default()).await {
                Ok(ctx) => (Some(ctx), None),
                Err(e) => (None, Some(e.to_string())),
            }
        };
        let choice = choose_backend(pref, gpu.as_ref().map(|g| &g.report), gpu_error.as_deref()).map_err(|e| JsError::new(&e))?;
        Ok(Engine { gpu, gpu_error, choice })
    }

    /// The adapter report as JSON (see `gpu::AdapterReport`), or undefined without a GPU.
    #[wasm_bindgen(js_name = adapterReport)]
    pub fn adapter_report(&self) -> Option<String> {
        self.gpu.as_ref().map(|g| serde_json::to_string(&g.report).unwrap_or_default())
    }

    /// Why there is no GPU (a sentence for the user), or undefined.
    #[wasm_bindgen(js_name = gpuError)]
    pub fn gpu_error(&self) -> Option<String> {
        self.gpu_error.clone()
    }

    /// The backend that runs the models and why, as JSON `{kind, reason}`.
    pub fn backend(&self) -> String {
        serde_json::to_string(&self.choice).unwrap_or_default()
    }

    /// Runs the op benchmarks (see `bench`) on the GPU (if any) and the CPU backend.
    /// `options`: JSON `{runs, gpu, cpu, filter}`; `on_row` is called with each row's JSON as
    /// it is measured. Resolves to JSON `{rows, ceilings}`.
    #[wasm_bindgen(js_name = benchOps)]
    pub async fn bench_ops(&self, options: String, on_row: js_sys::Function) -> Result<String, JsError> {
        let v: serde_json::Value = serde_json::from_str(&options).map_err(|e| JsError::new(&format!("bench options: {e}")))?;
        let opts = crate::bench::BenchOptions {
            runs: v["runs"].as_u64().unwrap_or(1).max(1) as usize,
            gpu: v["gpu"].as_bool().unwrap_or(true),
            cpu: v["cpu"].as_bool().unwrap_or(true),
            filter: v["filter"].as_str().filter(|s| !s.is_empty()).map(String::from),
        };
        let gpu = self.gpu.as_ref();
        let rows = crate::bench::bench_ops(gpu, &opts, |r| {
            let _ = on_row.call1(&JsValue::NULL, &JsValue::from_str(&serde_json::to_string(r).unwrap_or_default()));
        })
        .await;
        let ceilings = crate::bench::ceilings(gpu, &rows, 64).await;
        Ok(serde_json::json!({ "rows": rows, "ceilings": ceilings }).to_string())
    }

    /// Runs the GPU self-test (a small matmul checked against the CPU backend), JSON result.
    #[wasm_bindgen(js_name = selfTest)]
    pub async fn self_test(&self) -> Result<String, JsError> {
        let ctx = self.gpu.as_ref().ok_or_else(|| JsError::new("no GPU to test"))?;
        let report = gpu::self_test(ctx).await.map_err(|e| JsError::new(&e.to_string()))?;
        Ok(serde_json::to_string(&report).unwrap_or_default())
    }
}
