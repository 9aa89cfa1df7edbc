//! Op test cases shared by the native (lavapipe) and browser (Chrome WebGPU) suites: each
//! case is a small graph with weights and inputs; the GPU result must match the CPU
//! backend within the case's relative-error bound.

#![allow(dead_code)]

pub mod cases_attention;
pub mod cases_conv;
pub mod cases_core;
pub mod cases_fast;
pub mod cases_limits;
pub mod cases_misc;
pub mod cases_norm;
pub mod cases_split;

use std::collections::HashMap;

use easel::gpu::GpuContext;
use easel::ops::check::{compare_backends, random_values, BindingLimits};
use easel::ops::cpu::HostTensor;
use easel::ops::{Graph, WeightStore};
use easel::OpError;

/// Relative error bound for elementwise and normalization ops.
pub const ELEMENTWISE_TOL: f64 = 1e-5;
/// Relative error bound for matmul, conv and attention.
pub const MATMUL_TOL: f64 = 1e-4;

/// Builds a case's graph over its weights.
pub type Build = Box<dyn Fn(&mut Graph) -> Result<(), OpError>>;

/// One GPU-vs-CPU check.
pub struct Case {
    pub name: String,
    pub weights: WeightStore,
    pub inputs: HashMap<String, HostTensor>,
    pub build: Build,
    pub tolerance: f64,
    /// Bindings smaller than the device's (weights only, or weights and activations).
    pub limits: BindingLimits,
}

impl Case {
    /// A case with no weights or inputs yet.
    pub fn new(name: &str, tolerance: f64, build: impl Fn(&mut Graph) -> Result<(), OpError> + 'static) -> Self {
        Self { name: name.into(), weights: WeightStore::new(), inputs: HashMap::new(), build: Box::new(build), tolerance, limits: BindingLimits::default() }
    }

    /// Adds a random f32 input in [-scale, scale).
    pub fn input(mut self, name: &str, n: usize, scale: f32, seed: u32) -> Self {
        let v = random_values(n, seed).into_iter().map(|x| x * scale).collect();
        self.inputs.insert(name.into(), HostTensor::F32(v));
        self
    }

    /// Adds a u32 input.
    pub fn input_u32(mut self, name: &str, values: Vec<u32>) -> Self {
        self.inputs.insert(name.into(), HostTensor::U32(values));
        self
    }

    /// Adds a random weight in [-scale, scale) stored as `storage`.
    pub fn weight(mut self, name: &str, shape: &[usize], storage: easel::ops::StorageType, scale: f32, seed: u32) -> Self {
        let n = shape.iter().product();
        let v: Vec<f32> = random_values(n, seed).into_iter().map(|x| x * scale).collect();
        self.weights.insert(name, shape, storage, &v).expect("valid test weight");
        self
    }

    /// Adds a weight with the given values (f32).
    pub fn weight_values(mut self, name: &str, shape: &[usize], values: &[f32]) -> Self {
        self.weights.insert_f32(name, shape, values).expect("valid test weight");
        self
    }

    /// Splits weights at `bytes` per binding.
    pub fn split_at(mut self, bytes: u64) -> Self {
        self.limits.weights = Some(bytes);
        self
    }

    /// Runs as on a device whose bindings hold `bytes`: weights and activations split.
    pub fn bind_at(mut self, bytes: u64) -> Self {
        self.limits = BindingLimits { weights: Some(bytes), activations: Some(bytes) };
        self
    }
}

/// Runs a case; Err with a readable line when it fails or exceeds its bound.
pub async fn run_case(ctx: &GpuContext, case: &Case) -> Result<f64, String> {
    let mut g = Graph::new(&case.weights);
    (case.build)(&mut g).map_err(|e| format!("{}: graph: {e}", case.name))?;
    let diffs = compare_backends(ctx, &g, &case.weights, &case.inputs, case.limits).await.map_err(|e| format!("{}: {e}", case.name))?;
    let worst = diffs.iter().map(|d| d.relative_error).fold(0.0, f64::max);
    #[allow(clippy::neg_cmp_op_on_partial_ord)] // a NaN error must fail too
    if !(worst <= case.tolerance) {
        return Err(format!("{}: relative error {worst:.3e} exceeds {:.0e} ({diffs:?})", case.name, case.tolerance));
    }
    Ok(worst)
}

/// Runs every case, printing each one's error; returns the failures.
pub async fn run_all(ctx: &GpuContext, cases: Vec<Case>) -> Vec<String> {
    let mut failures = Vec::new();
    for case in &cases {
        match run_case(ctx, case).await {
            Ok(err) => log(&format!("{:<48} relative error {err:.2e} (bound {:.0e})", case.name, case.tolerance)),
            Err(e) => {
                log(&format!("FAILED {e}"));
                failures.push(e);
            }
        }
    }
    failures
}

pub fn log(line: &str) {
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_test::console_log!("{line}");
    #[cfg(not(target_arch = "wasm32"))]
    println!("{line}");
}
