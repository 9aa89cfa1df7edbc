//! Packing for [`gemm`](super::gemm::gemm): A into MR-tall strips, B into NR-wide strips
//! (from a dense matrix in either layout, from an image through im2col, or packed once
//! ahead and reused).

use super::f32x4::F32x4;
use super::gemm::{b_blocks, KC, MR, NR};

/// A source of B panels.
pub trait PackB {
    /// Writes `B[p0..p0 + kc, j0..j0 + nc]` into `out` as `nc.div_ceil(NR)` strips of
    /// `kc x NR` values (row-major within a strip), zero past column `nc`.
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, out: &mut [f32]);

    /// The same panel when it is already packed somewhere, to use in place.
    fn packed(&self, _p0: usize, _kc: usize, _j0: usize, _nc: usize) -> Option<&[f32]> {
        None
    }
}

/// A dense row-major B matrix.
#[derive(Clone, Copy)]
pub enum BMatrix<'a> {
    /// `[K, N]`, rows `ld` apart.
    KN { data: &'a [f32], ld: usize },
    /// `[N, K]`, i.e. B transposed (how linear weights are stored), rows `ld` apart.
    NK { data: &'a [f32], ld: usize },
}

impl PackB for BMatrix<'_> {
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, out: &mut [f32]) {
        match *self {
            Self::KN { data, ld } => {
                for (s, strip) in out.chunks_exact_mut(kc * NR).enumerate() {
                    let js = j0 + s * NR;
                    let w = NR.min(j0 + nc - js);
                    for p in 0..kc {
                        let row = &data[(p0 + p) * ld..];
                        let dst: &mut [f32; NR] = (&mut strip[p * NR..][..NR]).try_into().unwrap();
                        // Fixed-size copies compile to vector moves; a slice copy of unknown
                        // length becomes a `memory.copy` call per NR values.
                        if w == NR {
                            *dst = row[js..js + NR].try_into().unwrap();
                        } else {
                            *dst = [0.0; NR];
                            dst[..w].copy_from_slice(&row[js..js + w]);
                        }
                    }
                }
            }
            // B's columns are rows here: strips NR of them wide, as A's are MR rows tall.
            Self::NK { data, ld } => pack_strips::<NR>(nc, kc, out, |j, line| line.copy_from_slice(&data[(j0 + j) * ld + p0..][..kc])),
        }
    }
}

/// B packed once, panel after panel in [`gemm`](super::gemm::gemm)'s order, for products
/// that reuse it with many A (attention's keys and values across query blocks).
pub struct PackedB {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl PackedB {
    /// Packs all of the `k x n` matrix `b`.
    pub fn new(k: usize, n: usize, b: &impl PackB) -> Self {
        let (kc_max, nc_max) = b_blocks(k, n);
        let mut data = vec![0.0; k * n.next_multiple_of(NR)];
        for j0 in (0..n).step_by(nc_max) {
            let nc = nc_max.min(n - j0);
            for p0 in (0..k).step_by(kc_max) {
                let kc = kc_max.min(k - p0);
                b.pack(p0, kc, j0, nc, Self::panel_mut(&mut data, k, p0, kc, j0, nc));
            }
        }
        Self { data, k, n }
    }

    /// The matrix back as `[N, K]` row-major (how a linear's weight is stored).
    pub fn to_nk(&self) -> Vec<f32> {
        let (kc_max, nc_max) = b_blocks(self.k, self.n);
        let mut out = vec![0.0; self.n * self.k];
        for j0 in (0..self.n).step_by(nc_max) {
            let nc = nc_max.min(self.n - j0);
            for p0 in (0..self.k).step_by(kc_max) {
                let kc = kc_max.min(self.k - p0);
                let panel = &self.data[Self::offset(self.k, p0, j0, nc)..][..kc * nc.next_multiple_of(NR)];
                for (s, strip) in panel.chunks_exact(kc * NR).enumerate() {
                    for (p, step) in strip.chunks_exact(NR).enumerate() {
                        for (jj, &v) in step.iter().enumerate().take(nc - s * NR) {
                            out[(j0 + s * NR + jj) * self.k + p0 + p] = v;
                        }
                    }
                }
            }
        }
        out
    }

    // Column blocks before j0 hold j0 (a multiple of NR) columns over all k rows; within a
    // block, the panels above p0 hold p0 rows of the padded block width.
    fn offset(k: usize, p0: usize, j0: usize, nc: usize) -> usize {
        j0 * k + p0 * nc.next_multiple_of(NR)
    }

