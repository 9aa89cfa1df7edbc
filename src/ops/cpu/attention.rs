//! Multi-head attention through the packed GEMM, per head and block of query rows, NR
//! queries at a time, over the keys a block at a time (flash attention's online softmax):
//! the block's scores transposed, S^T = K Q^T ([keys, NR], one key's NR scores side by
//! side), exponentiated down each column against the running maximum, then O^T += V^T S^T.
//! S^T is already in the layout of one packed B strip, so P V reads it in place, and down
//! columns the softmax runs on vectors of queries. A block's scores, keys and values
//! (KEYS x 16 values each at emoji-sd's 16-wide heads) stay in L1/L2: with every key's
//! scores at once a strip was a megabyte at 16,384 keys, and its four passes ran from L3.
//! Heads are read in place from `[B, L, H*D]` with row stride H*D, so nothing is
//! transposed (candle's path made batch x heads x L x L scores whole: 8 GiB at 512x512
//! for emoji-sd).

use candle_core::{Device, Result, Tensor};

use super::gemm::{gemm_from, written_zeros, AColumns, ARows, BMatrix, PackB, PackedA, NR};
use super::math::{exp, exp2, max};
use super::threads;

/// Query rows per task.
const ROWS: usize = 128;

/// Keys per block: a multiple of 4 (the folds' lanes) and of both builds' 2 MR (the
/// GEMM's strip pairs), deep enough that each block's rescaling is rare work.
const KEYS: usize = 384;

/// softmax(q k^T * scale) v per head on [B, L, H*D] tensors; with `causal`, query i sees
/// keys up to i + (Lk - Lq), as with a KV cache.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f32, causal: bool) -> Result<Tensor> {
    let (batch, lq, hd) = q.dims3()?;
    let lk = k.dim(1)?;
    // Values may be wider or narrower than queries and keys; the output has their width.
    let hdv = v.dim(2)?;
    // Copies are O(L * H*D), next to O(Lq * Lk * H*D) work.
    let [q, k, v] = [q, k, v].map(|t| t.flatten_all().and_then(|t| t.to_vec1::<f32>()));
    let out = attention_values(&q?, &k?, &v?, [batch, lq, lk, heads, hd / heads, hdv / heads], scale, causal);
    Tensor::from_vec(out, (batch, lq, hdv), &Device::Cpu)
}

/// One block of keys of one (image, head): K as A of S^T = K Q^T, V^T as A of V^T S^T.
struct KeyBlock {
    k: PackedA,
    vt: PackedA,
}

/// [`attention`] on row-major values; `dims` is [batch, Lq, Lk, heads, q/k head dim, v head dim].
/// Each (image, head)'s key blocks are packed once; then every (image, head, block of query
/// rows) is a task for the threads (a few heads alone would leave threads idle), computing
/// its [rows, dv] block, which is then put in place.
fn attention_values(q: &[f32], k: &[f32], v: &[f32], dims: [usize; 6], scale: f32, causal: bool) -> Vec<f32> {
    let [batch, lq, lk, heads, d, dv] = dims;
    let (hd, hdv) = (heads * d, heads * dv);
    let pairs: Vec<(usize, usize)> = (0..batch).flat_map(|b| (0..heads).map(move |h| (b, h))).collect();
    let packed = threads::map(pairs.len(), |i| {
        let (b, h) = pairs[i];
        (0..lk)
            .step_by(KEYS)
            .map(|k0| {
                let n = KEYS.min(lk - k0);
                let k = PackedA::new(n, d, &ARows { data: &k[(b * lk + k0) * hd + h * d..], ld: hd });
                let vt = PackedA::new(dv, n, &AColumns { data: &v[(b * lk + k0) * hdv + h * dv..], ld: hdv });
                KeyBlock { k, vt }
            })
            .collect::<Vec<_>>()
    });
    let rows = ROWS.min(lq);
    let per_pair = lq.div_ceil(rows);
    // Task t: pair t / per_pair, its query rows from r0.
    let task = |t: usize| (t / per_pair, pairs[t / per_pair], (t % per_pair) * rows);
    let blocks = threads::map(pairs.len() * per_pair, |t| {
        let (pair, (b, h), r0) = task(t);
        row_block(&q[b * lq * hd + h * d..], &packed[pair], dims, r0, rows.min(lq - r0), scale, causal)
    });
    let mut out = vec![0.0; batch * lq * hdv];
    for (t, block) in blocks.iter().enumerate() {
        let (_, (b, h), r0) = task(t);
        for (r, row) in block.chunks_exact(dv).enumerate() {
            out[(b * lq + r0 + r) * hdv + h * dv..][..dv].copy_from_slice(row);
        }
    }
    out
}

