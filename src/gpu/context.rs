//! Adapter and device creation with the adapter's own limits.

use std::sync::{Arc, Mutex};

use super::report::AdapterReport;
use crate::error::GpuError;

/// What to ask for when opening the GPU.
#[derive(Debug, Clone)]
pub struct GpuOptions {
    /// Prefer the discrete GPU on laptops with two.
    pub power_preference: wgpu::PowerPreference,
    /// Ask for `shader-f16` when the adapter offers it.
    pub allow_f16: bool,
    /// Ask for `subgroups` when the adapter offers it (natively: wgpu's web backend cannot
    /// request it yet), and reduce on subgroups (`--subgroups off` turns this off).
    pub allow_subgroups: bool,
    /// Request at most this maxStorageBufferBindingSize (None: the adapter's own). Tests use
    /// WebGPU's default, 128 MiB, to prove big weights are split.
    pub max_binding: Option<u64>,
    /// Request at most this maxBufferSize (None: the adapter's own). Tests use WebGPU's
    /// default, 256 MiB, to prove big feature maps are cut into bands.
    pub max_buffer: Option<u64>,
    /// Which matmul-like kernels to compile (`--kernels`, `?kernels=`).
    pub kernels: KernelChoice,
    /// Exact f32 arithmetic, or the opt-in fast one (`--precision`, `?precision=`).
    pub precision: Precision,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            power_preference: wgpu::PowerPreference::HighPerformance,
            allow_f16: true,
            allow_subgroups: true,
            max_binding: None,
            max_buffer: None,
            kernels: KernelChoice::Auto,
            precision: Precision::Exact,
        }
    }
}

/// The shape of the matmul-like kernels (linear, conv). Software adapters run one CPU
/// thread per invocation and pay for every barrier, so workgroup-memory tiles were 3-7x
/// slower there; hardware GPUs need them to reuse each load across a tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelChoice {
    /// Tiled on hardware adapters, simple on software ones.
    #[default]
    Auto,
    /// Workgroup-memory tiles (64 columns by 64, 32 or 16 rows per workgroup, as M needs;
    /// K in steps of 16).
    Tiled,
    /// Register-blocked, no workgroup memory.
    Simple,
}

impl std::str::FromStr for KernelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "tiled" => Ok(Self::Tiled),
            "simple" => Ok(Self::Simple),
            other => Err(format!("kernels '{other}': expected auto, tiled or simple")),
        }
    }
}

/// The arithmetic of the matmul-like kernels. `Fast` trades accuracy for speed where the
/// device can: Q8_0 linears (and, with the tiled kernels, Q8_0 convs) multiply int8
/// activations by the int8 weights with
/// `dot4I8Packed` (the packed 4x8 integer dot product; activations quantized per block of
/// 32, as the weights are), and, where the device has `shader-f16`, the tiled kernels stage
/// and multiply in f16 (sums of 16 products in f16, added up in f32). `bench ops
/// --compare-precision` prints what it costs per op, and `pipelines_native`'s
/// `fast_precision_runs_stay_near_diffusers` on the fixtures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 arithmetic throughout (the default: what the tests hold to diffusers).
    #[default]
    Exact,
    /// int8 dot products for Q8_0 linears (and tiled convs), f16 tiles where the device has
    /// `shader-f16`.
    Fast,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exact" => Ok(Self::Exact),
            "fast" => Ok(Self::Fast),
            other => Err(format!("precision '{other}': expected exact or fast")),
        }
    }
}

/// What `Precision::Fast` turned on for this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FastArithmetic {
    /// Q8_0 linears (and, tiled, convs) through `dot4I8Packed` (the WGSL language feature
    /// `packed_4x8_integer_dot_product` is present).
    pub int8_dot: bool,
    /// The tiled kernels in f16 (the device has `shader-f16` and the tiled kernels are in use).
    pub f16_tiles: bool,
}

impl FastArithmetic {
    /// "exact", or what the fast precision uses: "fast (int8 dot, f16 tiles)".
    pub fn describe(&self) -> String {
        let parts: Vec<&str> = [(self.int8_dot, "int8 dot"), (self.f16_tiles, "f16 tiles")].iter().filter(|p| p.0).map(|p| p.1).collect();
        if parts.is_empty() {
            "exact".into()
        } else {
            format!("fast ({})", parts.join(", "))
        }
    }
}

