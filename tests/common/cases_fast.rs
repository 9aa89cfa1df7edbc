//! The fast precision (`Precision::Fast`), each part against a reference of its own
//! arithmetic:
//! - Q8_0 linears on int8 dot products against `quant::linear_q8_int8`, the same
//!   arithmetic on the CPU (same integer sums; only the f32 order of the block sums may
//!   differ), and against the CPU backend in f32, which they must miss by the int8
//!   activations' rounding: that proves the int8 path ran;
//! - the linear and conv cases on f16 tiles (where the device has `shader-f16`) against the
//!   CPU backend in f32, within a few units of f16 rounding.

use easel::gpu::GpuContext;
use easel::ops::check::{compare_backends, random_values, relative_error, run_gpu, BindingLimits};
use easel::ops::cpu::HostTensor;
use easel::ops::quant::linear_q8_int8;
use easel::ops::{Graph, StorageType, WeightStore};

use super::{log, Case};

/// int8 path against its CPU twin: the integer sums are exact on both, so what is left is
/// f32 rounding of the scales' products and of the sum over blocks.
pub const INT8_TOL: f64 = 1e-5;
/// int8 path against f32: activations rounded to 127 levels per block of 32 move a dot
/// product by about 0.4% (uniform rounding error amax/254 against values of rms amax/3^0.5),
/// so the error lies within [1e-3, 1e-2].
pub const INT8_VS_F32: (f64, f64) = (1e-3, 1e-2);
/// f16 tiles against f32: inputs and products rounded to f16 (unit roundoff 2^-11 = 4.9e-4)
/// and sums of 16 products in f16: a few units of roundoff, relative.
pub const F16_TILES_TOL: f64 = 2e-3;

/// One int8 linear: x's shape, output features, a bias or not, and a weight binding limit
/// in bytes (None: the device's).
struct Int8Case {
    name: &'static str,
    x_shape: &'static [usize],
    n: usize,
    bias: bool,
    split: Option<u64>,
}

const fn int8(name: &'static str, x_shape: &'static [usize], n: usize, bias: bool, split: Option<u64>) -> Int8Case {
    Int8Case { name, x_shape, n, bias, split }
}

const INT8_CASES: &[Int8Case] = &[
    int8("int8 linear q8_0 33x64 -> 70", &[33, 64], 70, true, None),
    int8("int8 linear q8_0 5x320 -> 33", &[5, 320], 33, false, None),
    int8("int8 linear q8_0 [2,3,320] -> 45", &[2, 3, 320], 45, true, None),
    int8("int8 linear q8_0 2x5120 -> 17", &[2, 5120], 17, true, None),
    int8("int8 linear q8_0 77x1024 -> 130", &[77, 1024], 130, true, None),
    int8("int8 linear q8_0 split 9x64 -> 300", &[9, 64], 300, true, Some(64 * 68)),
];

/// Runs the int8 cases on `ctx` (opened with `Precision::Fast`); returns the failures.
pub async fn run_int8_cases(ctx: &GpuContext) -> Vec<String> {
    let mut failures = vec![];
    for c in INT8_CASES {
        if let Err(e) = int8_case(ctx, c.name, c.x_shape, c.n, c.bias, c.split).await {
            log(&format!("FAILED {e}"));
            failures.push(e);
        }
    }
    failures
}

