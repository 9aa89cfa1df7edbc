//! Winograd F(2x2, 3x3) convolution (Lavin and Gray, "Fast Algorithms for Convolutional
//! Neural Networks", 2015): the fast precision's 3x3 stride-1 convolutions on the CPU.
//!
//! Each 2x2 block of outputs (a tile) comes from a 4x4 patch of input `d` and the 3x3
//! kernel `g` as `A^T [(G g G^T) ⊙ (B^T d B)] A`: 16 multiplies per tile and channel pair
//! where the direct convolution makes 36, so the GEMMs do 2.25x less arithmetic. The
//! transforms only add and halve, but the sums are ordered differently from the direct
//! convolution's, so the result differs from it in the last bits (measured by the tests).
//!
//! Per task (a run of tiles, sized so that its transformed input and products stay in L2):
//! the input tiles are transformed into 16 matrices `V[ξ]` of `[C, tiles]`, multiplied by
//! the transformed weights `U[ξ]` of `[O, C]` (packed once per call) through the packed
//! GEMM, and the 16 products `M[ξ]` of `[O, tiles]` are transformed back into outputs.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Device, Result, Tensor};

use super::gemm::{b_blocks, gemm_from, ARows, PackB, PackedA, NR};
use super::gemm_ops::with_values;
use super::threads;
use super::wide::widest;

static FAST: AtomicBool = AtomicBool::new(false);

/// Sets the process's default CPU precision (the CLI's `--precision`, the page engine's
/// `precision`): whether CPU sessions and executors made from now on run their 3x3
/// convolutions through this module instead of the direct implicit GEMM.
pub fn set_fast_precision(on: bool) {
    FAST.store(on, Ordering::Relaxed);
}

/// The process's default CPU precision: fast (true) or exact.
pub fn fast_precision() -> bool {
    FAST.load(Ordering::Relaxed)
}

/// The CPU's precision in words, as the diagnostics and `Session::precision` give it.
pub fn describe(fast: bool) -> &'static str {
    if fast {
        "fast (Winograd 3x3 convolutions)"
    } else {
        "exact"
    }
}

/// The share of a direct 3x3 convolution's multiplies that this path makes: 16 per tile
/// and channel pair against 36.
pub const MULTIPLIES: f64 = 16.0 / 36.0;

/// Whether a convolution of weight `[o, c, kh, kw]` at `stride` over `x` `[.., H, W]` gains
/// from this path: 3x3 at stride 1, over enough channels and pixels that transforming the
/// weights (16 x O x C values per call) costs little beside the products. At 32x32,
/// transforming a 512-channel weight took a third of the convolution's time.
pub fn suits(w: &[usize], stride: usize, x: &[usize]) -> bool {
    let pixels = x.iter().rev().take(2).product::<usize>();
    matches!(*w, [o, c, 3, 3] if stride == 1 && c >= 16 && o >= 16 && pixels >= 64 * 64)
}

/// [`conv3x3`] with the weight as `[O, C*9]` rows.
pub fn conv3x3_rows(x: &Tensor, [o, c, _, _]: [usize; 4], rows: &[f32], bias: Option<&Tensor>, pad: [usize; 4]) -> Result<Tensor> {
    conv3x3(x, &WinogradWeights::new(o, c, rows), bias, pad)
}

/// A 3x3 convolution's weights in the Winograd domain: `U[ξ] = (G g G^T)[ξ]` for each of the
/// 16 positions ξ, as `[O, C]` matrices packed for the GEMM.
pub struct WinogradWeights {
    u: Vec<PackedA>,
    o: usize,
    c: usize,
}

impl WinogradWeights {
    /// From the weight as rows of `[O, C*9]` (its stored order).
    pub fn new(o: usize, c: usize, rows: &[f32]) -> Self {
        assert_eq!(rows.len(), o * c * 9, "winograd: weight of {} values for [{o}, {c}, 3, 3]", rows.len());
        // [O][16][C]: each output channel's 16 rows are one task's piece.
        let u = threads::written(o * 16 * c, 16 * c, |oi, piece| {
            for ci in 0..c {
                let t = kernel_transform(rows[(oi * c + ci) * 9..][..9].try_into().expect("9 taps"));
                for (xi, v) in t.into_iter().enumerate() {
                    piece[xi * c + ci] = v;
                }
            }
        });
        let u = threads::map(16, |xi| PackedA::new(o, c, &ARows { data: &u[xi * c..], ld: 16 * c }));
        Self { u, o, c }
    }
}