/// An open GPU device and the description of the adapter it came from.
#[derive(Clone)]
pub struct GpuContext {
    /// The logical device: creates buffers, pipelines, bind groups.
    pub device: wgpu::Device,
    /// The device's only queue.
    pub queue: wgpu::Queue,
    /// The adapter, kept alive for the device's lifetime.
    pub adapter: wgpu::Adapter,
    /// What the adapter and device are, for diagnostics and backend choice.
    pub report: AdapterReport,
    /// Whether the device was lost, and errors no error scope caught.
    health: Arc<DeviceHealth>,
    /// Whether linear and conv compile their tiled variants.
    tiled: bool,
    /// One tile height for every tiled GEMM, instead of the height each M calls for.
    tile_rows: Option<usize>,
    /// The precision asked for, and what it uses on this device (`Exact`: nothing).
    precision: Precision,
    fast: FastArithmetic,
    /// What the fast precision could use here, had it been asked for.
    fast_available: FastArithmetic,
}

/// What happened to a device since it was opened. Filled in by wgpu's callbacks, read
/// before each readback so that a lost device gives one clear error instead of a hang.
#[derive(Default)]
struct DeviceHealth {
    lost: Mutex<Option<String>>,
    uncaptured: Mutex<Option<String>>,
}

impl DeviceHealth {
    /// Starts listening to `device`. Natively wgpu's default handler panics on an
    /// uncaptured error (after a device loss every call makes one); here it is recorded.
    fn watch(device: &wgpu::Device) -> Arc<Self> {
        let health = Arc::new(Self::default());
        let h = health.clone();
        device.set_device_lost_callback(move |reason, message| {
            let why = match reason {
                wgpu::DeviceLostReason::Destroyed => "destroyed".to_string(),
                wgpu::DeviceLostReason::Unknown if message.is_empty() => "the driver or browser gave no reason".to_string(),
                wgpu::DeviceLostReason::Unknown => message,
            };
            *h.lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        });
        let h = health.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            // The first one explains the rest (a lost device repeats it on every call).
            h.uncaptured.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| e.to_string());
        }));
        health
    }
}

impl GpuContext {
    /// Opens the best adapter and a device with its own limits (not WebGPU's defaults: SD
    /// weights need bindings far above the default 128 MiB where the adapter allows it).
    pub async fn new(options: &GpuOptions) -> Result<Self, GpuError> {
        #[cfg(target_arch = "wasm32")]
        if !super::web_info::has_navigator_gpu() {
            return Err(GpuError::NoWebGpu);
        }

        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = if cfg!(target_arch = "wasm32") { wgpu::Backends::BROWSER_WEBGPU } else { wgpu::Backends::VULKAN };
        let instance = wgpu::Instance::new(desc);
        let int8_dot = instance.wgsl_language_features().contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: options.power_preference,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| no_adapter(e.to_string()))?;

        let mut limits = adapter.limits();
        if let Some(cap) = options.max_binding {
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(cap);
        }
        if let Some(cap) = options.max_buffer {
            limits.max_buffer_size = limits.max_buffer_size.min(cap);
        }
        let mut features = wgpu::Features::empty();
        if options.allow_f16 && adapter.features().contains(wgpu::Features::SHADER_F16) {
            features |= wgpu::Features::SHADER_F16;
        }
        if options.allow_subgroups && adapter.features().contains(wgpu::Features::SUBGROUP) {
            features |= wgpu::Features::SUBGROUP;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("easel"),
                required_features: features,
                required_limits: limits,
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| GpuError::DeviceRequest { adapter: adapter.get_info().name, detail: e.to_string() })?;