/// softmax(q k^T * scale) v for query rows r0..r0 + m of one head (`qh` starts at the head's
/// first query, rows H*D apart), NR rows at a time: [m, dv].
#[allow(clippy::too_many_arguments)]
fn row_block(qh: &[f32], keys: &[KeyBlock], dims: [usize; 6], r0: usize, m: usize, scale: f32, causal: bool) -> Vec<f32> {
    let [_, lq, lk, heads, d, dv] = dims;
    let hd = heads * d;
    let mut q_t = written_zeros(d * NR);
    let mut scores = written_zeros(KEYS.min(lk) * NR);
    let mut out_t = written_zeros(dv * NR);
    let mut out = written_zeros(m * dv);
    let scale2 = scale * std::f32::consts::LOG2_E;
    for s0 in (0..m).step_by(NR) {
        let w = NR.min(m - s0);
        // The strip's queries as one packed B strip ([d, NR], zeros past w), read by
        // every key block's product in place.
        BMatrix::NK { data: &qh[(r0 + s0) * hd..], ld: hd }.pack(0, d, 0, w, &mut q_t);
        // Columns past w are padding: they see every key, their zero scores stay finite.
        let visible: [usize; NR] = std::array::from_fn(|i| if causal && i < w { (r0 + s0 + i + lk + 1).saturating_sub(lq).min(lk) } else { lk });
        let mut column = Column::default();
        out_t.fill(0.0);
        for (block, kb) in keys.iter().enumerate() {
            let k0 = block * KEYS;
            let n = KEYS.min(lk - k0);
            let seen = visible.map(|v| v.saturating_sub(k0).min(n));
            if seen.iter().all(|&s| s == 0) {
                break; // causal: no query of the strip sees these keys or later ones
            }
            let s = &mut scores[..n * NR];
            s.fill(0.0);
            gemm_from(n, w, d, &kb.k, &Strip(&q_t), s, NR);
            super::wide::widest(
                #[inline(always)]
                || column.fold_block(s, scale2, &seen, &mut out_t),
            );
            gemm_from(dv, w, n, &kb.vt, &Strip(s), &mut out_t, NR);
        }
        // One division per column.
        let inv: [f32; NR] = std::array::from_fn(|q| 1.0 / column.sum[q]);
        for (i, row) in out[s0 * dv..].chunks_exact_mut(dv).take(w).enumerate() {
            row.iter_mut().zip(out_t[i..].iter().step_by(NR)).for_each(|(o, &x)| *o = x * inv[i]);
        }
    }
    out
}

/// NR columns of B (zeros past the used ones), row after row: the one strip of every
/// packed panel of a `[k, <= NR]` B, so the GEMM reads it in place.
struct Strip<'a>(&'a [f32]);

impl PackB for Strip<'_> {
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, out: &mut [f32]) {
        out.copy_from_slice(self.packed(p0, kc, j0, nc).expect("one strip"));
    }

    fn packed(&self, p0: usize, kc: usize, j0: usize, nc: usize) -> Option<&[f32]> {
        assert!(j0 == 0 && nc <= NR, "Strip: one strip of NR columns");
        Some(&self.0[p0 * NR..][..kc * NR])
    }
}

/// The online softmax's state per column (query) of a strip, in base 2 (log2(e) folded
/// into the scale): the largest scaled score seen so far and the sum of
/// 2^(score - largest) over the keys seen.
struct Column {
    top: [f32; NR],
    sum: [f32; NR],
}

