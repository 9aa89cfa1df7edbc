//! The wasm-bindgen surface the Web Worker calls. Everything returns JSON strings or
//! errors whose message is meant for the person in front of the page.

pub mod hub;

use wasm_bindgen::prelude::*;

mod animation;
mod bench_unet;
mod generate;
mod lora;
mod memory;
mod panics;
#[cfg(target_feature = "atomics")]
mod threads;
mod vq;

use crate::gpu::{self, GpuContext, GpuOptions};
use crate::ops::{choose_backend, BackendChoice, BackendPreference};
use crate::weights::stream::Check;

/// Installs the panic hook: a Rust panic shows up in the console with its message, and
/// `lastPanic` keeps it for the worker (see `panics`).
#[wasm_bindgen(start)]
pub fn start() {
    panics::install();
}

/// The crate version.
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}

/// Whether this build's CPU GEMM fuses its multiply-adds (`ops::cpu::gemm::fuses`): the
/// relaxed-SIMD builds where the CPU has FMA. The worker reports it; the CLI reproduces the
/// page's bits with `EASEL_CPU_ARITHMETIC=page-fused` where it is true, `page` where not.
#[wasm_bindgen(js_name = gemmFuses)]
pub fn gemm_fuses() -> bool {
    crate::ops::cpu::gemm::fuses()
}

/// One engine per worker: the GPU device when there is one, and the backend choice.
#[wasm_bindgen]
pub struct Engine {
    gpu: Option<GpuContext>,
    gpu_error: Option<String>,
    choice: BackendChoice,
    loading: Option<Loading>,
    model: Option<LoadedModel>,
    /// Tokenizer files of the model being loaded.
    files: generate::ModelFiles,
    /// The model's pipeline (by its family), built over `model`'s weights on first use.
    generator: Option<crate::pipelines::Generator>,
    model_name: String,
    /// LoRAs applied to the loaded model (see `lora`).
    loras: crate::models::LoraStack,
}

/// The engine's GPU device, shared: its state can be read (and the device destroyed) while
/// the engine itself is busy generating.
#[wasm_bindgen]
pub struct GpuHandle(GpuContext);

#[wasm_bindgen]
impl GpuHandle {
    /// Why the device was lost, or undefined while it works.
    pub fn lost(&self) -> Option<String> {
        self.0.lost()
    }

    /// Destroys the device as a driver reset would (like WebGL's `loseContext`): how tests
    /// check that a loss is reported and recovered from.
    pub fn lose(&self) {
        self.0.lose();
    }
}

/// A model on its way in, to the backend that will run it.
enum Loading {
    Gpu(crate::weights::stream::ModelStream),
    Cpu(crate::weights::stream::HostModelStream),
}

/// A shard still in JS memory: each tensor's part is copied straight into its place.
struct JsShard(js_sys::Uint8Array);

impl crate::weights::stream::ShardBytes for JsShard {
    fn byte_len(&self) -> usize {
        self.0.length() as usize
    }

    fn append(&self, start: usize, end: usize, out: &mut Vec<u8>) {
        let n = end - start;
        out.reserve(n);
        let len = out.len();
        self.0.subarray(start as u32, end as u32).copy_to_uninit(&mut out.spare_capacity_mut()[..n]);
        // SAFETY: copy_to_uninit has initialized the n bytes after len.
        unsafe { out.set_len(len + n) };
    }
}

/// A loaded model's weights, held by the backend that runs it.
enum LoadedModel {
    Gpu(crate::weights::Manifest, crate::ops::gpu::GpuWeights),
    Cpu(crate::weights::Manifest, crate::ops::WeightStore),
}

