//! SiLU, tanh, the GELUs, GEGLU and add/sub/mul (same shapes, or the second operand
//! broadcast over trailing axes: residuals and time-embedding adds) on the CPU backend's
//! threads. They only stream memory, and candle runs them on one core. Add/sub/mul are
//! candle's own f32 formulas, so their results are candle's bits. The functions with an
//! exponential take it from the `libm` crate, not `std`: natively `std` calls the system's
//! libm (glibc) and in the page Rust's own, whose last bits differ, so the page's images
//! would not be the CLI's. GEGLU's GELU is `math::gelu_erf`, which vectorizes (candle's
//! calls libm's `erff` per value: most of a GEGLU's time), within 4 ulp of the exact GELU
//! where activations are.

use candle_core::{Device, Result, Tensor};

use super::gemm_ops::with_values;
use super::math::gelu_erf;
use super::threads;
use super::wide::widest;
use crate::ops::graph::BinaryOp;

/// Values per task: large enough to amortize a task, small enough to balance the cores.
const PIECE: usize = 1 << 14;

/// `n` values, piece by piece on the threads: `f(first index, piece)` writes each piece.
fn fill(n: usize, piece: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; n];
    threads::for_each_piece(&mut out, piece.max(1), |t, values| f(t * piece.max(1), values));
    out
}

/// candle's formulas for these, with `libm`'s exponential and tanh (the same bits on every
/// target).
fn silu_f32(x: f32) -> f32 {
    x / (1.0 + libm::expf(-x))
}

/// x sigmoid(1.702 x): CLIP's quick GELU.
fn quick_gelu_f32(x: f32) -> f32 {
    x * (1.0 / (1.0 + libm::expf(-(x * 1.702))))
}

/// GELU's tanh approximation.
fn gelu_tanh_f32(x: f32) -> f32 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + libm::tanhf(SQRT_TWO_OVER_PI * x * (1.0 + 0.044715 * x * x)))
}

/// `f` of every value, piece by piece on the threads.
fn map(x: &Tensor, f: impl Fn(f32) -> f32 + Sync) -> Result<Tensor> {
    let out = with_values(x, |v| fill(v.len(), PIECE, |s, out| out.iter_mut().zip(&v[s..]).for_each(|(o, &x)| *o = f(x))))?;
    Tensor::from_vec(out, x.dims(), &Device::Cpu)
}

/// x * sigmoid(x).
pub fn silu(x: &Tensor) -> Result<Tensor> {
    map(x, silu_f32)
}

/// x * sigmoid(1.702 x).
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    map(x, quick_gelu_f32)
}

/// 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    map(x, gelu_tanh_f32)
}

/// tanh, from `libm`.
pub fn tanh(x: &Tensor) -> Result<Tensor> {
    map(x, libm::tanhf)
}

/// x [.., 2d] -> x[.., :d] * gelu_erf(x[.., d:]), whole rows per task.
pub fn geglu(x: &Tensor) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let d = dims.last().copied().unwrap_or(0) / 2;
    *dims.last_mut().expect("x has a last axis") = d;
    if d == 0 {
        return Tensor::zeros(dims, candle_core::DType::F32, &Device::Cpu);
    }
    let rows_per_piece = (PIECE / d).max(1);
    let out = with_values(x, |v| {
        fill(v.len() / 2, rows_per_piece * d, |s, out| {
            for (r, row) in out.chunks_mut(d).enumerate() {
                let src = &v[(s / d + r) * 2 * d..][..2 * d];
                let (h, gate) = src.split_at(d);
                widest(
                    #[inline(always)]
                    || {
                        for ((o, &h), &g) in row.iter_mut().zip(h).zip(gate) {
                            *o = h * gelu_erf(g);
                        }
                    },
                );
            }
        })
    })?;
    Tensor::from_vec(out, dims, &Device::Cpu)
}

/// `a (op) b` when b's shape is a's, or a's leading axes followed by ones (left-padded to
/// a's rank): then b's value for output index i is b[i / inner]. Also `b (op) a` that
/// way for the commutative ops. None for any other broadcast (candle does those).
pub fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Option<Tensor>> {
    let (big, inner, small) = match (trailing_broadcast(a.dims(), b.dims()), trailing_broadcast(b.dims(), a.dims())) {
        (Some(inner), _) => (a, inner, b),
        // Operands swapped: fine for + and *, whose IEEE results do not depend on the order.
        (None, Some(inner)) if op != BinaryOp::Sub => (b, inner, a),
        _ => return Ok(None),
    };
    // One loop per op, so each compiles to vector arithmetic.
    let out = with_values(big, |x| {
        with_values(small, |y| match op {
            BinaryOp::Add => combine(x, y, inner, |x, y| x + y),
            BinaryOp::Sub => combine(x, y, inner, |x, y| x - y),
            BinaryOp::Mul => combine(x, y, inner, |x, y| x * y),
        })
    })??;
    Ok(Some(Tensor::from_vec(out, big.dims(), &Device::Cpu)?))
}

/// `f(x[i], y[i / inner])` for every i, on the threads: runs of `inner` values share one y.
#[inline(always)]
fn combine(x: &[f32], y: &[f32], inner: usize, f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    fill(x.len(), PIECE, |s, out| {
        let x = &x[s..][..out.len()];
        widest(
            #[inline(always)]
            || {
                if inner == 1 {
                    out.iter_mut().zip(x).zip(&y[s..]).for_each(|((o, &x), &y)| *o = f(x, y));
                    return;
                }
                let mut i = 0;
                while i < out.len() {
                    let run = (inner - (s + i) % inner).min(out.len() - i);
                    let y = y[(s + i) / inner];
                    out[i..i + run].iter_mut().zip(&x[i..i + run]).for_each(|(o, &x)| *o = f(x, y));
                    i += run;
                }
            },
        )
    })
}

