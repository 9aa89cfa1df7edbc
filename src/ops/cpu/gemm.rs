//! Cache-blocked, packed f32 GEMM, single-threaded: `C[M,N] += A[M,K] @ B[K,N]`.
//!
//! Goto's blocking: B is packed KC x NC at a time (sized for L2) into strips NR columns
//! wide, A into strips MR rows tall (MC x KC at a time), and an MR x NR register-blocked
//! micro-kernel walks K over one strip of each.
//! Packing zero-pads the strips, so the kernel never sees an edge; only the write-back of
//! edge tiles is clipped. B arrives through [`PackB`], so a convolution packs its im2col
//! panels straight from the image (implicit GEMM) instead of materializing them.

use super::f32x4::F32x4;
pub use super::gemm_par::{par_gemm, par_gemm_cols, par_gemm_from, par_gemm_shared_b};
pub use super::pack::{ARows, BMatrix, PackA, PackB, PackedA, PackedB};

/// Rows of A (and C) per micro-tile.
#[cfg(not(target_arch = "x86_64"))]
pub const MR: usize = 4;
/// Columns of B (and C) per micro-tile: NR / 4 vectors.
#[cfg(not(target_arch = "x86_64"))]
pub const NR: usize = 8;
/// Natively on x86-64 the tile fills 12 of the 16 AVX registers (6 rows x 2 x 8 lanes),
/// what the fused kernel needs to keep both FMA ports busy. The tile's shape does not
/// change any sum's order, so the unfused kernel still gives the page's bits on it.
#[cfg(target_arch = "x86_64")]
pub const MR: usize = 6;
#[cfg(target_arch = "x86_64")]
pub const NR: usize = 16;
const NV: usize = NR / 4;
/// Depth of one packed block; K is split into near-equal blocks no deeper than this.
pub(super) const KC: usize = 384;
/// Rows of A packed at a time.
pub(super) const MC: usize = 128;
/// Columns of B packed at a time: a KC x NC panel (768 KiB) stays in L2.
const NC: usize = 512;

/// The largest (KC, NC) block of B that [`gemm`] packs for a `k x n` B. Equal-sized blocks
/// waste less than full blocks plus a thin remainder; NC stays a multiple of NR.
pub(super) fn b_blocks(k: usize, n: usize) -> (usize, usize) {
    (k.div_ceil(k.div_ceil(KC)), n.div_ceil(n.div_ceil(NC)).next_multiple_of(NR))
}

/// A C of `n` zeros written, not `vec![0.0; n]`: that is calloc's fresh pages, which the GEMM
/// reads before it writes, so each page is first the shared zero page and then a copy
/// made on write, whose flush interrupts every other thread of the process (natively,
/// 4096x320x320 on 2 threads took twice as long as on 1).
pub fn written_zeros(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    v.resize(n, 0.0);
    v
}

/// `C[M,N] += A[M,K] @ B[K,N]`; A and C are row-major with row strides `lda` and `ldc`.
/// Callers start C at zero (or at a broadcast bias).
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, n: usize, k: usize, a: &[f32], lda: usize, b: &impl PackB, c: &mut [f32], ldc: usize) {
    assert!(m == 0 || k == 0 || a.len() >= (m - 1) * lda + k, "gemm: A too short");
    gemm_from(m, n, k, &ARows { data: a, ld: lda }, b, c, ldc)
}

/// [`gemm`] with A from any [`PackA`] source (a weight in its stored format, say).
pub fn gemm_from(m: usize, n: usize, k: usize, a: &impl PackA, b: &impl PackB, c: &mut [f32], ldc: usize) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "gemm: C too short");
    let (kc_max, nc_max) = b_blocks(k, n);
    let mc_max = m.div_ceil(m.div_ceil(MC)).next_multiple_of(MR);
    let mut bpack = Vec::new();
    let mut apack = vec![0.0; kc_max * mc_max.min(m.next_multiple_of(MR))];
    for j0 in (0..n).step_by(nc_max) {
        let nc = nc_max.min(n - j0);
        for p0 in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - p0);
            let bp = match b.packed(p0, kc, j0, nc) {
                Some(panel) => panel,
                None => {
                    bpack.resize(kc_max * nc_max, 0.0);
                    let panel = &mut bpack[..kc * nc.next_multiple_of(NR)];
                    b.pack(p0, kc, j0, nc, panel);
                    panel
                }
            };
            rows_times_panel(m, a, (p0, kc), (j0, nc), bp, c, ldc, &mut apack);
        }
    }
}