#[wasm_bindgen]
impl Engine {
    /// Opens WebGPU unless `backend` is "cpu", then picks the backend: "auto" (default)
    /// takes the GPU only when it is real hardware. Fails only when "gpu" was asked for and
    /// no GPU is usable, with a message that says which browser or flag to use. `kernels`:
    /// the GPU's matmul/conv kernels, "auto" (default: tiled on hardware), "tiled" or "simple".
    /// `precision`: "exact" (default) or "fast": the GPU's int8 / f16 arithmetic
    /// (`gpu::Precision`), the CPU's Winograd 3x3 convolutions (`ops::cpu::winograd`).
    pub async fn create(backend: Option<String>, kernels: Option<String>, precision: Option<String>) -> Result<Engine, JsError> {
        let pref: BackendPreference = backend.as_deref().unwrap_or("auto").parse().map_err(|e: String| JsError::new(&e))?;
        let kernels = kernels.as_deref().unwrap_or("auto").parse().map_err(|e: String| JsError::new(&e))?;
        let precision: crate::gpu::Precision = precision.as_deref().unwrap_or("exact").parse().map_err(|e: String| JsError::new(&e))?;
        // The CPU backend's sessions take the process's default (Winograd 3x3 convolutions).
        crate::ops::cpu::winograd::set_fast_precision(precision == crate::gpu::Precision::Fast);
        let (gpu, gpu_error) = if pref == BackendPreference::Cpu {
            (None, None)
        } else {
            match GpuContext::new(&GpuOptions { kernels, precision, ..Default::default() }).await {
                Ok(ctx) => (Some(ctx), None),
                Err(e) => (None, Some(e.to_string())),
            }
        };
        let choice = choose_backend(pref, gpu.as_ref().map(|g| &g.report), gpu_error.as_deref()).map_err(|e| JsError::new(&e))?;
        Ok(Engine { gpu, gpu_error, choice, loading: None, model: None, files: Default::default(), generator: None, model_name: String::new(), loras: Default::default() })
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

    /// A handle on the GPU device that works while `generate` runs (which holds the engine):
    /// to watch for a loss, and to cause one in tests. Undefined without a GPU.
    #[wasm_bindgen(js_name = gpuHandle)]
    pub fn gpu_handle(&self) -> Option<GpuHandle> {
        self.gpu.clone().map(GpuHandle)
    }

    /// The CPU backend's arithmetic: "exact", or "fast (Winograd 3x3 convolutions)".
    #[wasm_bindgen(js_name = cpuPrecision)]
    pub fn cpu_precision(&self) -> String {
        crate::ops::cpu::winograd::describe(crate::ops::cpu::winograd::fast_precision()).into()
    }

    /// The backend that runs the models and why, as JSON `{kind, reason}`.
    pub fn backend(&self) -> String {
        serde_json::to_string(&self.choice).unwrap_or_default()
    }

    /// Checks, from its manifest alone, that a model fits the chosen backend (GPU bindings,
    /// or the page's memory on the CPU backend), before any shard is downloaded. Returns JSON
    /// `{bytes, backend}`: what its weights will occupy there.
    #[wasm_bindgen(js_name = checkModel)]
    pub fn check_model(&self, manifest_json: &str) -> Result<String, JsError> {
        let manifest = crate::weights::Manifest::parse(manifest_json.as_bytes()).map_err(|e| JsError::new(&e.to_string()))?;
        let (bytes, backend) = self.fit(&manifest).map_err(|e| JsError::new(&e.to_string()))?;
        Ok(serde_json::json!({ "bytes": bytes, "backend": backend }).to_string())
    }

    /// `checkModel` for a Hub conversion once every weights header is planned: refuses a
    /// model that cannot run here before any weight byte is downloaded.
    #[wasm_bindgen(js_name = checkConversion)]
    pub fn check_conversion(&self, conversion: &hub::HubConverter) -> Result<String, JsError> {
        let (name, specs) = conversion.planned().ok_or_else(|| JsError::new("this conversion has finished"))?;
        let (bytes, backend) = self.fit_tensors(name, specs).map_err(|e| JsError::new(&e.to_string()))?;
        Ok(serde_json::json!({ "bytes": bytes, "backend": backend }).to_string())
    }

    fn fit(&self, manifest: &crate::weights::Manifest) -> Result<(u64, &'static str), crate::WeightsError> {
        let specs: Vec<_> = manifest.tensors.iter().map(|t| (t.name.clone(), t.shape.clone(), t.storage)).collect();
        self.fit_tensors(&manifest.name, &specs)
    }

    fn fit_tensors(&self, name: &str, specs: &[crate::weights::fit::TensorSpec]) -> Result<(u64, &'static str), crate::WeightsError> {
        use crate::weights::fit::{check_tensors, Target};
        match (self.choice.kind, self.gpu.as_ref()) {
            (crate::ops::BackendKind::Gpu, Some(ctx)) => Ok((check_tensors(name, specs, Target::Gpu { max_binding: ctx.device.limits().max_storage_buffer_binding_size })?, "gpu")),
            _ => Ok((check_tensors(name, specs, Target::WasmCpu)?, "cpu")),
        }
    }

    /// Starts loading a model for the chosen backend: validates `manifest_json` (version,
    /// content hash, tensor extents, fit) and, on the GPU, allocates every tensor's buffers.
    /// A GPU that runs out of memory doing so is reported, and the engine stays usable.
    #[wasm_bindgen(js_name = beginModel)]
    pub async fn begin_model(&mut self, manifest_json: String) -> Result<(), JsError> {
        let mut manifest = crate::weights::Manifest::parse(manifest_json.as_bytes()).map_err(|e| JsError::new(&e.to_string()))?;
        if manifest.family == "vqgan-taming" {
            // Taming's keys become diffusers' before any byte lands in a buffer.
            crate::models::taming::rename_manifest(&mut manifest);
        }
        let (bytes, _) = self.fit(&manifest).map_err(|e| JsError::new(&e.to_string()))?;
        self.model = None;
        self.generator = None;
        self.loras = Default::default();
        self.loading = None;
        self.files = Default::default();
        self.model_name = manifest.name.clone();
        let name = manifest.name.clone();
        self.loading = Some(match (self.choice.kind, self.gpu.as_ref()) {
            (crate::ops::BackendKind::Gpu, Some(ctx)) => {
                let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
                let stream = crate::weights::stream::ModelStream::begin(ctx, manifest);
                if let Some(e) = scope.pop().await {
                    return Err(JsError::new(&format!(
                        "the GPU ran out of memory for {name}'s weights ({:.2} GiB): close other pages or programs using the GPU, or load a smaller or quantized model ({e})",
                        bytes as f64 / (1u64 << 30) as f64
                    )));
                }
                Loading::Gpu(stream.map_err(|e| JsError::new(&e.to_string()))?)
            }
            _ => Loading::Cpu(crate::weights::stream::HostModelStream::begin(manifest)),
        });
        Ok(())
    }

    /// Adds shard `index` (shards in order): straight into GPU buffers on the GPU backend.
    /// Its size and sha256 are checked against the manifest.
    #[wasm_bindgen(js_name = addShard)]
    pub fn add_shard(&mut self, index: usize, bytes: &[u8]) -> Result<(), JsError> {
        let result = match self.loading.as_mut().ok_or_else(|| JsError::new("call beginModel first"))? {
            Loading::Gpu(s) => s.add_shard(self.gpu.as_ref().expect("GPU loading has a GPU"), index, bytes, Check::Sha256),
            Loading::Cpu(s) => s.add_shard(index, bytes, Check::Sha256),
        };
        result.map_err(|e| JsError::new(&e.to_string()))
    }

    /// `addShard` for a shard the caller has just checked (loader.js checks the sha256 when
    /// it downloads a shard, the checksum cached with it when it reads it back): only its size is
    /// checked here. Hashing in wasm again took a third of the time from cache to ready.
    #[wasm_bindgen(js_name = addVerifiedShard)]
    pub fn add_verified_shard(&mut self, index: usize, bytes: js_sys::Uint8Array) -> Result<(), JsError> {
        let result = match self.loading.as_mut().ok_or_else(|| JsError::new("call beginModel first"))? {
            Loading::Gpu(s) => s.add_shard(self.gpu.as_ref().expect("GPU loading has a GPU"), index, &bytes.to_vec(), Check::SizeOnly),
            // Each tensor's part goes from the JS array straight into place: one copy of the
            // model instead of two (a quarter of the engine's time from cache to ready).
            Loading::Cpu(s) => s.add_verified_shard(index, &JsShard(bytes)),
        };
        result.map_err(|e| JsError::new(&e.to_string()))
    }

    /// Finishes loading; JSON `{name, family, tensors, backend, bytes}`.
    #[wasm_bindgen(js_name = finishModel)]
    pub fn finish_model(&mut self) -> Result<String, JsError> {
        let err = |e: crate::WeightsError| JsError::new(&e.to_string());
        let (model, bytes) = match self.loading.take().ok_or_else(|| JsError::new("call beginModel first"))? {
            Loading::Gpu(s) => {
                let (m, w) = s.finish().map_err(err)?;
                let bytes = w.bytes;
                (LoadedModel::Gpu(m, w), bytes)
            }
            Loading::Cpu(s) => {
                let (m, w) = s.finish().map_err(err)?;
                let bytes = w.byte_size() as u64;
                (LoadedModel::Cpu(m, w), bytes)
            }
        };
        let (manifest, backend) = match &model {
            LoadedModel::Gpu(m, _) => (m, "gpu"),
            LoadedModel::Cpu(m, _) => (m, "cpu"),
        };
        let summary = serde_json::json!({ "name": manifest.name, "family": manifest.family, "tensors": manifest.tensors.len(), "backend": backend, "bytes": bytes });
        self.model = Some(model);
        Ok(summary.to_string())
    }

    /// Runs the op benchmarks (see `bench`) on the GPU (if any) and the CPU backend.
    /// `options`: JSON `{runs, gpu, cpu, filter, compareKernels, comparePrecision, compareTiles}`; `on_row` is called with each row's JSON as
    /// it is measured. Resolves to JSON `{rows, ceilings}`.
    #[wasm_bindgen(js_name = benchOps)]
    pub async fn bench_ops(&self, options: String, on_row: js_sys::Function) -> Result<String, JsError> {
        let v: serde_json::Value = serde_json::from_str(&options).map_err(|e| JsError::new(&format!("bench options: {e}")))?;
        let opts = crate::bench::BenchOptions {
            runs: v["runs"].as_u64().unwrap_or(1).max(1) as usize,
            gpu: v["gpu"].as_bool().unwrap_or(true),
            cpu: v["cpu"].as_bool().unwrap_or(true),
            filter: v["filter"].as_str().filter(|s| !s.is_empty()).map(String::from),
            compare_kernels: v["compareKernels"].as_bool().unwrap_or(false),
            compare_precision: v["comparePrecision"].as_bool().unwrap_or(false),
            // wgpu's web backend cannot request `subgroups`: nothing to compare in the page.
            compare_subgroups: false,
            compare_tiles: v["compareTiles"].as_bool().unwrap_or(false),
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
