//! Op benchmarks at the shapes Stable Diffusion uses, on the GPU and CPU backends, next to
//! the adapter's measured ceilings. Figures are printed, never asserted: timing on a shared
//! machine is for reading, not for failing builds.

mod ceiling;
pub mod decoder;
mod suite;
pub mod unet;

use serde::Serialize;

pub use ceiling::copy_bandwidth;
pub use suite::{suite, BenchCase, CaseData};

use crate::error::OpError;
use crate::gpu::{wait_idle, FastArithmetic, GpuContext, Precision};
use crate::models::session::Session;
use crate::ops::cpu::HostTensor;
use crate::ops::gpu::{GpuProgram, GpuWeights, PipelineCache};
use crate::ops::Graph;
use crate::platform::now_ms;

/// One measured (case, backend) pair.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub op: String,
    pub shape: String,
    pub storage: String,
    pub backend: String,
    /// Median wall time of one run, milliseconds; None when the case failed.
    pub millis: Option<f64>,
    pub gflops: Option<f64>,
    /// Bytes of weights + inputs + outputs moved once, per second.
    pub gbps: Option<f64>,
    /// Why there is no figure.
    pub error: Option<String>,
    /// Fast-precision rows: relative error of the output against the exact row with the
    /// same kernels (`compare_precision`).
    pub relative_error: Option<f64>,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Timed runs per case (after the warm-up, [`WARM_UP_MS`]); the median is reported.
    pub runs: usize,
    pub gpu: bool,
    pub cpu: bool,
    /// Only cases whose op, shape or storage type contains this text (numbers whole:
    /// `BenchCase::matches`).
    pub filter: Option<String>,
    /// GPU rows for both kernel sets, simple and tiled (backend "gpu simple" / "gpu
    /// tiled"), instead of the context's own ("gpu").
    pub compare_kernels: bool,
    /// GPU rows in both precisions, exact and fast ("gpu .. fast", with the fast output's
    /// error against the exact one), instead of the context's own.
    pub compare_precision: bool,
    /// GPU rows with the norms' reductions in workgroup memory and on subgroups ("gpu ..
    /// subgroups"), where the device has `subgroups`, instead of the context's own.
    pub compare_subgroups: bool,
    /// Tiled GPU rows in 64-row tiles and in the tiles each case's M calls for ("gpu ..
    /// tiles 64" / "gpu .. tiles by M"), instead of the context's own.
    pub compare_tiles: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self { runs: 3, gpu: true, cpu: true, filter: None, compare_kernels: false, compare_precision: false, compare_subgroups: false, compare_tiles: false }
    }
}

/// Untimed runs before the timed ones: at least one, and at least this long. In the page a
/// kernel starts in V8's baseline tier and is recompiled when hot, on a background thread
/// that competes with the benchmark's own: in Chrome on 2 threads the first case ran at
/// 25-30 ms for its first six runs and settled at 13 ms after about twenty (0.4 s), which
/// made whichever case came first look slow. `www/bench-worker.js` warms ORT up the same way.
const WARM_UP_MS: f64 = 500.0;

/// The middle value; with an even count, the mean of the two middle ones (the upper one
/// alone made the median of two runs their slower).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median time of `runs` runs of `run` (at least one), after [`WARM_UP_MS`] of untimed ones.
async fn median_time(runs: usize, mut run: impl AsyncFnMut() -> Result<(), OpError>) -> Result<f64, OpError> {
    let warm_until = now_ms() + WARM_UP_MS;
    loop {
        run().await?;
        if now_ms() >= warm_until {
            break;
        }
    }
    let mut times = Vec::new();
    for _ in 0..runs.max(1) {
        let start = now_ms();
        run().await?;
        times.push(now_ms() - start);
    }
    Ok(median(times))
}