    fn panel_mut(data: &mut [f32], k: usize, p0: usize, kc: usize, j0: usize, nc: usize) -> &mut [f32] {
        &mut data[Self::offset(k, p0, j0, nc)..][..kc * nc.next_multiple_of(NR)]
    }
}

impl PackB for PackedB {
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, out: &mut [f32]) {
        out.copy_from_slice(self.packed(p0, kc, j0, nc).expect("packed panel"));
    }

    fn packed(&self, p0: usize, kc: usize, j0: usize, nc: usize) -> Option<&[f32]> {
        let (kc_max, nc_max) = b_blocks(self.k, self.n);
        assert!(
            p0.is_multiple_of(kc_max) && j0.is_multiple_of(nc_max) && kc == kc_max.min(self.k - p0) && nc == nc_max.min(self.n - j0),
            "PackedB used with another shape than it was packed for"
        );
        Some(&self.data[Self::offset(self.k, p0, j0, nc)..][..kc * nc.next_multiple_of(NR)])
    }
}

/// A source of A blocks (a dense matrix, or a weight still in its stored format).
pub trait PackA: Sync {
    /// Writes `A[i0..i0 + mc, p0..p0 + kc]` into `out` as `mc.div_ceil(MR)` strips of
    /// `kc x MR` values (column-major within a strip), zero past row `mc`.
    fn pack(&self, i0: usize, mc: usize, p0: usize, kc: usize, out: &mut [f32]);

    /// The same block when it is already packed somewhere, to use in place (`i0` a
    /// multiple of MR). Rows past `mc` in its last strip may hold the next rows' values:
    /// the micro-kernel computes them but writes back only the block's own.
    fn packed(&self, _i0: usize, _mc: usize, _p0: usize, _kc: usize) -> Option<&[f32]> {
        None
    }
}

/// A packed once, for a weight that many products reuse (a convolution's `[O, C*kh*kw]`,
/// natively). K's blocks depend on K alone, so every row split the threads make finds its
/// blocks here: per block of K, all rows in MR-tall strips, one after another.
pub struct PackedA {
    data: Vec<f32>,
    m: usize,
    k: usize,
}

impl PackedA {
    /// Packs all of the `m x k` matrix `a`.
    pub fn new(m: usize, k: usize, a: &impl PackA) -> Self {
        let kc_max = b_blocks(k, 1).0;
        let mut data = vec![0.0; k * m.next_multiple_of(MR)];
        for p0 in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - p0);
            a.pack(0, m, p0, kc, &mut data[p0 * m.next_multiple_of(MR)..][..kc * m.next_multiple_of(MR)]);
        }
        Self { data, m, k }
    }

    /// The matrix back as rows of K (how a convolution's weight is stored).
    pub fn to_rows(&self) -> Vec<f32> {
        let kc_max = b_blocks(self.k, 1).0;
        let mut out = vec![0.0; self.m * self.k];
        for p0 in (0..self.k).step_by(kc_max) {
            let kc = kc_max.min(self.k - p0);
            let block = &self.data[p0 * self.m.next_multiple_of(MR)..][..kc * self.m.next_multiple_of(MR)];
            for (t, strip) in block.chunks_exact(kc * MR).enumerate() {
                for (p, step) in strip.chunks_exact(MR).enumerate() {
                    for (i, &v) in step.iter().enumerate().take(self.m - t * MR) {
                        out[(t * MR + i) * self.k + p0 + p] = v;
                    }
                }
            }
        }
        out
    }
}

impl PackA for PackedA {
    fn pack(&self, i0: usize, mc: usize, p0: usize, kc: usize, out: &mut [f32]) {
        out.copy_from_slice(self.packed(i0, mc, p0, kc).expect("packed block"));
    }

    fn packed(&self, i0: usize, mc: usize, p0: usize, kc: usize) -> Option<&[f32]> {
        let kc_max = b_blocks(self.k, 1).0;
        assert!(i0.is_multiple_of(MR) && i0 + mc <= self.m && p0.is_multiple_of(kc_max) && kc == kc_max.min(self.k - p0), "PackedA used with another shape than it was packed for");
        Some(&self.data[p0 * self.m.next_multiple_of(MR) + i0 * kc..][..kc * mc.next_multiple_of(MR)])
    }
}

/// A dense row-major A, rows `ld` apart.
#[derive(Clone, Copy)]
pub struct ARows<'a> {
    pub data: &'a [f32],
    pub ld: usize,
}