/// `G g G^T` for one 3x3 kernel `g` (row-major), as 16 values row-major: rows of G applied
/// down g's columns, then along each row. G = [[1,0,0],[½,½,½],[½,-½,½],[0,0,1]].
fn kernel_transform(g: &[f32; 9]) -> [f32; 16] {
    let g_rows = |a: f32, b: f32, c: f32| [a, (a + b + c) * 0.5, (a - b + c) * 0.5, c];
    let mut gg = [[0.0f32; 3]; 4];
    for j in 0..3 {
        let col = g_rows(g[j], g[3 + j], g[6 + j]);
        for i in 0..4 {
            gg[i][j] = col[i];
        }
    }
    let mut out = [0.0; 16];
    for i in 0..4 {
        out[i * 4..][..4].copy_from_slice(&g_rows(gg[i][0], gg[i][1], gg[i][2]));
    }
    out
}

/// The output, written by the tasks at disjoint tiles.
struct Output {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: tasks write disjoint tiles of the output (see `Output::span`), and it outlives them.
unsafe impl Sync for Output {}

impl Output {
    /// Values `start..start + len`.
    /// SAFETY: no two callers may hold overlapping spans at once.
    #[allow(clippy::mut_from_ref)]
    unsafe fn span(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.len, "winograd: output span past the end");
        std::slice::from_raw_parts_mut(self.ptr.add(start), len)
    }
}

/// Tiles per task: its transformed inputs and products (16 x (C + O) values per tile) in
/// about 384 KiB, within [32, 512] (512 is the GEMM's panel width) and a multiple of the
/// GEMM's strip width. Measured on 128 to 512 channels: budgets of 384 KiB to 6 MiB were
/// within 10% of each other, the smallest best.
fn tiles_per_task(c: usize, o: usize) -> usize {
    ((384 << 10) / (64 * (c + o))).clamp(32, 512).next_multiple_of(NR)
}

/// A task's transformed input, laid out as the GEMM packs B (so it packs nothing): per
/// position ξ, `[C, n]` in blocks of `kc` rows, each block `n / NR` strips of `kc x NR`.
struct PackedV<'a> {
    data: &'a [f32],
    /// Columns (tiles) rounded up to NR.
    npad: usize,
}

impl PackB for PackedV<'_> {
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, out: &mut [f32]) {
        out.copy_from_slice(self.packed(p0, kc, j0, nc).expect("one panel of columns"));
    }

    fn packed(&self, p0: usize, kc: usize, j0: usize, nc: usize) -> Option<&[f32]> {
        assert!(j0 == 0 && nc.next_multiple_of(NR) == self.npad, "winograd: a task's tiles are one GEMM panel wide");
        Some(&self.data[p0 * self.npad..][..kc * self.npad])
    }
}

/// Where row `p` of a packed `[k, npad]` matrix (`kc`-row blocks, as [`b_blocks`] splits K)
/// puts column `j`.
#[inline(always)]
fn packed_at(p: usize, j: usize, kc: usize, k: usize, npad: usize) -> usize {
    let p0 = p / kc * kc;
    let rows = kc.min(k - p0);
    p0 * npad + (j / NR) * rows * NR + (p - p0) * NR + j % NR
}

/// NCHW convolution by a 3x3 kernel at stride 1 with [top, bottom, left, right] zero
/// padding, plus `bias` per output channel.
pub fn conv3x3(x: &Tensor, w: &WinogradWeights, bias: Option<&Tensor>, pad: [usize; 4]) -> Result<Tensor> {
    let (batch, c, h, wi) = x.dims4()?;
    if c != w.c {
        candle_core::bail!("winograd: input of {c} channels for a weight of {}", w.c);
    }
    let o = w.o;
    let (ho, wo) = ((h + pad[0] + pad[1]).saturating_sub(2), (wi + pad[2] + pad[3]).saturating_sub(2));
    let bias = match bias {
        Some(b) => b.flatten_all()?.to_vec1::<f32>()?,
        None => vec![0.0; o],
    };
    let mut y = super::gemm::written_zeros(batch * o * ho * wo);
    if ho == 0 || wo == 0 {
        return Tensor::from_vec(y, (batch, o, ho, wo), &Device::Cpu);
    }
    let geometry = Geometry { c, h, w: wi, ho, wo, top: pad[0], left: pad[2], tw: wo.div_ceil(2) };
    let tiles = ho.div_ceil(2) * geometry.tw;
    let per = tiles_per_task(c, o);
    with_values(x, |x| {
        for (img, y) in x.chunks_exact(c * h * wi).zip(y.chunks_exact_mut(o * ho * wo)) {
            let out = Output { ptr: y.as_mut_ptr(), len: y.len() };
            threads::for_each(tiles.div_ceil(per), &|task| {
                let run = task * per..tiles.min((task + 1) * per);
                WORK.with_borrow_mut(|work| {
                    widest(
                        #[inline(always)]
                        || geometry.run(img, w, &bias, run, &out, work),
                    )
                })
            });
        }
    })?;
    Tensor::from_vec(y, (batch, o, ho, wo), &Device::Cpu)
}

