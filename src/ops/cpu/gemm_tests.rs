//! The GEMM's tests: against f64, across block edges and strides, every thread split
//! giving `gemm`'s bits, and the native tile kernels against each other.

use super::*;

/// `n` values in [-1, 1] in steps of 1/1000, scattered by a multiplicative hash of `seed`:
/// inputs for the tile-kernel tests.
#[cfg(target_arch = "x86_64")]
fn lcg(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32).map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        // A small LCG: deterministic, in [-1, 1).
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Runs both B layouts on (m, n, k) against an f64 triple loop, starting C at `c0`.
    fn check(m: usize, n: usize, k: usize) {
        let a = values(m * k, 1);
        let b = values(k * n, 2); // [K, N]
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect(); // [N, K]
        let c0 = values(m * n, 3);
        let mut want = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum();
                want[i * n + j] = c0[i * n + j] as f64 + dot;
            }
        }
        let scale = want.iter().fold(0f64, |s, x| s.max(x.abs())).max(1e-30);
        let (kn, nk) = (BMatrix::KN { data: &b, ld: n }, BMatrix::NK { data: &bt, ld: k });
        let run = |name: &str, bm: &dyn Fn(&mut [f32])| {
            let mut c = c0.clone();
            bm(&mut c);
            let err = c.iter().zip(&want).fold(0f64, |e, (&x, &y)| e.max((x as f64 - y).abs()));
            // f32 accumulation over K terms: error grows about like sqrt(K) ulps of the scale.
            let bound = 4.0 * f32::EPSILON as f64 * (k as f64).sqrt() * scale;
            assert!(err <= bound, "{name} {m}x{n}x{k}: max error {err:e} > {bound:e} (scale {scale:e})");
        };
        run("KN", &|c| gemm(m, n, k, &a, k, &kn, c, n));
        run("NK", &|c| gemm(m, n, k, &a, k, &nk, c, n));
        let packed = PackedB::new(k, n, &nk);
        run("packed", &|c| gemm(m, n, k, &a, k, &packed, c, n));
    }

    #[test]
    fn gemm_matches_f64_on_odd_shapes() {
        for (m, n, k) in [(1, 1, 1), (1, 1, 7), (3, 5, 2), (MR, NR, 1), (MR + 1, NR + 1, 3), (7, 13, 33), (37, 23, 19), (130, 9, 257)] {
            check(m, n, k);
        }
    }

    #[test]
    fn gemm_matches_f64_across_block_edges() {
        // Crosses MC (rows), several KC blocks, and an NC edge.
        check(MC + MR + 3, NR * 3 + 5, 3 * KC + 11);
        check(5, NC + NR + 1, 17);
    }

    #[test]
    fn gemm_matches_f64_at_deep_k() {
        check(9, 21, 5120);
    }

    #[test]
    fn gemm_respects_strides() {
        // A and C embedded in wider rows; columns past m/n must stay untouched.
        let (m, n, k, lda, ldc) = (6, 10, 5, 9, 13);
        let a = values(m * lda, 4);
        let b = values(k * n, 5);
        let mut c = vec![7.0f32; m * ldc];
        gemm(m, n, k, &a, lda, &BMatrix::KN { data: &b, ld: n }, &mut c, ldc);
        for i in 0..m {
            for j in 0..ldc {
                let want = if j < n { 7.0 + (0..k).map(|p| a[i * lda + p] * b[p * n + j]).sum::<f32>() } else { 7.0 };
                assert!((c[i * ldc + j] - want).abs() < 1e-5, "({i},{j}): {} vs {want}", c[i * ldc + j]);
            }
        }
    }

    /// The shared-panel split: every thread count gives `gemm`'s bits, over panels of
    /// several blocks in K and N and a ragged last strip.
    #[test]
    fn par_gemm_shared_b_gives_gemm_bits() {
        // 70 rows: uneven tasks (four of 18, 18, 18, 16 rows natively); C's rows are
        // longer than N, and the tail past each row stays as it was.
        let (m, n, k, ldc) = (70, 1100, 800, 1103);
        let a = values(m * k, 4);
        let b = values(k * n, 5);
        let kn = BMatrix::KN { data: &b, ld: n };
        let packed = PackedB::new(k, n, &kn);
        let mut want = values(m * ldc, 6);
        let start = want.clone();
        gemm(m, n, k, &a, k, &kn, &mut want, ldc);
        let bits = |c: &[f32]| c.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        // B packed here, and B packed ahead (no packing round).
        let mut got = start.clone();
        par_gemm_shared_b(m, n, k, &ARows { data: &a, ld: k }, &kn, &mut got, ldc);
        assert_eq!(bits(&got), bits(&want));
        let mut got = start;
        par_gemm_shared_b(m, n, k, &ARows { data: &a, ld: k }, &packed, &mut got, ldc);
        assert_eq!(bits(&got), bits(&want));
    }

    /// A packed once (a convolution's weight) gives the bits of A packed per block, in one
    /// thread and in every row split; and it unpacks to the same values.
    #[test]
    fn a_packed_ahead_gives_gemm_bits() {
        // Past MC rows (three row blocks), past KC (three K blocks), rows not a multiple of MR.
        let (m, n, k, ldc) = (301, 90, 800, 93);
        let a = values(m * k, 11);
        let b = values(k * n, 12);
        let (rows, kn) = (ARows { data: &a, ld: k }, BMatrix::KN { data: &b, ld: n });
        let packed = PackedA::new(m, k, &rows);
        assert_eq!(packed.to_rows(), a);
        let mut want = values(m * ldc, 13);
        let start = want.clone();
        gemm(m, n, k, &a, k, &kn, &mut want, ldc);
        let bits = |c: &[f32]| c.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let mut got = start.clone();
        gemm_from(m, n, k, &packed, &kn, &mut got, ldc);
        assert_eq!(bits(&got), bits(&want), "one thread");
        let mut got = start.clone();
        par_gemm_from(m, n, k, &packed, &kn, &mut got, ldc);
        assert_eq!(bits(&got), bits(&want), "rows split among the threads");
        let mut got = start;
        par_gemm_shared_b(m, n, k, &packed, &kn, &mut got, ldc);
        assert_eq!(bits(&got), bits(&want), "rows split into tasks, B shared");
    }

    /// The column split: the same bits, and C's tail past each row (ldc > n) untouched.
    #[test]
    fn par_gemm_cols_gives_gemm_bits() {
        let (m, n, k, ldc) = (13, 1100, 800, 1103);
        let a = values(m * k, 8);
        let b = values(n * k, 9);
        let nk = BMatrix::NK { data: &b, ld: k };
        let mut want = values(m * ldc, 10);
        let mut got = want.clone();
        gemm(m, n, k, &a, k, &nk, &mut want, ldc);
        let start = got.clone();
        par_gemm_cols(m, n, k, &ARows { data: &a, ld: k }, &nk, &mut got, ldc);
        let bits = |c: &[f32]| c.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "B packed per thread");
        // B packed ahead: each piece reads its strips of the panels in place. 1100 columns
        // are three panels (368, 368, 364), and pieces of 144 (2 threads) straddle them.
        let mut got = start;
        par_gemm_cols(m, n, k, &ARows { data: &a, ld: k }, &PackedB::new(k, n, &nk), &mut got, ldc);
        assert_eq!(bits(&got), bits(&want), "B packed ahead");
    }

    #[test]
    fn par_gemm_gives_gemm_bits_in_strided_c() {
        // Rows shared among threads must not change a single bit, and C's tail past the
        // last row (ldc > n) must stay untouched.
        let (m, n, k, ldc) = (MR * 4 * 3 + 5, 29, 70, 33);
        let (a, b) = (values(m * k, 6), values(k * n, 7));
        let bm = BMatrix::KN { data: &b, ld: n };
        let mut one = vec![0.5f32; m * ldc];
        gemm(m, n, k, &a, k, &bm, &mut one, ldc);
        let mut par = vec![0.5f32; m * ldc];
        par_gemm(m, n, k, &a, k, &bm, &mut par, ldc);
        assert!(one.iter().zip(&par).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert_eq!(par[(m - 1) * ldc + n..], vec![0.5; ldc - n][..]);
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod x86_tests {
    use super::*;

    /// Each native tile kernel against f64 on a full and a clipped tile: the fused one
    /// within f32 rounding, the AVX2 build of the page's kernel to the bit of the plain
    /// build (the claim that lets the CLI reproduce the page's images), and no kernel
    /// writes outside its h x w corner.
    #[test]
    fn tile_kernels_match_f64_and_the_unfused_builds_each_other_bit_for_bit() {
        assert!(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"), "this test needs AVX2 and FMA");
        let kc = 37;
        let (a, b) = (lcg(kc * MR, 7), lcg(kc * NR, 11));
        for (h, w) in [(MR, NR), (MR - 1, 5)] {
            let ldc = NR + 3;
            let start = vec![0.25f32; MR * ldc];
            let run = |kernel: &dyn Fn(&mut [f32])| {
                let mut c = start.clone();
                kernel(&mut c);
                c
            };
            let plain = run(&|c| micro_kernel_body(&a, &b, c, ldc, h, w));
            // SAFETY: the CPU has AVX2 and FMA (asserted above).
            let avx2 = run(&|c| unsafe { micro_kernel_avx2(&a, &b, c, ldc, h, w) });
            let fma = run(&|c| unsafe { micro_kernel_fma(&a, &b, c, ldc, h, w) });
            assert_eq!(plain.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), avx2.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "{h}x{w}");
            for i in 0..MR {
                for j in 0..ldc {
                    let at = i * ldc + j;
                    if i >= h || j >= w {
                        assert!(plain[at] == 0.25 && fma[at] == 0.25, "{h}x{w}: ({i}, {j}) written outside the tile");
                        continue;
                    }
                    let want = 0.25 + (0..kc).map(|p| a[p * MR + i] as f64 * b[p * NR + j] as f64).sum::<f64>();
                    for (name, got) in [("plain", plain[at]), ("fma", fma[at])] {
                        assert!((got as f64 - want).abs() <= 1e-5, "{name} {h}x{w} ({i}, {j}): {got} vs {want}");
                    }
                }
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod fused_chain_tests {
    use super::*;

    /// The fused kernel's bits are, per value of C, one chain of single-rounding
    /// multiply-adds from zero in the order of K, then added to C: what the page's
    /// relaxed-SIMD kernel computes where its multiply-add fuses, so that
    /// `EASEL_CPU_ARITHMETIC=page-fused` reproduces that page's images.
    #[test]
    fn the_fused_kernel_is_a_chain_of_single_rounding_multiply_adds() {
        assert!(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"), "this test needs AVX2 and FMA");
        let kc = 53;
        let (a, b) = (lcg(kc * MR, 3), lcg(kc * NR, 5));
        let ldc = NR + 1;
        let mut c: Vec<f32> = lcg(MR * ldc, 9);
        let start = c.clone();
        // SAFETY: the CPU has AVX2 and FMA (asserted above).
        unsafe { micro_kernel_fma(&a, &b, &mut c, ldc, MR, NR) };
        let mut rounded_twice = 0;
        for i in 0..MR {
            for j in 0..NR {
                let chain = (0..kc).fold(0f32, |acc, p| a[p * MR + i].mul_add(b[p * NR + j], acc));
                let want = start[i * ldc + j] + chain;
                assert_eq!(c[i * ldc + j].to_bits(), want.to_bits(), "({i}, {j})");
                let unfused = (0..kc).fold(0f32, |acc, p| acc + a[p * MR + i] * b[p * NR + j]);
                rounded_twice += usize::from((start[i * ldc + j] + unfused).to_bits() != want.to_bits());
            }
        }
        // The test tells fused from unfused at all: most values differ in their last bits.
        assert!(rounded_twice > MR * NR / 2, "only {rounded_twice} of {} values tell the two apart", MR * NR);
    }

    /// `fuses` reads the kernel natively chosen: fused on an FMA CPU (the default), as the
    /// chain above says (its product 2^-46 survives only one rounding).
    #[test]
    fn fuses_says_whether_the_kernel_rounds_once() {
        assert!(std::arch::is_x86_feature_detected!("fma"), "this test needs FMA");
        assert_eq!(fuses(), !crate::ops::cpu::unfused_gemm());
        let e = 1.0 + f32::EPSILON;
        assert_eq!(e.mul_add(e, -(1.0 + 2.0 * f32::EPSILON)), 2f32.powi(-46), "one rounding keeps 2^-46");
        assert_eq!(e * e - (1.0 + 2.0 * f32::EPSILON), 0.0, "two roundings lose it");
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod avx512_tests {
    use super::*;

    /// The AVX-512 kernels give the 256-bit fused kernel's bits (the same chains of
    /// multiply-adds), write only their h x w corner, and the pairs' walk covers every row.
    /// They run on CPUs with AVX-512F; elsewhere there is nothing of theirs to run.
    #[test]
    fn avx512_kernels_give_the_fma_kernels_bits() {
        if !std::arch::is_x86_feature_detected!("avx512f") || !std::arch::is_x86_feature_detected!("fma") {
            eprintln!("this CPU has no AVX-512F: its kernels never run here");
            return;
        }
        let kc = 41;
        let (a, b) = (lcg(2 * kc * MR, 3), lcg(kc * NR, 5));
        let bits = |c: &[f32]| c.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for w in [NR, 5] {
            let ldc = NR + 3;
            let start = vec![0.25f32; 2 * MR * ldc];
            let mut want = start.clone();
            for (t, strip) in a.chunks_exact(kc * MR).enumerate() {
                // SAFETY: the CPU has AVX2, FMA and AVX-512F (checked above).
                unsafe { micro_kernel_fma(strip, &b, &mut want[t * MR * ldc..], ldc, MR, w) };
                let mut one = start.clone();
                unsafe { micro_kernel_avx512(strip, &b, &mut one[t * MR * ldc..], ldc, MR - 1, w) };
                let mut fma = start.clone();
                unsafe { micro_kernel_fma(strip, &b, &mut fma[t * MR * ldc..], ldc, MR - 1, w) };
                assert_eq!(bits(&one), bits(&fma), "one strip, {} x {w}", MR - 1);
            }
            let mut pair = start.clone();
            unsafe { micro_kernel_avx512_pair(&a, &b, &mut pair, ldc, w) };
            assert_eq!(bits(&pair), bits(&want), "a pair of strips, width {w}");
            assert!((0..2 * MR).all(|i| pair[i * ldc + w..(i + 1) * ldc].iter().all(|&v| v == 0.25)), "written past column {w}");
        }
        // Two B strips side by side: each half is the pair kernel's tile on that strip.
        let b2 = lcg(kc * NR, 7);
        for w in [2 * NR, NR + 5, 7] {
            let ldc = 2 * NR + 3;
            let start = vec![0.25f32; 2 * MR * ldc];
            let mut want = start.clone();
            unsafe { micro_kernel_avx512_pair(&a, &b, &mut want, ldc, w.min(NR)) };
            if w > NR {
                unsafe { micro_kernel_avx512_pair(&a, &b2, &mut want[NR..], ldc, w - NR) };
            }
            let mut quad = start.clone();
            unsafe { micro_kernel_avx512_quad(&a, &b, &b2, &mut quad, ldc, w) };
            assert_eq!(bits(&quad), bits(&want), "two strips of B, width {w}");
        }
    }
}
