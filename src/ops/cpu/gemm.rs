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
pub use super::pack::{AColumns, ARows, BMatrix, PackA, PackB, PackedA, PackedB};

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

/// Whether this build's GEMM rounds a multiply-add once: 1 x 2 times 2 x 1 where the second
/// product, (1 + 2^-23)^2, exceeds the first's negation, 1 + 2^-22, by 2^-46, which a fused
/// multiply-add keeps and a rounded product loses. In the page: the relaxed-SIMD builds
/// where V8 fuses `f32x4.relaxed_madd` (the diagnostics report it).
pub fn fuses() -> bool {
    let e = 1.0 + f32::EPSILON;
    let a = [-(1.0 + 2.0 * f32::EPSILON), e];
    let mut c = [0.0f32];
    gemm(1, 1, 2, &a, 2, &BMatrix::KN { data: &[1.0, e], ld: 1 }, &mut c, 1);
    c[0] != 0.0
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
    // No packing room for an A packed ahead (the Winograd convolution's many small products).
    let ahead = a.packed(0, mc_max.min(m), 0, kc_max.min(k)).is_some();
    let mut apack = if ahead { Vec::new() } else { vec![0.0; kc_max * mc_max.min(m.next_multiple_of(MR))] };
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
    /// AVX-512 tiles two B strips wide ([`micro_kernel_avx512_quad`]).
    Avx512Wide,
    /// AVX-512 tiles one B strip wide (`EASEL_GEMM=avx512-narrow`, to compare).
    Avx512,
    Fma,
    Avx2,
    Plain,
}

/// The tile kernel this CPU runs: fused multiply-adds on the widest registers it has,
/// unless the page's unfused arithmetic was asked for (`EASEL_CPU_ARITHMETIC=page`).
/// `EASEL_GEMM=avx2` keeps the 256-bit kernel on an AVX-512 CPU and
/// `EASEL_GEMM=avx512-narrow` the one-B-strip tiles, to compare them in one session.
#[cfg(target_arch = "x86_64")]
fn x86_kernel() -> Kernel {
    static KERNEL: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| {
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        let fused = avx2 && std::arch::is_x86_feature_detected!("fma") && !super::unfused_gemm();
        let asked = std::env::var("EASEL_GEMM").unwrap_or_default();
        if fused && std::arch::is_x86_feature_detected!("avx512f") && asked != "avx2" {
            if asked == "avx512-narrow" {
                Kernel::Avx512
            } else {
                Kernel::Avx512Wide
            }
        } else if fused {
            Kernel::Fma
        } else if avx2 {
            Kernel::Avx2
        } else {
            Kernel::Plain
        }
    })
}

