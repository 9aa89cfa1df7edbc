//! Loops compiled for the CPU's widest vectors. The native build targets baseline x86-64
//! (SSE2: 4 lanes), so a loop the compiler vectorizes runs 4 wide even on an AVX-512 CPU.
//! [`widest`] compiles a closure a second and third time, for AVX-512F and for AVX2, and
//! picks one when it runs. Rust never fuses or reorders float arithmetic, so each lane
//! computes what the scalar code says, in its order: the bits are the same at any width
//! (and the page's, whose wasm build is SIMD128 throughout).

/// `f()`, compiled for AVX-512F or AVX2 when the CPU has them (natively on x86-64; a plain
/// call elsewhere). For loops of elementwise float arithmetic and folds written lane-wise.
#[inline(always)]
pub fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match width() {
        // SAFETY: the CPU has the features (checked by `width`).
        Width::Avx512 => return unsafe { on_avx512(f) },
        // SAFETY: as above.
        Width::Avx2 => return unsafe { on_avx2(f) },
        Width::Sse2 => {}
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum Width {
    Avx512,
    Avx2,
    Sse2,
}

/// The widest vectors this CPU has; `EASEL_WIDEST=sse2` keeps the baseline, to compare.
#[cfg(target_arch = "x86_64")]
fn width() -> Width {
    static WIDTH: std::sync::OnceLock<Width> = std::sync::OnceLock::new();
    *WIDTH.get_or_init(|| {
        if std::env::var("EASEL_WIDEST").is_ok_and(|v| v == "sse2") {
            Width::Sse2
        } else if std::arch::is_x86_feature_detected!("avx512f") {
            Width::Avx512
        } else if std::arch::is_x86_feature_detected!("avx2") {
            Width::Avx2
        } else {
            Width::Sse2
        }
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn on_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn on_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::widest;
    use crate::ops::cpu::math::{exp, gelu_erf};

    /// Values that differ in their bits.
    fn differ(a: &[f32], b: &[f32]) -> usize {
        a.iter().zip(b).filter(|(a, b)| a.to_bits() != b.to_bits()).count()
    }

    #[test]
    fn the_widest_loops_compute_the_baselines_bits() {
        // exp and GELU (the softmax's and GEGLU's loops) over [-90, 90), called directly so
        // that each is inlined into the wide loop: every lane's value as the baseline's
        // scalar code computes it.
        let x: Vec<f32> = (0..36_000).map(|i| i as f32 * 0.005 - 90.0).collect();
        let (exps, gelus): (Vec<f32>, Vec<f32>) = x.iter().map(|&v| (exp(v), gelu_erf(v))).unzip();
        let (mut wide_exps, mut wide_gelus) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
        widest(
            #[inline(always)]
            || {
                wide_exps.iter_mut().zip(&x).for_each(|(o, &v)| *o = exp(v));
                wide_gelus.iter_mut().zip(&x).for_each(|(o, &v)| *o = gelu_erf(v));
            },
        );
        assert_eq!(differ(&exps, &wide_exps), 0, "exp");
        assert_eq!(differ(&gelus, &wide_gelus), 0, "gelu");
    }
}