async fn int8_case(ctx: &GpuContext, name: &str, x_shape: &[usize], n: usize, bias: bool, split: Option<u64>) -> Result<(), String> {
    let k = *x_shape.last().unwrap();
    let m = x_shape.iter().product::<usize>() / k;
    let x: Vec<f32> = random_values(m * k, 11);
    let w: Vec<f32> = random_values(n * k, 12).into_iter().map(|v| v * 0.5).collect();
    let b: Vec<f32> = random_values(n, 13).into_iter().map(|v| v * 0.5).collect();
    let mut weights = WeightStore::new();
    weights.insert("w", &[n, k], StorageType::Q8_0, &w).unwrap();
    weights.insert_f32("b", &[n], &b).unwrap();
    let mut g = Graph::new(&weights);
    let xi = g.input("x", x_shape);
    let wi = g.weight("w").unwrap();
    let bi = if bias { Some(g.weight("b").unwrap()) } else { None };
    let y = g.linear(xi, wi, bi).unwrap();
    g.output(y);
    let inputs = [("x".to_string(), HostTensor::F32(x.clone()))].into();
    let limits = BindingLimits { weights: split, activations: None };
    let got = match run_gpu(ctx, &g, &weights, &inputs, limits).await.map_err(|e| format!("{name}: {e}"))?.remove(0) {
        HostTensor::F32(v) => v,
        other => return Err(format!("{name}: a {other:?} output")),
    };
    let mut want = linear_q8_int8(&x, m, k, &weights.get("w").unwrap().bytes, n);
    if bias {
        want.iter_mut().enumerate().for_each(|(i, v)| *v += b[i % n]);
    }
    check_int8(name, &got, &want, compare_backends(ctx, &g, &weights, &inputs, limits).await.map_err(|e| format!("{name}: {e}"))?[0].relative_error)
}

/// The int8 result `got` against its CPU twin `want` (`INT8_TOL`), and its error against
/// f32 `to_f32` within `INT8_VS_F32` (the int8 path ran, and rounds as it should).
fn check_int8(name: &str, got: &[f32], want: &[f32], to_f32: f64) -> Result<(), String> {
    let (to_twin, _) = relative_error(got, want);
    log(&format!("{name:<52} relative error {to_twin:.2e} to the int8 arithmetic on the CPU (bound {INT8_TOL:.0e}), {to_f32:.2e} to f32"));
    #[allow(clippy::neg_cmp_op_on_partial_ord)] // a NaN error must fail too
    if !(to_twin <= INT8_TOL) {
        return Err(format!("{name}: relative error {to_twin:.3e} to the int8 arithmetic on the CPU exceeds {INT8_TOL:.0e}"));
    }
    if !(INT8_VS_F32.0..=INT8_VS_F32.1).contains(&to_f32) {
        return Err(format!("{name}: relative error {to_f32:.3e} to f32 lies outside {INT8_VS_F32:?}: the int8 path did not run, or rounds wrongly"));
    }
    Ok(())
}

/// One int8 conv (tiled kernels): x [B, C, H, W], output channels, kernel size, stride,
/// padding [top, bottom, left, right].
struct Int8Conv {
    name: &'static str,
    x: [usize; 4],
    o: usize,
    kernel: usize,
    stride: usize,
    padding: [usize; 4],
}

const INT8_CONVS: &[Int8Conv] = &[
    Int8Conv { name: "int8 conv q8_0 3x3 s1 p1 [2,32,5,6] -> 10", x: [2, 32, 5, 6], o: 10, kernel: 3, stride: 1, padding: [1; 4] },
    Int8Conv { name: "int8 conv q8_0 1x1 [1,64,7,5] -> 7", x: [1, 64, 7, 5], o: 7, kernel: 1, stride: 1, padding: [0; 4] },
    Int8Conv { name: "int8 conv q8_0 3x3 s2 (0,1,0,1) [1,32,8,8] -> 6", x: [1, 32, 8, 8], o: 6, kernel: 3, stride: 2, padding: [0, 1, 0, 1] },
    Int8Conv { name: "int8 conv q8_0 3x3 s1 p1 [1,64,9,9] -> 70 (2x2 tiles)", x: [1, 64, 9, 9], o: 70, kernel: 3, stride: 1, padding: [1; 4] },
];

/// Runs the int8 conv cases on `ctx` (fast precision, tiled kernels); returns the failures.
pub async fn run_int8_conv_cases(ctx: &GpuContext) -> Vec<String> {
    let mut failures = vec![];
    for c in INT8_CONVS {
        if let Err(e) = int8_conv_case(ctx, c).await {
            log(&format!("FAILED {e}"));
            failures.push(e);
        }
    }
    failures
}