/// One image's shapes: tiles are 2x2 outputs, `tw` of them per row of tiles.
#[derive(Clone, Copy)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    top: usize,
    left: usize,
    tw: usize,
}

impl Geometry {
    /// The tiles `run` (in row-major order) of one image `x` into `out`.
    #[inline(always)]
    fn run(&self, x: &[f32], w: &WinogradWeights, bias: &[f32], run: std::ops::Range<usize>, out: &Output, work: &mut Work) {
        let (c, o, n) = (self.c, w.o, run.len());
        // Row segments of tiles: (tile row, first tile, last tile + 1, offset in the run).
        let segments: Vec<(usize, usize, usize, usize)> = (run.start / self.tw..=(run.end - 1) / self.tw)
            .map(|ty| {
                let a = run.start.max(ty * self.tw) - ty * self.tw;
                let b = run.end.min((ty + 1) * self.tw) - ty * self.tw;
                (ty, a, b, ty * self.tw + a - run.start)
            })
            .collect();
        let npad = n.next_multiple_of(NR);
        let kc = b_blocks(c, npad).0;
        {
            let Work { v, m, scratch } = work;
            // Stale values in the columns past n are harmless: each product column reads
            // only its own column of V, and the GEMM writes back columns below n only.
            grow(v, 16 * c * npad);
            grow(m, 16 * o * n);
            scratch.fit(self.tw + 1);
            for &(ty, a, b, at) in &segments {
                for ci in 0..c {
                    let plane = &x[ci * self.h * self.w..][..self.h * self.w];
                    self.input_columns(plane, ty, a, b, scratch);
                    // Along the rows (.. B), straight into V's strips: tile k's columns
                    // are even[k], odd[k], even[k + 1], odd[k + 1].
                    let (mut k, mut j) = (0, at);
                    while k < b - a {
                        let len = (NR - j % NR).min(b - a - k);
                        let p = packed_at(ci, j, kc, c, npad);
                        for i in 0..4 {
                            let (e, od) = (&scratch.even[i][k..k + len + 1], &scratch.odd[i][k..k + len + 1]);
                            let base = 4 * i * c * npad + p;
                            let (e0, e1, o0, o1) = (&e[..len], &e[1..], &od[..len], &od[1..]);
                            combine(&mut v[base..][..len], e0, e1, |x, y| x - y);
                            combine(&mut v[base + c * npad..][..len], o0, e1, |x, y| x + y);
                            combine(&mut v[base + 2 * c * npad..][..len], e1, o0, |x, y| x - y);
                            combine(&mut v[base + 3 * c * npad..][..len], o0, o1, |x, y| x - y);
                        }
                        k += len;
                        j += len;
                    }
                }
            }
            // M[ξ] = U[ξ] V[ξ]: [O, C] x [C, n], each from zeros.
            m[..16 * o * n].fill(0.0);
            for xi in 0..16 {
                let vx = PackedV { data: &v[xi * c * npad..][..c * npad], npad };
                gemm_from(o, n, c, &w.u[xi], &vx, &mut m[xi * o * n..][..o * n], n);
            }
            for &(ty, a, b, at) in &segments {
                for (oi, &b_o) in bias.iter().enumerate() {
                    let m_at = |xi: usize| &m[(xi * o + oi) * n + at..][..b - a];
                    self.output_tiles(m_at, b_o, oi, ty, a, b, scratch, out);
                }
            }
        }
    }