impl Default for Column {
    fn default() -> Self {
        Self { top: [f32::NEG_INFINITY; NR], sum: [0.0; NR] }
    }
}

impl Column {
    /// Takes in one block of scores `s` ([keys, NR]), of which column q sees its first
    /// seen[q]: they become 2^(score * scale2 - top) against the new running maximum,
    /// zeros below, and where the maximum rose, the sums so far and the outputs so far
    /// (`out_t`, [dv, NR]) are scaled down by 2^(old - new) to match. `scale2` is the
    /// softmax's scale times log2(e): e^(x scale) = 2^(x scale2), and 2^ takes fewer
    /// operations than e^, which with 16-wide heads weighs as much as the products.
    #[inline(always)]
    fn fold_block(&mut self, s: &mut [f32], scale2: f32, seen: &[usize; NR], out_t: &mut [f32]) {
        // With scale2 > 0, the largest of the scaled values is the largest value scaled
        // (rounding keeps order): a multiply per score saved, the same bits.
        let block_top = if scale2 > 0.0 {
            fold_columns(s, seen, f32::NEG_INFINITY, [0.0; NR], |x, _| x, max, false).map(|m| m * scale2)
        } else {
            fold_columns(s, seen, f32::NEG_INFINITY, [0.0; NR], move |x, _| x * scale2, max, false)
        };
        let top: [f32; NR] = std::array::from_fn(|q| max(self.top[q], block_top[q]));
        // 2^0 is exactly 1: columns whose maximum held (most, after the first blocks) and
        // columns that have seen nothing yet (-inf twice) keep what they have.
        let rescale: [f32; NR] = std::array::from_fn(|q| if top[q] == self.top[q] { 1.0 } else { exp2(self.top[q] - top[q]) });
        let sums = fold_columns(s, seen, 0.0, top, move |x, t| exp2(x * scale2 - t), |a, b| a + b, true);
        if rescale.iter().any(|&r| r != 1.0) {
            out_t.chunks_exact_mut(NR).for_each(|row| row.iter_mut().zip(&rescale).for_each(|(o, r)| *o *= r));
        }
        self.sum = std::array::from_fn(|q| self.sum[q] * rescale[q] + sums[q]);
        self.top = top;
    }
}

/// For every column q of `s`, lanes_fold(init, f) of `map(x, column[q])` over its first
/// visible[q] values; with `store`, each mapped value replaces x and the rest of the
/// column becomes zeros. The keys that every column folds in whole fours go on vectors
/// across the columns; the rest (at most three a column without causal masking) column
/// by column.
#[inline(always)]
fn fold_columns(
    s: &mut [f32],
    visible: &[usize; NR],
    init: f32,
    column: [f32; NR],
    map: impl Fn(f32, f32) -> f32 + Copy,
    f: impl Fn(f32, f32) -> f32 + Copy,
    store: bool,
) -> [f32; NR] {
    let whole = visible.map(|v| v - v % 4);
    let common = *whole.iter().min().unwrap_or(&0);
    // Four keys' rows at a time, two by two: acc[k][h * NR + q] is column q's partial
    // result for keys 2k + h mod 4. Loops over two rows (2 NR values) vectorize with the
    // accumulators in registers natively and in the page; over one row of NR, the page's
    // compiler unrolled them whole and left exp on scalars.
    let mut acc = [[init; 2 * NR]; 2];
    let paired: [f32; 2 * NR] = std::array::from_fn(|j| column[j % NR]);
    for fours in s[..common * NR].chunks_exact_mut(4 * NR) {
        for (lanes, rows) in acc.iter_mut().zip(fours.chunks_exact_mut(2 * NR)) {
            for ((a, x), &t) in lanes.iter_mut().zip(rows.iter_mut()).zip(&paired) {
                let y = map(*x, t);
                if store {
                    *x = y;
                }
                *a = f(*a, y);
            }
        }
    }
    std::array::from_fn(|q| {
        let mut step = |p: usize| {
            let y = map(s[p * NR + q], column[q]);
            if store {
                s[p * NR + q] = y;
            }
            y
        };
        let mut lanes: [f32; 4] = std::array::from_fn(|i| acc[i / 2][i % 2 * NR + q]);
        for p in common..whole[q] {
            lanes[p % 4] = f(lanes[p % 4], step(p));
        }
        let mut folded = f(f(lanes[0], lanes[1]), f(lanes[2], lanes[3]));
        for p in whole[q]..visible[q] {
            folded = f(folded, step(p));
        }
        if store {
            (visible[q]..s.len() / NR).for_each(|p| s[p * NR + q] = 0.0);
        }
        folded
    })
}