/// `C[..m, j0..j0 + nc] += A[..m, p0..p0 + kc] @ panel`, the panel packed: up to MC rows
/// of A packed at a time into `apack` (kc x min(m, MC) rounded up to MR is enough).
#[allow(clippy::too_many_arguments)]
pub(super) fn rows_times_panel(m: usize, a: &impl PackA, (p0, kc): (usize, usize), (j0, nc): (usize, usize), bp: &[f32], c: &mut [f32], ldc: usize, apack: &mut [f32]) {
    let mc_max = m.div_ceil(m.div_ceil(MC)).next_multiple_of(MR);
    for i0 in (0..m).step_by(mc_max) {
        let mc = mc_max.min(m - i0);
        let ap = match a.packed(i0, mc, p0, kc) {
            Some(block) => block,
            None => {
                let ap = &mut apack[..kc * mc.next_multiple_of(MR)];
                a.pack(i0, mc, p0, kc, ap);
                &*ap
            }
        };
        // One A strip stays in L1 while the B strips stream from L2, and C is
        // walked along its rows (its columns are ldc apart, often 4 KiB-aliased).
        // Strips of A two at a time where the CPU has AVX-512; then the rest one at a time.
        let paired = strip_pairs(mc, kc, ap, bp, c, ldc, (i0, j0, nc));
        for (t, strip) in ap.chunks_exact(kc * MR).enumerate().skip(2 * paired) {
            let i = i0 + t * MR;
            let h = MR.min(i0 + mc - i);
            for (s, bs) in bp.chunks_exact(kc * NR).enumerate() {
                let j = j0 + s * NR;
                let w = NR.min(j0 + nc - j);
                micro_kernel(strip, bs, &mut c[i * ldc + j..], ldc, h, w);
            }
        }
    }
}

/// The native tile kernels, fastest first.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kernel {
    Avx512,
    Fma,
    Avx2,
    Plain,
}

/// The tile kernel this CPU runs: fused multiply-adds on the widest registers it has,
/// unless the page's arithmetic was asked for. `EASEL_GEMM=avx2` keeps the 256-bit kernel
/// on an AVX-512 CPU, to compare the two in one session.
#[cfg(target_arch = "x86_64")]
fn x86_kernel() -> Kernel {
    static KERNEL: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| {
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        let fused = avx2 && std::arch::is_x86_feature_detected!("fma") && !super::page_arithmetic();
        if fused && std::arch::is_x86_feature_detected!("avx512f") && std::env::var("EASEL_GEMM").map_or(true, |v| v != "avx2") {
            Kernel::Avx512
        } else if fused {
            Kernel::Fma
        } else if avx2 {
            Kernel::Avx2
        } else {
            Kernel::Plain
        }
    })
}

/// On an AVX-512 CPU, `C += A @ panel` for the block's full pairs of A strips (2 x MR
/// rows against each B strip: twelve independent accumulators, enough to keep the FMA
/// units busy where six are not); returns how many pairs it did, the caller does the rest.
#[allow(clippy::too_many_arguments)]
fn strip_pairs(mc: usize, kc: usize, ap: &[f32], bp: &[f32], c: &mut [f32], ldc: usize, (i0, j0, nc): (usize, usize, usize)) -> usize {
    #[cfg(target_arch = "x86_64")]
    if x86_kernel() == Kernel::Avx512 {
        let pairs = mc / (2 * MR);
        for (t, pair) in ap.chunks_exact(2 * kc * MR).take(pairs).enumerate() {
            let i = i0 + 2 * t * MR;
            for (s, bs) in bp.chunks_exact(kc * NR).enumerate() {
                let j = j0 + s * NR;
                // SAFETY: the CPU has AVX-512F (checked by x86_kernel).
                unsafe { micro_kernel_avx512_pair(pair, bs, &mut c[i * ldc + j..], ldc, NR.min(j0 + nc - j)) };
            }
        }
        return pairs;
    }
    let _ = (mc, kc, ap, bp, c, ldc, i0, j0, nc);
    0
}

