//! Transcendental functions built from operations that vectorize (no calls, no branches
//! but selects), so that a loop over them runs on SIMD lanes natively and in the page
//! (where libm's `erff` and `expf` are scalar calls). Rust never fuses a multiply and an
//! add by itself, so they give the same bits on every target.

/// e^x for x <= 0 (shifted logits, negated magnitudes) within 2 ulp: x = n ln 2 + r with
/// |r| <= ln 2 / 2, e^r by a degree-6 polynomial, 2^n through the exponent bits. Inputs
/// below -87 flush to e^-87, which no sum of such terms can notice. Small positive inputs
/// (up to ln 2 / 2) are fine too.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // exp_sum(x, 0.0) less its two additions of zero (a compiler must keep x + 0.0, which
    // turns -0.0 into +0.0): the same bits, since -0.0 and +0.0 round to the same n, and
    // n * LN2_LO is never -0.0 (n is +0.0 or a whole number).
    exp_split(x, |hi| hi, |n| n * LN2_LO)
}

/// 1.5 * 2^23: added to an f32 below 2^22 in size, it leaves no fraction bits, and the
/// sum's bits are its own plus the rounded value.
const ROUNDER: f32 = 12_582_912.0;

/// e^(hi + lo) for hi + lo <= 0, |lo| small next to ln 2: `lo` joins the reduced argument
/// after the exact `hi - n ln 2_hi`, so an `hi` exact in f32 (z^2 for GELU's tail) keeps
/// its precision where hi + lo rounded would lose an ulp of a number up to 87.
#[inline(always)]
fn exp_sum(hi: f32, lo: f32) -> f32 {
    exp_split(hi, |hi| hi + lo, |n| lo + n * LN2_LO)
}

/// ln 2 split so that n * LN2_HI is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = 2.121_944_4e-4;

/// [`exp_sum`]'s body: `sum(hi)` is hi + lo, `low(n)` lo + n * LN2_LO.
#[inline(always)]
fn exp_split(hi: f32, sum: impl Fn(f32) -> f32, low: impl Fn(f32) -> f32) -> f32 {
    let hi = max(hi, -87.0);
    // Rounded to nearest even by adding and taking away 1.5 * 2^23 (|n| < 2^22): the same
    // as `round_ties_even`, which natively (SSE2, no `roundps`) is a call per value.
    let shifted = sum(hi) * std::f32::consts::LOG2_E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = hi - n * LN2_HI + low(n);
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5;
    let er = 1.0 + r + r * r * p;
    // 2^n from n in the low bits of `shifted` (no float-to-int cast: Rust's saturates,
    // with compares that keep the loop from vectorizing).
    er * f32::from_bits(shifted.to_bits().wrapping_sub(ROUNDER.to_bits()).wrapping_add(127) << 23)
}

/// 2^y for y <= 0 (log2-scaled shifted logits) within 2 ulp: y = n + f with |f| <= 1/2,
/// 2^f by a degree-6 polynomial, 2^n through the exponent bits. [`exp`] of y ln 2 less
/// the two-constant reduction of its argument and one degree: the attention's softmax
/// folds log2(e) into its scale, and there this is most of the work per score. Inputs
/// below -125 flush to 2^-125, the smallest power whose products stay normal.
#[inline(always)]
pub fn exp2(y: f32) -> f32 {
    let y = max(y, -125.0);
    let shifted = y + ROUNDER;
    let n = shifted - ROUNDER;
    // Exact: n is the integer nearest y.
    let f = y - n;
    // Minimax on [-1/2, 1/2] for the relative error, with 2^0 = 1 exactly (its first
    // coefficient comes out as ln 2 in f32): 1.2 ulp measured in f32 arithmetic.
    let p = 1.0 + f * (std::f32::consts::LN_2 + f * (0.240_226_48 + f * (5.550_332_4e-2 + f * (9.618_437e-3 + f * (1.339_887_5e-3 + f * 1.535_336_2e-4)))));
    p * f32::from_bits(shifted.to_bits().wrapping_sub(ROUNDER.to_bits()).wrapping_add(127) << 23)
}

