//! Multi-head attention through the packed GEMM: per head and block of query rows, scores =
//! Q K^T into a scratch block, softmax in place, then P V into the output. Heads are read in
//! place from `[B, L, H*D]` with row stride H*D, so nothing is transposed, and the scores
//! never exceed one block of rows per thread (natively the heads run on every core; candle's
//! path made batch x heads x L x L scores whole: 8 GiB at 512x512 for emoji-sd).

use candle_core::{Device, Result, Tensor};

use super::gemm::{gemm, written_zeros, BMatrix, PackedB};
use super::math::{exp, max};
use super::threads;

/// Query rows per scores block: 128 x 4096 keys is 2 MiB of scratch.
const ROWS: usize = 128;

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

/// [`attention`] on row-major values; `dims` is [batch, Lq, Lk, heads, q/k head dim, v head dim].
/// Each (image, head)'s K^T and V are packed once; then every (image, head, block of query
/// rows) is a task for the threads (a few heads alone would leave threads idle), computing
/// its [rows, dv] block, which is then put in place.
fn attention_values(q: &[f32], k: &[f32], v: &[f32], dims: [usize; 6], scale: f32, causal: bool) -> Vec<f32> {
    let [batch, lq, lk, heads, d, dv] = dims;
    let (hd, hdv) = (heads * d, heads * dv);
    let pairs: Vec<(usize, usize)> = (0..batch).flat_map(|b| (0..heads).map(move |h| (b, h))).collect();
    let packed = threads::map(pairs.len(), |i| {
        let (b, h) = pairs[i];
        let kt = PackedB::new(d, lk, &BMatrix::NK { data: &k[b * lk * hd + h * d..], ld: hd });
        let vp = PackedB::new(lk, dv, &BMatrix::KN { data: &v[b * lk * hdv + h * dv..], ld: hdv });
        (kt, vp)
    });
    let rows = ROWS.min(lq);
    let per_pair = lq.div_ceil(rows);
    // Task t: pair t / per_pair, its query rows from r0.
    let task = |t: usize| (t / per_pair, pairs[t / per_pair], (t % per_pair) * rows);
    let blocks = threads::map(pairs.len() * per_pair, |t| {
        let (pair, (b, h), r0) = task(t);
        let (kt, vp) = &packed[pair];
        row_block(&q[b * lq * hd + h * d..], kt, vp, dims, r0, rows.min(lq - r0), scale, causal)
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
/// first query, rows H*D apart): [m, dv].
#[allow(clippy::too_many_arguments)]
fn row_block(qh: &[f32], kt: &PackedB, vp: &PackedB, dims: [usize; 6], r0: usize, m: usize, scale: f32, causal: bool) -> Vec<f32> {
    let [_, lq, lk, heads, d, dv] = dims;
    let hd = heads * d;
    let mut scores = written_zeros(m * lk);
    gemm(m, lk, d, &qh[r0 * hd..], hd, kt, &mut scores, lk);
    for (i, row) in scores.chunks_exact_mut(lk).enumerate() {
        let visible = if causal { (r0 + i + lk + 1).saturating_sub(lq).min(lk) } else { lk };
        super::wide::widest(
            #[inline(always)]
            || softmax_in_place(row, scale, visible),
        );
    }
    let mut out = written_zeros(m * dv);
    gemm(m, dv, lk, &scores, lk, vp, &mut out, dv);
    out
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

    #[test]
    fn attention_matches_candle() {
        // (batch, lq, lk, heads, d, dv): several row blocks, lq < lk (KV cache), one head,
        // values wider and narrower than the keys.
        let cases = [(2, 9, 9, 3, 8, 8), (1, ROWS + 5, ROWS + 5, 2, 16, 16), (1, 4, 11, 1, 40, 40), (1, 1, 7, 2, 4, 4), (2, 1, 50, 3, 32, 36), (2, 20, 29, 3, 18, 13)];
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