    /// `B^T d` for the tiles `a..b` of tile row `ty` in one channel's plane, into
    /// `s.even` / `s.odd`: the patches' 4 rows transformed down their columns, over
    /// columns 2a - left ..= 2b - left + 1 (zero outside the image), split into even and
    /// odd ones. B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]].
    #[inline(always)]
    fn input_columns(&self, plane: &[f32], ty: usize, a: usize, b: usize, s: &mut Scratch) {
        let n = b - a;
        let x0 = (2 * a) as isize - self.left as isize;
        let width = 2 * n + 2;
        for r in 0..4 {
            let iy = (2 * ty + r).wrapping_sub(self.top);
            let row = if iy < self.h { Some(&plane[iy * self.w..][..self.w]) } else { None };
            let line: &[f32] = match row {
                // Inside the image: read in place.
                Some(row) if x0 >= 0 && x0 as usize + width <= self.w => &row[x0 as usize..][..width],
                _ => {
                    let line = &mut s.line[..width];
                    line.fill(0.0);
                    if let Some(row) = row {
                        let lo = x0.max(0) as usize;
                        let hi = ((x0 + width as isize).min(self.w as isize)).max(lo as isize) as usize;
                        let from = (lo as isize - x0) as usize;
                        line[from..from + hi - lo].copy_from_slice(&row[lo..hi]);
                    }
                    &s.line[..width]
                }
            };
            let (even, odd) = (&mut s.even[r][..n + 1], &mut s.odd[r][..n + 1]);
            for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(line.chunks_exact(2)) {
                *e = pair[0];
                *o = pair[1];
            }
        }
        for cols in [&mut s.even, &mut s.odd] {
            let [c0, c1, c2, c3] = cols;
            let rows = c0[..=n].iter_mut().zip(c1[..=n].iter_mut()).zip(c2[..=n].iter_mut()).zip(c3[..=n].iter_mut());
            for (((r0, r1), r2), r3) in rows {
                let [d0, d1, d2, d3] = [*r0, *r1, *r2, *r3];
                *r0 = d0 - d2;
                *r1 = d1 + d2;
                *r2 = d2 - d1;
                *r3 = d1 - d3;
            }
        }
    }

    /// `A^T M A + bias` for the tiles `a..b` of tile row `ty` of output channel `oi`, where
    /// `m(ξ)` holds position ξ of each tile's product; written into `out`, clipped at the
    /// image's edge. A^T = [[1,1,1,0],[0,1,-1,-1]].
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn output_tiles<'m>(&self, m: impl Fn(usize) -> &'m [f32], bias: f32, oi: usize, ty: usize, a: usize, b: usize, s: &mut Scratch, out: &Output) {
        let n = b - a;
        // Down the columns: s0[j] = M0j + M1j + M2j, s1[j] = M1j - M2j - M3j (in `even`, `odd`).
        for j in 0..4 {
            let (m0, m1, m2, m3) = (m(j), m(4 + j), m(8 + j), m(12 + j));
            let sums = s.even[j][..n].iter_mut().zip(s.odd[j][..n].iter_mut()).zip(m0).zip(m1).zip(m2).zip(m3);
            for (((((s0, s1), &x0), &x1), &x2), &x3) in sums {
                *s0 = x0 + x1 + x2;
                *s1 = x1 - x2 - x3;
            }
        }
        let plane = oi * self.ho * self.wo;
        let x0 = 2 * a;
        let width = (2 * b).min(self.wo) - x0;
        for (dy, rows) in [&s.even, &s.odd].into_iter().enumerate() {
            let yrow = 2 * ty + dy;
            if yrow >= self.ho {
                break;
            }
            // Along the rows, interleaved into the output row: y0 = s0 + s1 + s2, y1 = s1 - s2 - s3.
            // SAFETY: this task owns tiles a..b of tile row ty: output rows 2ty, 2ty + 1
            // over columns 2a..2b of every channel.
            let dst = unsafe { out.span(plane + yrow * self.wo + x0, width) };
            let (pairs, last) = dst.split_at_mut(width / 2 * 2);
            let (r0, r1, r2, r3) = (&rows[0][..n], &rows[1][..n], &rows[2][..n], &rows[3][..n]);
            for ((((pair, &x0), &x1), &x2), &x3) in pairs.chunks_exact_mut(2).zip(r0).zip(r1).zip(r2).zip(r3) {
                pair[0] = x0 + x1 + x2 + bias;
                pair[1] = x1 - x2 - x3 + bias;
            }
            if let Some(y) = last.first_mut() {
                let k = width / 2;
                *y = rows[0][k] + rows[1][k] + rows[2][k] + bias;
            }
        }
    }
}