/// Softmax over the last axis, whole rows per task on the threads, by the attention's own
/// row softmax: candle's sums its row in a vector order that differs between x86 (AVX) and
/// the page (SIMD128), and exponentiates by the platform's libm.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let n = x.dims().last().copied().unwrap_or(1).max(1);
    let mut values = x.flatten_all()?.to_vec1::<f32>()?;
    threads::for_each_piece(&mut values, n * (1usize << 14).div_ceil(n), |_, rows| rows.chunks_mut(n).for_each(|row| softmax_in_place(row, 1.0, n)));
    Tensor::from_vec(values, x.dims(), &Device::Cpu)
}

/// softmax(row[..visible] * scale), zeros after: the masked keys weigh nothing.
#[inline(always)]
fn softmax_in_place(row: &mut [f32], scale: f32, visible: usize) {
    let (seen, hidden) = row.split_at_mut(visible);
    seen.iter_mut().for_each(|x| *x *= scale);
    let max = lanes_fold(seen, f32::NEG_INFINITY, max);
    seen.iter_mut().for_each(|x| *x = exp(*x - max));
    // One division per row; a vector division per four values costs more than the 1 ulp.
    let inv = 1.0 / lanes_fold(seen, 0.0, |a, b| a + b);
    seen.iter_mut().for_each(|x| *x *= inv);
    hidden.fill(0.0);
}

