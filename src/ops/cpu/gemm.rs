//! Cache-blocked, packed f32 GEMM, single-threaded: `C[M,N] += A[M,K] @ B[K,N]`.
//!
//! Goto's blocking: B is packed KC x NC at a time (sized for L2) into strips NR columns
//! wide, A into strips MR rows tall (MC x KC at a time), and an MR x NR register-blocked
//! micro-kernel walks K over one strip of each.
//! Packing zero-pads the strips, so the kernel never sees an edge; only the write-back of
//! edge tiles is clipped. B arrives through [`PackB`], so a convolution packs its im2col
//! panels straight from the image (implicit GEMM) instead of materializing them.

use super::f32x4::F32x4;
use super::pack::pack_a;
pub use super::pack::{BMatrix, PackB, PackedB};

/// Rows of A (and C) per micro-tile.
pub const MR: usize = 4;
/// Columns of B (and C) per micro-tile: NR / 4 vectors.
pub const NR: usize = 8;
const NV: usize = NR / 4;
/// Depth of one packed block; K is split into near-equal blocks no deeper than this.
const KC: usize = 384;
/// Rows of A packed at a time.
const MC: usize = 128;
/// Columns of B packed at a time: a KC x NC panel (768 KiB) stays in L2.
const NC: usize = 512;

/// The largest (KC, NC) block of B that [`gemm`] packs for a `k x n` B. Equal-sized blocks
/// waste less than full blocks plus a thin remainder; NC stays a multiple of NR.
pub(super) fn b_blocks(k: usize, n: usize) -> (usize, usize) {
    (k.div_ceil(k.div_ceil(KC)), n.div_ceil(n.div_ceil(NC)).next_multiple_of(NR))
}

/// `C[M,N] += A[M,K] @ B[K,N]`; A and C are row-major with row strides `lda` and `ldc`.
/// Callers start C at zero (or at a broadcast bias).
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, n: usize, k: usize, a: &[f32], lda: usize, b: &impl PackB, c: &mut [f32], ldc: usize) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(a.len() >= (m - 1) * lda + k && c.len() >= (m - 1) * ldc + n, "gemm operands too short");
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
            for i0 in (0..m).step_by(mc_max) {
                let mc = mc_max.min(m - i0);
                let ap = &mut apack[..kc * mc.next_multiple_of(MR)];
                pack_a(a, lda, i0, mc, p0, kc, ap);
                // One A strip stays in L1 while the B strips stream from L2, and C is
                // walked along its rows (its columns are ldc apart, often 4 KiB-aliased).
                for (t, strip) in ap.chunks_exact(kc * MR).enumerate() {
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
    }
}

/// `C[..h, ..w] += a_strip @ b_strip` for one MR x NR tile; `c` starts at the tile's corner.
/// On x86-64 with AVX2 the same code is compiled for 256-bit registers (the same operations
/// in the same order, so the same bits: Rust never fuses a multiply and an add).
#[inline(never)]
fn micro_kernel(a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, h: usize, w: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *AVX2.get_or_init(|| std::arch::is_x86_feature_detected!("avx2")) {
            // SAFETY: the CPU has AVX2 (checked above).
            return unsafe { micro_kernel_avx2(a, b, c, ldc, h, w) };
        }
    }
    micro_kernel_body(a, b, c, ldc, h, w)
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

/// [`gemm`] with the rows of C shared among the CPU backend's threads (natively every
/// core; in the page, the workers of a cross-origin isolated page). Each thread packs B
/// itself: packing is 1/M of the work of a block. Every row's sums run in the same order
/// whatever the thread count, so the result does not depend on it.
#[allow(clippy::too_many_arguments)]
pub fn par_gemm(m: usize, n: usize, k: usize, a: &[f32], lda: usize, b: &(impl PackB + Sync), c: &mut [f32], ldc: usize) {
    // Below a few tiles per thread the threads cost more than they save.
    let threads = super::threads::count().min(m / (4 * MR)).max(1);
    if threads > 1 && n > 0 && k > 0 {
        let rows = m.div_ceil(threads).next_multiple_of(MR);
        let c = &mut c[..(m - 1) * ldc + n];
        super::threads::for_each_piece(c, rows * ldc, |t, mine| {
            let r0 = t * rows;
            gemm(rows.min(m - r0), n, k, &a[r0 * lda..], lda, b, mine, ldc)
        });
        return;
    }
    gemm(m, n, k, a, lda, b, c, ldc)
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