/// `dst[t] = f(a[t], b[t])`, inlined so that the loop vectorizes.
#[inline(always)]
fn combine(dst: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d = f(x, y);
    }
}

/// A thread's working memory, kept between tasks and calls: fresh pages for each task's
/// megabyte were a page fault per 4 KiB.
#[derive(Default)]
struct Work {
    v: Vec<f32>,
    m: Vec<f32>,
    scratch: Scratch,
}

thread_local! {
    static WORK: std::cell::RefCell<Work> = std::cell::RefCell::new(Work::default());
}

/// Makes `buf` at least `len` long (written, not calloc's shared zero pages).
fn grow(buf: &mut Vec<f32>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
}

/// Per-task working rows, one tile row wide.
#[derive(Default)]
struct Scratch {
    line: Vec<f32>,
    even: [Vec<f32>; 4],
    odd: [Vec<f32>; 4],
}

impl Scratch {
    /// Room for `tiles` tiles.
    fn fit(&mut self, tiles: usize) {
        grow(&mut self.line, 2 * tiles + 2);
        for v in self.even.iter_mut().chain(self.odd.iter_mut()) {
            grow(v, tiles + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::cpu::nn;

    fn tensor(shape: &[usize], seed: u32) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(crate::gpu::test_values(n, seed), shape, &Device::Cpu).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn winograd(x: &Tensor, w: &Tensor, b: Option<&Tensor>, pad: [usize; 4]) -> Tensor {
        let (o, c, _, _) = w.dims4().unwrap();
        conv3x3(x, &WinogradWeights::new(o, c, &values(w)), b, pad).unwrap()
    }

    #[test]
    fn one_tile_by_hand() {
        // One channel, a 4x4 input of 1..16, kernel [[1,0,-1],[2,0,-2],[1,0,-1]] (Sobel x),
        // no padding: each output is sum of left column - right column, weighted 1,2,1:
        // rows 0-2 at columns 0-2 give (1 - 3) + 2(5 - 7) + (9 - 11) = -8; every output -8.
        let x = Tensor::from_vec((1..=16).map(|v| v as f32).collect::<Vec<_>>(), (1, 1, 4, 4), &Device::Cpu).unwrap();
        let g = [1.0, 0.0, -1.0, 2.0, 0.0, -2.0, 1.0, 0.0, -1.0];
        let w = WinogradWeights::new(1, 1, &g);
        let y = conv3x3(&x, &w, None, [0; 4]).unwrap();
        assert_eq!(y.dims(), &[1, 1, 2, 2]);
        assert_eq!(values(&y), vec![-8.0; 4]);
    }

    #[test]
    fn matches_the_direct_convolution() {
        // Padded and not, odd output sizes (clipped tiles), runs of tiles that cross tile
        // rows (a row of 3 tiles, runs of 64), asymmetric padding, a batch of two, bias.
        let cases: [(usize, usize, usize, usize, [usize; 4]); 6] = [
            (16, 16, 9, 11, [1, 1, 1, 1]),
            (24, 20, 6, 5, [1, 1, 1, 1]),
            (16, 32, 13, 7, [0, 0, 0, 0]),
            (20, 17, 8, 9, [0, 1, 0, 1]),
            (32, 24, 70, 66, [1, 1, 1, 1]),
            (16, 16, 2, 3, [1, 1, 1, 1]),
        ];
        for (i, &(c, o, h, w, pad)) in cases.iter().enumerate() {
            let x = tensor(&[2, c, h, w], 60 + i as u32);
            let wt = tensor(&[o, c, 3, 3], 70 + i as u32);
            let b = tensor(&[o], 80 + i as u32);
            let want = nn::conv2d(&x, &wt, Some(&b), 1, pad).unwrap();
            let got = winograd(&x, &wt, Some(&b), pad);
            assert_eq!(got.dims(), want.dims(), "case {i}");
            let (g, wv) = (values(&got), values(&want));
            let scale = wv.iter().fold(0f32, |s, v| s.max(v.abs()));
            let err = g.iter().zip(&wv).fold(0f32, |e, (a, b)| e.max((a - b).abs())) / scale;
            // f32 sums over 9C products: the direct convolution's own rounding is about 1e-7
            // of the scale; the transforms' adds cost a few times that.
            assert!(err < 2e-6, "case {i} ({c}->{o}, {h}x{w}, pad {pad:?}): relative error {err}");
        }
    }
}