/// `C[..h, ..w] += a_strip @ b_strip` for one MR x NR tile; `c` starts at the tile's corner.
/// Natively on x86-64: fused multiply-adds where the CPU has them, unless the page's
/// arithmetic was asked for; else the unfused body compiled for AVX2 (the same operations
/// in the same order as the page's SIMD128, so the same bits: Rust never fuses on its own).
#[inline(never)]
fn micro_kernel(a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, h: usize, w: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let kernel = x86_kernel();
        match kernel {
            // SAFETY: the CPU has AVX-512F (checked by x86_kernel).
            Kernel::Avx512 => return unsafe { micro_kernel_avx512(a, b, c, ldc, h, w) },
            // SAFETY: the CPU has AVX2 and FMA (checked by x86_kernel).
            Kernel::Fma => return unsafe { micro_kernel_fma(a, b, c, ldc, h, w) },
            // SAFETY: the CPU has AVX2 (checked by x86_kernel).
            Kernel::Avx2 => return unsafe { micro_kernel_avx2(a, b, c, ldc, h, w) },
            Kernel::Plain => {}
        }
    }
    micro_kernel_body(a, b, c, ldc, h, w)
}

/// The MR x NR tile with fused multiply-adds on 256-bit registers (x86-64 with AVX2 and
/// FMA, natively): 12 accumulators, two B loads and MR broadcasts per step of K. Twice the
/// arithmetic per instruction of the unfused kernel, and different rounding (one per
/// multiply-add): the page's arithmetic (`EASEL_CPU_ARITHMETIC=page`) keeps the unfused one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_kernel_fma(a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, h: usize, w: usize) {
    use std::arch::x86_64::*;
    const { assert!(MR == 6 && NR == 16) };
    let kc = b.len() / NR;
    assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for p in 0..kc {
        // SAFETY: p < kc, so the 16 values at p * NR and the MR at p * MR are in bounds (asserted above).
        let (b0, b1) = unsafe { (_mm256_loadu_ps(b.as_ptr().add(p * NR)), _mm256_loadu_ps(b.as_ptr().add(p * NR + 8))) };
        for (i, row) in acc.iter_mut().enumerate() {
            let x = _mm256_set1_ps(a[p * MR + i]);
            row[0] = _mm256_fmadd_ps(x, b0, row[0]);
            row[1] = _mm256_fmadd_ps(x, b1, row[1]);
        }
    }
    let mut tile = [0.0f32; MR * NR];
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: `tile` holds MR rows of NR values.
        unsafe {
            _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR), row[0]);
            _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR + 8), row[1]);
        }
    }
    for i in 0..h {
        for (d, t) in c[i * ldc..][..w].iter_mut().zip(&tile[i * NR..]) {
            *d += t;
        }
    }
}

/// [`micro_kernel_fma`] on 512-bit registers (x86-64 with AVX-512F, natively): one
/// register per row of the tile, half the instructions per step of K. Each value is the
/// same chain of multiply-adds in the same order, so the bits are `micro_kernel_fma`'s.
/// Six accumulators leave the FMA units waiting: full pairs of strips go to
/// [`micro_kernel_avx512_pair`], this one takes what is left.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_kernel_avx512(a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, h: usize, w: usize) {
    use std::arch::x86_64::*;
    const { assert!(MR == 6 && NR == 16) };
    let kc = b.len() / NR;
    assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    let mut acc = [_mm512_setzero_ps(); MR];
    for p in 0..kc {
        // SAFETY: p < kc, so the 16 values at p * NR are in bounds (asserted above).
        let bv = unsafe { _mm512_loadu_ps(b.as_ptr().add(p * NR)) };
        for (i, row) in acc.iter_mut().enumerate() {
            *row = _mm512_fmadd_ps(_mm512_set1_ps(a[p * MR + i]), bv, *row);
        }
    }
    let mut tile = [0.0f32; MR * NR];
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: `tile` holds MR rows of NR values.
        unsafe { _mm512_storeu_ps(tile.as_mut_ptr().add(i * NR), *row) };
    }
    for i in 0..h {
        for (d, t) in c[i * ldc..][..w].iter_mut().zip(&tile[i * NR..]) {
            *d += t;
        }
    }
}