fn row(case: &BenchCase, backend: &str, result: Result<f64, OpError>) -> BenchRow {
    let (millis, error) = match result {
        Ok(ms) => (Some(ms), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let relative_error = None;
    BenchRow {
        op: case.op.clone(),
        shape: case.shape.clone(),
        storage: case.storage.name().to_string(),
        backend: backend.into(),
        millis,
        gflops: millis.map(|ms| case.flops / ms / 1e6),
        gbps: millis.map(|ms| case.bytes / ms / 1e6),
        error,
        relative_error,
    }
}

/// The median time of `runs` runs, and the output of the last.
async fn time_gpu(ctx: &GpuContext, case: &BenchCase, data: &CaseData, runs: usize) -> Result<(f64, Vec<f32>), OpError> {
    let mut g = Graph::new(&data.weights);
    (case.build)(&mut g)?;
    let weights = GpuWeights::upload(ctx, &data.weights)?;
    let mut cache = PipelineCache::new();
    let program = GpuProgram::compile(ctx, &g, &weights, &mut cache).await?;
    for (name, value) in &data.inputs {
        program.set_input(ctx, &weights, name, value)?;
    }
    let millis = median_time(runs, async || {
        program.run(ctx);
        Ok(wait_idle(ctx).await?)
    })
    .await?;
    let out = match program.read(ctx, g.outputs[0]).await? {
        HostTensor::F32(v) => v,
        HostTensor::U32(v) => v.into_iter().map(|x| x as f32).collect(),
    };
    Ok((millis, out))
}

/// The CPU rows run the op as a model's session does: natively on weights expanded once
/// (linear weights packed once), in the page straight from the weights as stored.
async fn time_cpu(case: &BenchCase, data: &CaseData, runs: usize) -> Result<f64, OpError> {
    let mut session = Session::cpu(data.weights.clone());
    let mut c = session.compile(|g| (case.build)(g)).await?;
    for (name, value) in &data.inputs {
        session.set_input(&mut c, name, value.clone())?;
    }
    median_time(runs, async || session.run(&c).await.map(drop)).await
}

/// Runs the suite; `on_row` sees each row as soon as it is measured (benchmarks are slow on
/// software adapters, so progress matters).
pub async fn bench_ops(ctx: Option<&GpuContext>, options: &BenchOptions, mut on_row: impl FnMut(&BenchRow)) -> Vec<BenchRow> {
    let mut rows = Vec::new();
    for case in suite() {
        if let Some(f) = &options.filter {
            if !case.matches(f) {
                continue;
            }
        }
        let data = case.data();
        if options.gpu {
            if let Some(ctx) = ctx {
                let kernel_sets = if options.compare_kernels { vec![ctx.with_kernels(false), ctx.with_kernels(true)] } else { vec![ctx.clone()] };
                let reductions =
                    |k: &GpuContext| if options.compare_subgroups && ctx.subgroups() { vec![k.with_subgroups(false), k.with_subgroups(true)] } else { vec![k.clone()] };
                let tiles = |k: GpuContext| {
                    if options.compare_tiles && k.tiled_kernels() {
                        vec![k.with_tile_rows(Some(64)), k.with_tile_rows(None)]
                    } else {
                        vec![k]
                    }
                };
                for k in &kernel_sets.iter().flat_map(reductions).flat_map(tiles).collect::<Vec<_>>() {
                    let precisions = if options.compare_precision { vec![k.with_precision(Precision::Exact), k.with_precision(Precision::Fast)] } else { vec![k.clone()] };
                    let mut exact: Option<Vec<f32>> = None;
                    for v in &precisions {
                        let fast = v.fast_arithmetic() != FastArithmetic::default();
                        let mut backend = String::from("gpu");
                        if options.compare_kernels {
                            backend += &format!(" {}", v.report.kernels);
                        }
                        if fast {
                            backend += " fast";
                        }
                        if options.compare_subgroups && v.subgroups() {
                            backend += " subgroups";
                        }
                        if options.compare_tiles && v.tiled_kernels() {
                            backend += if v.forced_tile_rows().is_some() { " tiles 64" } else { " tiles by M" };
                        }
                        let result = time_gpu(v, &case, &data, options.runs).await;
                        let out = result.as_ref().ok().map(|r| r.1.clone());
                        let mut r = row(&case, &backend, result.map(|r| r.0));
                        match (&exact, out) {
                            (Some(e), Some(o)) if fast => r.relative_error = Some(crate::ops::check::relative_error(&o, e).0),
                            (None, Some(o)) if !fast => exact = Some(o),
                            _ => {}
                        }
                        on_row(&r);
                        rows.push(r);
                    }
                }
            }
        }
        if options.cpu {
            let r = row(&case, "cpu", time_cpu(&case, &data, options.runs).await);
            on_row(&r);
            rows.push(r);
        }
    }
    rows
}

/// The adapter's ceilings measured in the same run: the best GPU GFLOP/s any matmul reached
/// and the bandwidth of a large buffer copy.
#[derive(Debug, Clone, Serialize)]
pub struct Ceilings {
    pub best_matmul_gflops: Option<f64>,
    pub copy_gbps: Option<f64>,
}

/// Ceilings from the rows plus a copy measurement.
pub async fn ceilings(ctx: Option<&GpuContext>, rows: &[BenchRow], copy_mib: u64) -> Ceilings {
    let best =
        rows.iter().filter(|r| r.backend.starts_with("gpu") && r.op.starts_with("matmul")).filter_map(|r| r.gflops).fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    let copy = match ctx {
        Some(ctx) => copy_bandwidth(ctx, copy_mib).await.ok(),
        None => None,
    };
    Ceilings { best_matmul_gflops: best, copy_gbps: copy }
}

/// A plain-text table with ratios to the ceilings.
pub fn format_table(rows: &[BenchRow], c: &Ceilings) -> String {
    let mut s = format!("{:<10} {:<28} {:<6} {:<16} {:>10} {:>9} {:>8} {:>9} {:>9} {:>9}\n", "op", "shape", "type", "on", "ms", "GFLOP/s", "GB/s", "%matmul", "%copy", "error");
    for r in rows {
        match r.millis {
            Some(ms) => {
                let pct = |x: Option<f64>, ceil: Option<f64>| match (x, ceil) {
                    (Some(x), Some(c)) if r.backend.starts_with("gpu") && c > 0.0 => format!("{:.0}%", 100.0 * x / c),
                    _ => "-".into(),
                };
                s += &format!(
                    "{:<10} {:<28} {:<6} {:<16} {:>10.1} {:>9.2} {:>8.2} {:>9} {:>9} {:>9}\n",
                    r.op,
                    r.shape,
                    r.storage,
                    r.backend,
                    ms,
                    r.gflops.unwrap_or(0.0),
                    r.gbps.unwrap_or(0.0),
                    pct(r.gflops, c.best_matmul_gflops),
                    pct(r.gbps, c.copy_gbps),
                    r.relative_error.map_or("-".into(), |e| format!("{e:.1e}"))
                );
            }
            None => s += &format!("{:<10} {:<28} {:<6} {:<16} failed: {}\n", r.op, r.shape, r.storage, r.backend, r.error.as_deref().unwrap_or("?")),
        }
    }
    if rows.iter().any(|r| r.relative_error.is_some()) {
        s += "error: a fast row's output against the exact row with the same kernels (relative L2)\n";
    }
    s += &format!(
        "ceilings: best GPU matmul {} GFLOP/s, buffer copy {} GB/s\n",
        c.best_matmul_gflops.map_or("-".into(), |x| format!("{x:.2}")),
        c.copy_gbps.map_or("-".into(), |x| format!("{x:.2}"))
    );
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_is_the_middle_or_the_mean_of_the_two_middles() {
        assert_eq!(super::median(vec![30.0, 10.0, 20.0]), 20.0);
        // Two runs: their mean, not the slower.
        assert_eq!(super::median(vec![17.0, 16.0]), 16.5);
        assert_eq!(super::median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(super::median(vec![7.0]), 7.0);
    }
}
