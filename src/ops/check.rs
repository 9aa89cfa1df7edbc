//! Running one graph on both backends and measuring how far apart they are: the harness of
//! the op tests (native and in the browser) and of the benchmarks' sanity checks.

use std::collections::HashMap;

use crate::error::OpError;
use crate::gpu::GpuContext;
use crate::ops::cpu::{CpuExecutor, HostTensor};
use crate::ops::gpu::{GpuProgram, GpuWeights, PipelineCache};
use crate::ops::graph::{Graph, TensorId};
use crate::ops::weights::WeightStore;

pub use crate::gpu::test_values as random_values;

/// How one output of the GPU differs from the CPU reference.
#[derive(Debug, Clone)]
pub struct OutputDiff {
    pub tensor: TensorId,
    pub label: String,
    /// ||gpu - cpu|| / ||cpu|| for f32 outputs; the fraction of differing entries for u32.
    pub relative_error: f64,
    /// Largest |gpu - cpu|.
    pub max_abs_error: f64,
}

/// Relative L2 error and max absolute error of `x` against `reference`.
pub fn relative_error(x: &[f32], reference: &[f32]) -> (f64, f64) {
    assert_eq!(x.len(), reference.len(), "length mismatch");
    let (mut d2, mut r2, mut max) = (0f64, 0f64, 0f64);
    for (a, r) in x.iter().zip(reference) {
        let d = *a as f64 - *r as f64;
        d2 += d * d;
        r2 += (*r as f64) * (*r as f64);
        max = max.max(d.abs());
    }
    if r2 == 0.0 {
        return (d2.sqrt(), max);
    }
    ((d2 / r2).sqrt(), max)
}

/// Binding limits (bytes) to use instead of the device's, where set.
#[derive(Debug, Clone, Copy, Default)]
pub struct BindingLimits {
    /// Weights are uploaded in chunks of at most this many bytes.
    pub weights: Option<u64>,
    /// Dispatches bind at most this many bytes of an activation.
    pub activations: Option<u64>,
}

/// Runs `graph` on `ctx`'s GPU: its outputs, in `graph.outputs` order. `limits` lowers
/// the binding limits below the device's, to exercise the split paths.
pub async fn run_gpu(ctx: &GpuContext, graph: &Graph<'_>, weights: &WeightStore, inputs: &HashMap<String, HostTensor>, limits: BindingLimits) -> Result<Vec<HostTensor>, OpError> {
    let gpu_weights = match limits.weights {
        Some(limit) => GpuWeights::upload_with_limit(ctx, weights, limit)?,
        None => GpuWeights::upload(ctx, weights)?,
    };
    let mut cache = PipelineCache::new();
    let program = GpuProgram::compile_with_limit(ctx, graph, &gpu_weights, &mut cache, limits.activations).await?;
    for (name, value) in inputs {
        program.set_input(ctx, &gpu_weights, name, value)?;
    }
    program.run(ctx);
    let mut out = Vec::new();
    for &t in &graph.outputs {
        out.push(program.read(ctx, t).await?);
    }
    Ok(out)
}

/// Runs `graph` on the CPU backend and on `ctx`'s GPU with the same inputs and weights.
/// `limits` lowers the binding limits below the device's, to exercise the split paths.
pub async fn compare_backends(
    ctx: &GpuContext,
    graph: &Graph<'_>,
    weights: &WeightStore,
    inputs: &HashMap<String, HostTensor>,
    limits: BindingLimits,
) -> Result<Vec<OutputDiff>, OpError> {
    let cpu = CpuExecutor::new(weights).run(graph, inputs)?;
    let gpu = run_gpu(ctx, graph, weights, inputs, limits).await?;
    let mut diffs = Vec::new();
    for (&t, got) in graph.outputs.iter().zip(gpu) {
        let want = &cpu[&t];
        let (relative_error, max_abs_error) = match (&got, want) {
            (HostTensor::F32(g), HostTensor::F32(w)) => relative_error(g, w),
            (HostTensor::U32(g), HostTensor::U32(w)) => {
                let wrong = g.iter().zip(w).filter(|(a, b)| a != b).count();
                (wrong as f64 / w.len().max(1) as f64, wrong as f64)
            }
            _ => unreachable!("both backends return the node's dtype"),
        };
        diffs.push(OutputDiff { tensor: t, label: graph.node(t).label.clone(), relative_error, max_abs_error });
    }
    Ok(diffs)
}