/// [`micro_kernel_avx512`] on two consecutive A strips (`a`: 2 x kc x MR values) and one B
/// strip: a 2 MR x NR tile, every row full, its first `w` columns written. The same chains
/// in the same order as the one-strip kernels, so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_kernel_avx512_pair(a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, w: usize) {
    use std::arch::x86_64::*;
    let kc = b.len() / NR;
    assert!(a.len() >= 2 * kc * MR && b.len() >= kc * NR && w <= NR);
    let (a0, a1) = a.split_at(kc * MR);
    let mut acc = [_mm512_setzero_ps(); 2 * MR];
    for p in 0..kc {
        // SAFETY: p < kc, so the 16 values at p * NR are in bounds (asserted above).
        let bv = unsafe { _mm512_loadu_ps(b.as_ptr().add(p * NR)) };
        for i in 0..MR {
            acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(a0[p * MR + i]), bv, acc[i]);
            acc[MR + i] = _mm512_fmadd_ps(_mm512_set1_ps(a1[p * MR + i]), bv, acc[MR + i]);
        }
    }
    let mut tile = [0.0f32; 2 * MR * NR];
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: `tile` holds 2 MR rows of NR values.
        unsafe { _mm512_storeu_ps(tile.as_mut_ptr().add(i * NR), *row) };
    }
    for i in 0..2 * MR {
        for (d, t) in c[i * ldc..][..w].iter_mut().zip(&tile[i * NR..]) {
            *d += t;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn micro_kernel_avx2(a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, h: usize, w: usize) {
    micro_kernel_body(a, b, c, ldc, h, w)
}

#[inline(always)]
fn micro_kernel_body(a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, h: usize, w: usize) {
    let mut acc = [[F32x4::zero(); NV]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        let bv: [F32x4; NV] = std::array::from_fn(|v| F32x4::load(bp[4 * v..4 * v + 4].try_into().unwrap()));
        for (row, &x) in acc.iter_mut().zip(ap) {
            let x = F32x4::splat(x);
            for (r, &bv) in row.iter_mut().zip(&bv) {
                *r = r.mul_add(x, bv);
            }
        }
    }
    if h == MR && w == NR {
        for (i, row) in acc.iter().enumerate() {
            let dst = &mut c[i * ldc..][..NR];
            for (d, r) in dst.chunks_exact_mut(4).zip(row) {
                let d: &mut [f32; 4] = d.try_into().unwrap();
                r.add(F32x4::load(d)).store(d);
            }
        }
    } else {
        let mut tile = [0.0f32; MR * NR];
        for (t, r) in tile.chunks_exact_mut(4).zip(acc.iter().flatten()) {
            r.store(t.try_into().unwrap());
        }
        for i in 0..h {
            for (d, t) in c[i * ldc..][..w].iter_mut().zip(&tile[i * NR..]) {
                *d += t;
            }
        }
    }
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
        // B packed ahead: each thread reads its strips of the panels in place. 1100 columns
        // are three panels (368, 368, 364); on 2 threads both take strips of the middle one.
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
        let lcg = |n: usize, seed: u32| -> Vec<f32> { (0..n as u32).map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect() };
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
        let lcg = |n: usize, seed: u32| -> Vec<f32> { (0..n as u32).map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect() };
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
    }
}