/// Folds four interleaved partial results, so the loop vectorizes (a strict left-to-right
/// float fold cannot be reordered).
#[inline(always)]
fn lanes_fold(v: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 4];
    let chunks = v.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        acc = std::array::from_fn(|i| f(acc[i], c[i]));
    }
    tail.iter().fold(f(f(acc[0], acc[1]), f(acc[2], acc[3])), |a, &b| f(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::cpu::nn;

    fn tensor(shape: &[usize], seed: u32) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(crate::gpu::test_values(n, seed), shape, &Device::Cpu).unwrap()
    }

    /// Each row's softmax in f64 by hand, within 3e-7 absolute (probabilities are at most
    /// 1), over rows of an odd length spanning several pieces.
    // The platform's own functions (or candle's) as the reference: a second implementation.
    #[allow(clippy::disallowed_methods)]
    #[test]
    fn softmax_last_dim_is_each_rows_softmax() {
        let x = tensor(&[3, 700, 37], 5);
        let got = softmax_last_dim(&(x.clone() * 4.0).unwrap()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (r, (row, out)) in xs.chunks(37).zip(got.chunks(37)).enumerate() {
            let e: Vec<f64> = row.iter().map(|&v| (4.0 * v as f64).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (j, (&p, e)) in out.iter().zip(&e).enumerate() {
                assert!((p as f64 - e / sum).abs() < 3e-7, "row {r} value {j}: {p} against {}", e / sum);
            }
        }
        assert!(got.iter().any(|&p| p > 0.2), "peaked rows, not uniform ones");
    }

    /// Column::fold_block takes each column's largest raw score times the scale, as the
    /// largest scaled score: bit for bit the same, ties after rounding and causal columns
    /// of every length included.
    #[test]
    fn largest_raw_score_scaled_is_the_largest_scaled_score() {
        let keys = 203;
        let mut s = crate::gpu::test_values(keys * NR, 3);
        // Neighbours one ulp apart, which a scale can round to one value.
        (0..keys * NR).step_by(7).for_each(|i| s[i] = f32::from_bits(s[(i + NR) % (keys * NR)].to_bits() + 1));
        let visible: [usize; NR] = std::array::from_fn(|q| keys - 37 * q % keys);
        for scale in [0.125, 1.0 / 40f32.sqrt(), 0.3, 3.7] {
            let raw = fold_columns(&mut s, &visible, f32::NEG_INFINITY, [0.0; NR], |x, _| x, max, false).map(|m| m * scale);
            let scaled = fold_columns(&mut s, &visible, f32::NEG_INFINITY, [0.0; NR], move |x, _| x * scale, max, false);
            assert_eq!(raw.map(f32::to_bits), scaled.map(f32::to_bits), "scale {scale}");
        }
    }

    /// Scores that rise key after key, so that every later block holds a larger maximum and
    /// the sums and outputs so far are scaled down block after block: against softmax(q k^T)
    /// v by hand in f64. Key j is (j / lk) * 60 in every dimension and the query all ones
    /// over 2 dimensions, so score j = 120 j / lk, scaled by 1/2: e^60 between the first and
    /// last key. Value j is (j, -1).
    #[allow(clippy::disallowed_methods)]
    #[test]
    fn online_softmax_rescales_as_later_blocks_raise_the_maximum() {
        let (lk, d) = (3 * KEYS + 7, 2);
        let key = |j: usize| j as f64 / lk as f64 * 60.0;
        let k: Vec<f32> = (0..lk).flat_map(|j| [key(j) as f32; 2]).collect();
        let v: Vec<f32> = (0..lk).flat_map(|j| [j as f32, -1.0]).collect();
        let q = vec![1.0f32; 3 * d];
        let got = attention_values(&q, &k, &v, [1, 3, lk, 1, d, 2], 0.5, false);
        let scores: Vec<f64> = (0..lk).map(|j| 0.5 * 2.0 * (key(j) as f32) as f64).collect();
        let top = scores.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = scores.iter().map(|s| (s - top).exp()).collect();
        let sum: f64 = e.iter().sum();
        let want = e.iter().enumerate().map(|(j, e)| e * j as f64).sum::<f64>() / sum;
        for row in got.chunks(2) {
            assert!(((row[0] as f64 - want) / want).abs() < 2e-6, "weighted key {} against {want}", row[0]);
            assert!((row[1] + 1.0).abs() < 2e-6, "the weights sum to {} , not 1", -row[1]);
        }
        // The answer leans on the last keys: a softmax that missed a rescale would not.
        assert!(want > (lk - 40) as f64, "{want}");
    }

    #[test]
    fn attention_matches_candle() {
        // (batch, lq, lk, heads, d, dv): several row blocks, lq < lk (KV cache), one head,
        // values wider and narrower than the keys, keys in several blocks of P V's depth
        // with a last strip of queries part full.
        let cases = [
            (2, 9, 9, 3, 8, 8),
            (1, ROWS + 5, ROWS + 5, 2, 16, 16),
            (1, 4, 11, 1, 40, 40),
            (1, 1, 7, 2, 4, 4),
            (2, 1, 50, 3, 32, 36),
            (2, 20, 29, 3, 18, 13),
            (1, 37, 801, 2, 16, 16),
            // Causal over several key blocks: the first strips see only the first block.
            (1, 2 * KEYS + 20, 2 * KEYS + 20, 1, 8, 8),
        ];
        for (i, &(b, lq, lk, heads, d, dv)) in cases.iter().enumerate() {
            let q = tensor(&[b, lq, heads * d], 10 + i as u32);
            let k = tensor(&[b, lk, heads * d], 20 + i as u32);
            let v = tensor(&[b, lk, heads * dv], 30 + i as u32);
            for causal in [false, true] {
                let scale = 1.0 / (d as f32).sqrt();
                let got = attention(&q, &k, &v, heads, scale, causal).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let want = nn::attention(&q, &k, &v, heads, scale, causal).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let top = want.iter().fold(0f32, |s, x| s.max(x.abs()));
                let err = got.iter().zip(&want).fold(0f32, |e, (a, b)| e.max((a - b).abs())) / top;
                assert!(err < 1e-5, "case {i} causal {causal}: relative error {err}");
            }
        }
    }
}