impl PackA for ARows<'_> {
    fn pack(&self, i0: usize, mc: usize, p0: usize, kc: usize, out: &mut [f32]) {
        pack_strips::<MR>(mc, kc, out, |i, line| line.copy_from_slice(&self.data[(i0 + i) * self.ld + p0..][..kc]));
    }
}

/// A given by its columns: `A[i][p]` is `data[p * ld + i]` (attention's values, `[L, dv]`,
/// as the A of V^T P^T). Each step of a strip is MR consecutive values of one row.
#[derive(Clone, Copy)]
pub struct AColumns<'a> {
    pub data: &'a [f32],
    pub ld: usize,
}

impl PackA for AColumns<'_> {
    fn pack(&self, i0: usize, mc: usize, p0: usize, kc: usize, out: &mut [f32]) {
        for (t, strip) in out.chunks_exact_mut(kc * MR).enumerate() {
            let i = i0 + t * MR;
            let h = MR.min(i0 + mc - i);
            for (p, dst) in strip.chunks_exact_mut(MR).enumerate() {
                let src = &self.data[(p0 + p) * self.ld + i..][..h];
                dst[..h].copy_from_slice(src);
                dst[h..].fill(0.0);
            }
        }
    }
}

/// The rows of `a` from `first` on: one thread's share of A.
pub(super) struct RowsFrom<'a, A>(pub &'a A, pub usize);

impl<A: PackA> PackA for RowsFrom<'_, A> {
    fn pack(&self, i0: usize, mc: usize, p0: usize, kc: usize, out: &mut [f32]) {
        self.0.pack(self.1 + i0, mc, p0, kc, out)
    }

    fn packed(&self, i0: usize, mc: usize, p0: usize, kc: usize) -> Option<&[f32]> {
        self.0.packed(self.1 + i0, mc, p0, kc)
    }
}

/// Lays `rows` lines of `kc` values out as strips `W` lines wide, each strip `kc` steps of
/// `W` values (A's strips with W = MR, a transposed B's with W = NR), zero past the last
/// line. `line(i, buf)` writes line `i` into `buf`.
pub(super) fn pack_strips<const W: usize>(rows: usize, kc: usize, out: &mut [f32], mut line: impl FnMut(usize, &mut [f32])) {
    if W.is_multiple_of(4) {
        return pack_strips_by_four::<W>(rows, kc, out, line);
    }
    let mut buf = [0.0f32; KC];
    for (t, strip) in out.chunks_exact_mut(kc * W).enumerate() {
        let h = W.min(rows - t * W);
        for i in 0..h {
            let values = &mut buf[..kc];
            line(t * W + i, values);
            for (step, &v) in strip.chunks_exact_mut(W).zip(values.iter()) {
                step[i] = v;
            }
        }
        if h < W {
            strip.chunks_exact_mut(W).for_each(|step| step[h..].fill(0.0));
        }
    }
}

/// [`pack_strips`] four lines at a time, for strips a multiple of four wide (the page's A
/// and B, and B natively): each 4 x 4 block of the lines goes in as four vector stores
/// after a transpose, where one value at a time cost a load and a store each. The page
/// packs a weight's strips from its stored blocks at every call, and at the UNet's deeper
/// levels (16-256 positions) that packing took as long as the product.
fn pack_strips_by_four<const W: usize>(rows: usize, kc: usize, out: &mut [f32], mut line: impl FnMut(usize, &mut [f32])) {
    let mut lines = [[0.0f32; KC]; 4];
    for (t, strip) in out.chunks_exact_mut(kc * W).enumerate() {
        let h = W.min(rows - t * W);
        for r0 in (0..W).step_by(4) {
            for (i, l) in lines.iter_mut().enumerate() {
                if r0 + i < h {
                    line(t * W + r0 + i, &mut l[..kc]);
                } else {
                    l[..kc].fill(0.0);
                }
            }
            let whole = kc - kc % 4;
            for p in (0..whole).step_by(4) {
                let block = F32x4::transpose(std::array::from_fn(|i| F32x4::load(lines[i][p..p + 4].try_into().unwrap())));
                for (j, v) in block.into_iter().enumerate() {
                    v.store((&mut strip[(p + j) * W + r0..][..4]).try_into().unwrap());
                }
            }
            for p in whole..kc {
                for (i, l) in lines.iter().enumerate() {
                    strip[p * W + r0 + i] = l[p];
                }
            }
        }
    }
}