/// x * sigmoid(x) through e^-|x| (so [`exp`]'s argument is never positive): x / (1 + e)
/// for x >= 0, x e / (1 + e) below; within a few ulp where |x| < 80, a tiny number past.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    let e = exp(-x.abs());
    // Past -87 `e` stops shrinking: x clamped too, so the product stays tiny. A NaN
    // takes the first arm and stays NaN.
    let num = if x >= 0.0 || x.is_nan() { x } else { max(x, -88.0) * e };
    num / (1.0 + e)
}

/// The larger of two floats as a compare and select (wasm's `pmax`): `f32::max`'s NaN rule
/// makes it a libm call per value in wasm.
#[inline(always)]
pub fn max(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// ln(erfc(z) / t) + z^2 as a polynomial in u = 2t - 1, t = 1 / (1 + z/2), z >= 0:
/// smooth on t in (0, 1] (it tends to -ln(2 sqrt(pi)) as z grows). Degree 10, fitted by
/// least squares on Chebyshev nodes (z up to 25) in f64; in u rather than t the terms
/// shrink, so Horner's rule in f32 stays within 1.6e-7 of it.
const ERFC_LOG_POLY: [f32; 11] =
    [-0.671_794_06, 0.672_642_95, 0.047_341_794, -0.046_888_784, -0.009_856_293, 0.008_771_936, 0.001_700_959_3, -0.002_171_116_9, -7.973_234_5e-5, 4.065_895e-4, -7.424_041e-5];

/// GELU with the exact erf, x/2 (1 + erf(x / sqrt 2)), through erfc(|x| / sqrt 2) =
/// t e^(P(t) - z^2): for x < 0 that is x/2 erfc(z) and for x >= 0 x/2 (2 - erfc(z)), so
/// the negative tail keeps its relative accuracy (1 + erf would cancel there).
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let u = 2.0 * t - 1.0;
    let p = ERFC_LOG_POLY.iter().rev().fold(0.0, |acc, &c| acc * u + c);
    // z^2 = x^2 / 2 from x itself (z rounded would cost an ulp of z^2, up to 8e-6 of the
    // result): xh^2 / 2 + (x - xh)(x + xh) / 2 with xh x's top 12 bits, so xh^2 is exact.
    let a = x.abs();
    let ah = f32::from_bits(a.to_bits() & 0xffff_f000);
    let erfc = t * exp_sum(-0.5 * (ah * ah), p - 0.5 * ((a - ah) * (a + ah)));
    0.5 * x * if x >= 0.0 { 2.0 - erfc } else { erfc }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The platform's own functions (or candle's) as the reference: a second implementation.
    #[allow(clippy::disallowed_methods)]
    #[test]
    fn exp_matches_std_to_2_ulp() {
        for i in 0..=100_000 {
            let x = -87.0 * i as f32 / 100_000.0;
            let (got, want) = (exp(x), x.exp());
            assert!((got - want).abs() <= 2.0 * f32::EPSILON * want, "exp({x}) = {got}, want {want}");
        }
    }

    /// Against 2^y in f64 within 2 ulp over [-125, 1/2] (every 97th float, and every float
    /// within 2^16 of each whole number from -125 to 0, where f changes sign), whole
    /// powers exactly, and the flush below -125.
    #[test]
    fn exp2_matches_f64_to_2_ulp() {
        let check = |y: f32| {
            let (got, want) = (exp2(y) as f64, libm::exp2(y as f64));
            // The spacing of f32s at want (a power of two times EPSILON).
            let ulp = f32::EPSILON as f64 * f32::from_bits((want as f32).to_bits() & 0xff80_0000) as f64;
            assert!((got - want).abs() <= 2.0 * ulp, "exp2({y:e}) = {got:e}, want {want:e}");
        };
        (0..=0.5f32.to_bits()).step_by(97).chain((1u32 << 31..=(-125f32).to_bits()).step_by(97)).map(f32::from_bits).for_each(check);
        for n in -125..=0 {
            let b = (n as f32).to_bits();
            (b.saturating_sub(1 << 16)..=b + (1 << 16)).map(f32::from_bits).filter(|y| (-125.0..=0.5).contains(y)).for_each(check);
            assert_eq!(exp2(n as f32), 2f32.powi(n), "2^{n}");
        }
        assert_eq!(exp2(-0.0), 1.0);
        assert_eq!(exp2(-130.0), 2f32.powi(-125));
        assert_eq!(exp2(f32::NEG_INFINITY), 2f32.powi(-125));
    }

    /// `exp` leaves out exp_sum's additions of zero: bit for bit the same from -100 to 1,
    /// every float near 0 (-0.0 and the subnormals) and near the flush at -87, every 61st
    /// float between, and NaN.
    #[test]
    fn exp_is_exp_sum_with_zero_bit_for_bit() {
        let check = |x: f32| {
            let (got, want) = (exp(x), exp_sum(x, 0.0));
            assert_eq!(got.to_bits(), want.to_bits(), "exp({x:e}) = {got:e}, exp_sum({x:e}, 0) = {want:e}");
        };
        let near = |x: f32| (x.to_bits().saturating_sub(1 << 20)..=x.to_bits() + (1 << 20)).map(f32::from_bits);
        near(-0.0).chain(near(0.0)).chain(near(-87.0)).for_each(check);
        // Bit patterns run upwards from +0.0 and, for negative floats, from -0.0 downwards.
        (0..=1f32.to_bits()).step_by(61).chain((1u32 << 31..=(-100f32).to_bits()).step_by(61)).map(f32::from_bits).for_each(check);
        check(f32::NAN);
    }

    /// Against GELU in f64 (libm's erf and erfc) over [-12, 12] in steps of 1e-5: within
    /// 4 ulp of the value everywhere, the far negative tail included (4.3e-7 and 4.4e-7
    /// relative at worst when written). Fails, for one, with z^2 taken from z rounded
    /// (8.8e-6 at -12) or with the polynomial in t instead of u (4.9e-7 at -0.15).
    #[test]
    fn gelu_erf_matches_f64() {
        let mut worst = 0f64;
        for i in -1_200_000..=1_200_000 {
            let x = i as f32 * 1e-5;
            let xd = x as f64;
            let z = xd.abs() * std::f64::consts::FRAC_1_SQRT_2;
            let want = if x < 0.0 { 0.5 * xd * libm::erfc(z) } else { 0.5 * xd * (1.0 + libm::erf(z)) };
            let got = gelu_erf(x) as f64;
            let rel = if want == 0.0 { got.abs() } else { ((got - want) / want).abs() };
            assert!(rel <= 4.0 * f32::EPSILON as f64, "gelu_erf({x}) = {got:e}, want {want:e} (relative error {rel:e})");
            worst = worst.max(rel);
        }
        eprintln!("gelu_erf: largest relative error {worst:.2e}");
    }

    /// Against x / (1 + e^-x) in f64 over [-80, 80] in steps of 1e-4, and tiny past -87.
    // The platform's own functions (or candle's) as the reference: a second implementation.
    #[allow(clippy::disallowed_methods)]
    #[test]
    fn silu_matches_f64() {
        let mut worst = 0f64;
        for i in -800_000..=800_000 {
            let x = i as f32 * 1e-4;
            let (got, want) = (silu(x) as f64, x as f64 / (1.0 + (-(x as f64)).exp()));
            let rel = if want == 0.0 { got.abs() } else { ((got - want) / want).abs() };
            assert!(rel <= 4.0 * f32::EPSILON as f64, "silu({x}) = {got:e}, want {want:e} (relative error {rel:e})");
            worst = worst.max(rel);
        }
        for x in [-87.5f32, -100.0, -1e4, f32::MIN] {
            assert!(silu(x) <= 0.0 && silu(x) > -1e-30, "silu({x}) = {:e}", silu(x));
        }
        assert!(silu(f32::NAN).is_nan() && silu(f32::INFINITY) == f32::INFINITY);
        eprintln!("silu: largest relative error {worst:.2e}");
    }
}