/// On an AVX-512 CPU, `C += A @ panel` for the block's full pairs of A strips: each pair
/// against two B strips at a time (2 MR x 2 NR, 24 accumulators, one load of B per four
/// multiply-adds), a last odd strip alone (2 MR x NR: twelve accumulators, enough to keep
/// the FMA units busy where six are not); returns how many pairs it did, the caller does
/// the rest.
#[allow(clippy::too_many_arguments)]
fn strip_pairs(mc: usize, kc: usize, ap: &[f32], bp: &[f32], c: &mut [f32], ldc: usize, (i0, j0, nc): (usize, usize, usize)) -> usize {
    #[cfg(target_arch = "x86_64")]
    if let kernel @ (Kernel::Avx512Wide | Kernel::Avx512) = x86_kernel() {
        let pairs = mc / (2 * MR);
        let quad = kernel == Kernel::Avx512Wide;
        for (t, pair) in ap.chunks_exact(2 * kc * MR).take(pairs).enumerate() {
            let i = i0 + 2 * t * MR;
            let mut s = 0;
            if quad {
                for bs in bp.chunks_exact(2 * kc * NR) {
                    let j = j0 + s * NR;
                    let (b0, b1) = bs.split_at(kc * NR);
                    // SAFETY: the CPU has AVX-512F (checked by x86_kernel).
                    unsafe { micro_kernel_avx512_quad(pair, b0, b1, &mut c[i * ldc + j..], ldc, (2 * NR).min(j0 + nc - j)) };
                    s += 2;
                }
            }
            for bs in bp.chunks_exact(kc * NR).skip(s) {
                let j = j0 + s * NR;
                // SAFETY: the CPU has AVX-512F (checked by x86_kernel).
                unsafe { micro_kernel_avx512_pair(pair, bs, &mut c[i * ldc + j..], ldc, NR.min(j0 + nc - j)) };
                s += 1;
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
/// In the page's relaxed-SIMD builds it is compiled with that target feature, so that
/// `F32x4::mul_add`'s `f32x4.relaxed_madd` inlines into its loop.
#[inline(never)]
#[cfg_attr(all(target_arch = "wasm32", feature = "relaxed-simd"), target_feature(enable = "relaxed-simd"))]
fn micro_kernel(a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, h: usize, w: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let kernel = x86_kernel();
        match kernel {
            // SAFETY: the CPU has AVX-512F (checked by x86_kernel).
            Kernel::Avx512Wide | Kernel::Avx512 => return unsafe { micro_kernel_avx512(a, b, c, ldc, h, w) },
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
/// multiply-add), which is the page's relaxed-SIMD builds' where V8 fuses theirs
/// (`EASEL_CPU_ARITHMETIC=page-fused`); `=page` keeps the unfused one, the SIMD128 builds'.
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

/// [`micro_kernel_avx512_pair`] on two B strips side by side: a 2 MR x 2 NR tile in 24
/// accumulators. Per step of K, 2 loads of B and 12 broadcasts of A feed 24 multiply-adds
/// (the pair kernel: 13 loads for 12), so the FMA units, not the loads, set the pace.
/// The same chains in the same order, so the same bits; its first `w` columns written.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_kernel_avx512_quad(a: &[f32], b0: &[f32], b1: &[f32], c: &mut [f32], ldc: usize, w: usize) {
    use std::arch::x86_64::*;
    let kc = b0.len() / NR;
    assert!(a.len() >= 2 * kc * MR && b0.len() >= kc * NR && b1.len() >= kc * NR && w <= 2 * NR);
    let (a0, a1) = a.split_at(kc * MR);
    let mut acc = [[_mm512_setzero_ps(); 2]; 2 * MR];
    for p in 0..kc {
        // SAFETY: p < kc, so the 16 values at p * NR of each strip are in bounds (asserted above).
        let bv = unsafe { [_mm512_loadu_ps(b0.as_ptr().add(p * NR)), _mm512_loadu_ps(b1.as_ptr().add(p * NR))] };
        for i in 0..MR {
            let (x0, x1) = (_mm512_set1_ps(a0[p * MR + i]), _mm512_set1_ps(a1[p * MR + i]));
            acc[i][0] = _mm512_fmadd_ps(x0, bv[0], acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(x0, bv[1], acc[i][1]);
            acc[MR + i][0] = _mm512_fmadd_ps(x1, bv[0], acc[MR + i][0]);
            acc[MR + i][1] = _mm512_fmadd_ps(x1, bv[1], acc[MR + i][1]);
        }
    }
    if w == 2 * NR {
        for (i, row) in acc.iter().enumerate() {
            let dst = &mut c[i * ldc..][..2 * NR];
            for (h, v) in row.iter().enumerate() {
                // SAFETY: `dst` holds 2 NR values, so 16 at h * NR are in bounds.
                unsafe {
                    let d = dst.as_mut_ptr().add(h * NR);
                    _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), *v));
                }
            }
        }
        return;
    }
    let mut tile = [0.0f32; 2 * MR * 2 * NR];
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: `tile` holds 2 MR rows of 2 NR values.
        unsafe {
            _mm512_storeu_ps(tile.as_mut_ptr().add(i * 2 * NR), row[0]);
            _mm512_storeu_ps(tile.as_mut_ptr().add(i * 2 * NR + NR), row[1]);
        }
    }
    for i in 0..2 * MR {
        for (d, t) in c[i * ldc..][..w].iter_mut().zip(&tile[i * 2 * NR..]) {
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
#[path = "gemm_tests.rs"]
mod gemm_tests;