/// x's taps as the implicit GEMM's A [B*Ho*Wo, C*kh*kw] (zero in the padding).
fn im2col(x: &[f32], [b, c, h, w]: [usize; 4], kernel: usize, stride: usize, padding: [usize; 4], (ho, wo): (usize, usize)) -> Vec<f32> {
    let k = c * kernel * kernel;
    let mut a = vec![0f32; b * ho * wo * k];
    for (m, row) in a.chunks_exact_mut(k).enumerate() {
        let (item, oy, ox) = (m / (ho * wo), m / wo % ho, m % wo);
        for (kk, v) in row.iter_mut().enumerate() {
            let (ch, ky, kx) = (kk / (kernel * kernel), kk / kernel % kernel, kk % kernel);
            let (iy, ix) = ((oy * stride + ky) as isize - padding[0] as isize, (ox * stride + kx) as isize - padding[2] as isize);
            if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                *v = x[((item * c + ch) * h + iy as usize) * w + ix as usize];
            }
        }
    }
    a
}

async fn int8_conv_case(ctx: &GpuContext, case: &Int8Conv) -> Result<(), String> {
    let (name, [b, c, h, w], o, kernel) = (case.name, case.x, case.o, case.kernel);
    let ho = (h + case.padding[0] + case.padding[1] - kernel) / case.stride + 1;
    let wo = (w + case.padding[2] + case.padding[3] - kernel) / case.stride + 1;
    let k = c * kernel * kernel;
    let x: Vec<f32> = random_values(b * c * h * w, 21);
    let wv: Vec<f32> = random_values(o * k, 22).into_iter().map(|v| v * 0.5).collect();
    let bias: Vec<f32> = random_values(o, 23).into_iter().map(|v| v * 0.5).collect();
    let mut weights = WeightStore::new();
    weights.insert("w", &[o, c, kernel, kernel], StorageType::Q8_0, &wv).unwrap();
    weights.insert_f32("b", &[o], &bias).unwrap();
    let mut g = Graph::new(&weights);
    let xi = g.input("x", &case.x);
    let (wi, bi) = (g.weight("w").unwrap(), g.weight("b").unwrap());
    let y = g.conv2d(xi, wi, Some(bi), case.stride, case.padding).unwrap();
    g.output(y);
    let inputs = [("x".to_string(), HostTensor::F32(x.clone()))].into();
    let got = match run_gpu(ctx, &g, &weights, &inputs, BindingLimits::default()).await.map_err(|e| format!("{name}: {e}"))?.remove(0) {
        HostTensor::F32(v) => v,
        other => return Err(format!("{name}: a {other:?} output")),
    };
    // The same arithmetic on the CPU: the gathered taps through the int8 linear, then NCHW.
    let a = im2col(&x, case.x, kernel, case.stride, case.padding, (ho, wo));
    let rows = linear_q8_int8(&a, b * ho * wo, k, &weights.get("w").unwrap().bytes, o);
    let plane = ho * wo;
    let mut want = vec![0f32; b * o * plane];
    for (m, row) in rows.chunks_exact(o).enumerate() {
        for (n, v) in row.iter().enumerate() {
            want[((m / plane) * o + n) * plane + m % plane] = v + bias[n];
        }
    }
    check_int8(name, &got, &want, compare_backends(ctx, &g, &weights, &inputs, BindingLimits::default()).await.map_err(|e| format!("{name}: {e}"))?[0].relative_error)
}

/// The cases that run the tiled kernels (linear and conv, and a chain through a linear)
/// with the f16 tiles' bound; Q8_0 linears and unsplit Q8_0 convs are left out (the fast
/// precision runs those on int8 dot products), and so are ops the precision does not touch.
pub fn f16_tile_cases() -> Vec<Case> {
    let int8 = |name: &str| name.starts_with("linear q8_0") || (name.starts_with("conv q8_0") && !name.contains("split"));
    let tiled = |name: &str| (name.starts_with("linear ") || name.starts_with("conv ") || name.starts_with("chain ")) && !int8(name);
    let mut cases: Vec<Case> = [super::cases_core::cases(), super::cases_conv::cases()].into_iter().flatten().filter(|c| tiled(&c.name)).collect();
    for c in &mut cases {
        c.tolerance = F16_TILES_TOL;
    }
    cases
}