        let health = DeviceHealth::watch(&device);
        let report = AdapterReport::describe(&adapter, &device).await;
        let tiled = match options.kernels {
            KernelChoice::Auto => !report.software,
            choice => choice == KernelChoice::Tiled,
        };
        let fast_available = FastArithmetic { int8_dot, f16_tiles: report.shader_f16 };
        let mut ctx = Self { device, queue, adapter, report, health, tiled, tile_rows: None, precision: options.precision, fast: FastArithmetic::default(), fast_available };
        ctx = ctx.with_kernels(tiled).with_precision(options.precision);
        Ok(ctx)
    }

    /// Why the device was lost (driver reset, GPU removed, `destroy`), or None while it works.
    pub fn lost(&self) -> Option<String> {
        self.health.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fails with `DeviceLost` once the device is gone. Checked before creating resources:
    /// natively wgpu panics when a buffer made with contents is created on a dead device.
    pub fn alive(&self) -> Result<(), GpuError> {
        self.lost().map_or(Ok(()), |why| Err(GpuError::DeviceLost(why)))
    }

    /// The first error since the device was opened that no error scope caught: named in
    /// a failed readback, whose own message ("map failed") says nothing of the cause.
    pub fn first_uncaptured_error(&self) -> Option<String> {
        self.health.uncaptured.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Destroys the device as a driver reset would: the way tests (and the page's
    /// `simulateDeviceLoss`) check that a loss is reported and recovered from.
    pub fn lose(&self) {
        self.device.destroy();
        // Natively the callback fires on the next poll; record it now so the next readback knows.
        let mut lost = self.health.lost.lock().unwrap_or_else(|e| e.into_inner());
        lost.get_or_insert_with(|| "destroyed".into());
    }

    /// True when the adapter is a CPU implementation (SwiftShader, lavapipe, WARP).
    pub fn is_software(&self) -> bool {
        self.report.software
    }

    /// Whether linear and conv use their workgroup-memory tiled kernels (`KernelChoice`).
    pub fn tiled_kernels(&self) -> bool {
        self.tiled
    }

    /// Whether the reducing kernels (norms, softmax) use subgroup operations: the device was
    /// opened with `subgroups` (and `with_subgroups(false)` did not turn them off).
    pub fn subgroups(&self) -> bool {
        self.report.subgroups
    }

    /// The same device with subgroup reductions on (where it has `subgroups`) or off
    /// (benchmarks compare the two; pipeline caches key the variants apart).
    pub fn with_subgroups(&self, on: bool) -> Self {
        let mut ctx = self.clone();
        ctx.report.subgroups = on && self.device.features().contains(wgpu::Features::SUBGROUP);
        ctx
    }

    /// The same device with the other kernel set (benchmarks compare the two; pipeline
    /// caches key the variants apart).
    pub fn with_kernels(&self, tiled: bool) -> Self {
        let mut ctx = self.clone();
        ctx.tiled = tiled;
        ctx.report.kernels = if tiled { "tiled" } else { "simple" }.into();
        ctx.with_precision(ctx.precision)
    }

    /// The same device with every tiled GEMM in tiles of `rows` (64, 32 or 16: one of
    /// `TILE_HEIGHTS`), or, with None, the height each op's M calls for (tests cover every
    /// height on small cases; benchmarks compare them; pipeline caches key them apart).
    pub fn with_tile_rows(&self, rows: Option<usize>) -> Self {
        assert!(rows.is_none_or(|r| crate::ops::gpu::TILE_HEIGHTS.contains(&r)), "tile rows {rows:?}: expected one of {:?}", crate::ops::gpu::TILE_HEIGHTS);
        let mut ctx = self.clone();
        ctx.tile_rows = rows;
        ctx
    }

    /// The tile height `with_tile_rows` forced, if any.
    pub fn forced_tile_rows(&self) -> Option<usize> {
        self.tile_rows
    }

    /// The same device with the other precision (benchmarks compare the two; pipeline
    /// caches key the variants apart). f16 tiles need the tiled kernels.
    pub fn with_precision(&self, precision: Precision) -> Self {
        let mut ctx = self.clone();
        ctx.precision = precision;
        ctx.fast = match precision {
            Precision::Exact => FastArithmetic::default(),
            Precision::Fast => FastArithmetic { int8_dot: self.fast_available.int8_dot, f16_tiles: self.fast_available.f16_tiles && ctx.tiled },
        };
        ctx.report.precision = ctx.fast.describe();
        ctx
    }

    /// What the fast precision uses on this device (all false under `Precision::Exact`).
    pub fn fast_arithmetic(&self) -> FastArithmetic {
        self.fast
    }
}

#[cfg(target_arch = "wasm32")]
fn no_adapter(detail: String) -> GpuError {
    GpuError::NoWebAdapter { detail }
}

#[cfg(not(target_arch = "wasm32"))]
fn no_adapter(detail: String) -> GpuError {
    GpuError::NoNativeAdapter { detail }
}