/// How many consecutive output values share one value of `small` when `small` is `big`'s
/// shape with its trailing axes set to 1 (after left-padding with ones); None otherwise.
fn trailing_broadcast(big: &[usize], small: &[usize]) -> Option<usize> {
    if small.len() > big.len() {
        return None;
    }
    let padded: Vec<usize> = std::iter::repeat_n(1, big.len() - small.len()).chain(small.iter().copied()).collect();
    // The longest run of trailing ones in `small`; everything before it must match.
    let keep = padded.iter().rposition(|&d| d != 1).map_or(0, |p| p + 1);
    (padded[..keep] == big[..keep]).then(|| big[keep..].iter().product())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(dims: &[usize], seed: u32) -> Tensor {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n as u32).map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 4001) as f32 / 1000.0 - 2.0).collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn broadcasts_are_recognised_by_their_trailing_ones() {
        assert_eq!(trailing_broadcast(&[2, 3, 4, 5], &[2, 3, 4, 5]), Some(1));
        assert_eq!(trailing_broadcast(&[2, 3, 4, 5], &[2, 3, 1, 1]), Some(20));
        assert_eq!(trailing_broadcast(&[1, 3, 4, 5], &[3, 1, 1]), Some(20));
        assert_eq!(trailing_broadcast(&[2, 3], &[1]), Some(6));
        assert_eq!(trailing_broadcast(&[2, 3, 4, 5], &[1, 3, 1, 1]), None);
        assert_eq!(trailing_broadcast(&[2, 3, 4], &[4]), None);
    }

    /// Add/sub/mul bit for bit what candle computes, the activations their formulas with
    /// libm's functions exactly (GEGLU: `gelu_erf`) and candle's within 4 ulp of
    /// max(|x|, |y|) (its exponential and tanh are the platform's), on shapes spanning several pieces and threads.
    // The platform's own functions (or candle's) as the reference: a second implementation.
    #[allow(clippy::disallowed_methods)]
    #[test]
    fn elementwise_ops_give_candles_bits_and_the_activations_their_formulas() {
        let x = tensor(&[2, 5, 3000], 1);
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // (name, ours, its formula, candle's)
        type Case = (&'static str, Tensor, fn(f32) -> f32, Tensor);
        let cases: [Case; 4] = [
            ("silu", silu(&x).unwrap(), |v| v / (1.0 + libm::expf(-v)), x.silu().unwrap()),
            ("quick_gelu", quick_gelu(&x).unwrap(), |v| v * (1.0 / (1.0 + libm::expf(-(v * 1.702)))), (&x * candle_nn::ops::sigmoid(&(&x * 1.702).unwrap()).unwrap()).unwrap()),
            ("gelu_tanh", gelu_tanh(&x).unwrap(), |v| 0.5 * v * (1.0 + libm::tanhf(0.797_884_6 * v * (1.0 + 0.044715 * v * v))), x.gelu().unwrap()),
            ("tanh", tanh(&x).unwrap(), libm::tanhf, x.tanh().unwrap()),
        ];
        for (name, got, formula, candle) in cases {
            let (got, candle) = (got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), candle.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            for (i, &v) in xs.iter().enumerate() {
                assert_eq!(got[i].to_bits(), formula(v).to_bits(), "{name}({v})");
                let near = 4.0 * f32::EPSILON * candle[i].abs().max(v.abs());
                assert!((got[i] - candle[i]).abs() <= near, "{name}({v}): {} against candle's {}", got[i], candle[i]);
            }
            assert!(got.iter().any(|&y| y.abs() > 0.5), "{name}: real values");
        }
        // GEGLU: the value half times GELU of the gate half, each value exactly.
        let d = 1500;
        let (got, xs) = (geglu(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), x.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        for (i, &y) in got.iter().enumerate() {
            let row = &xs[i / d * 2 * d..][..2 * d];
            assert_eq!(y.to_bits(), (row[i % d] * gelu_erf(row[d + i % d])).to_bits(), "value {i}");
        }
        let cases: [(&[usize], &[usize]); 5] =
            [(&[2, 5, 3000], &[2, 5, 3000]), (&[2, 5, 3000], &[2, 5, 1]), (&[1, 5, 3000], &[5, 1]), (&[2, 5, 1], &[2, 5, 3000]), (&[2, 5, 3000], &[5, 1])];
        for (sa, sb) in cases {
            let (a, b) = (tensor(sa, 2), tensor(sb, 3));
            for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul] {
                let want = match op {
                    BinaryOp::Add => a.broadcast_add(&b),
                    BinaryOp::Sub => a.broadcast_sub(&b),
                    BinaryOp::Mul => a.broadcast_mul(&b),
                }
                .unwrap();
                match binary(&a, &b, op).unwrap() {
                    Some(got) => {
                        assert_eq!(got.dims(), want.dims(), "{sa:?} {op:?} {sb:?}");
                        assert_eq!(bits(&got), bits(&want), "{sa:?} {op:?} {sb:?}");
                    }
                    // Left to candle: a - b with a broadcast, and b broadcast over a leading axis.
                    None => assert!((op == BinaryOp::Sub && sa[2] == 1) || sb == [5, 1] && sa[0] == 2, "{sa:?} {op:?} {sb:?} not handled"),
                }
            }
        }
    }
}
