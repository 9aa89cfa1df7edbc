//! Linear, batched matmul and conv2d on candle tensors through [`gemm`](super::gemm):
//! the browser's path (candle's matmul barely uses SIMD128 there). Natively candle's
//! multithreaded matmul is faster and stays in use; these are tested against it.

use candle_core::{bail, Device, Result, Storage, Tensor};

use super::gemm::{gemm, par_gemm_cols, par_gemm_from, written_zeros, ARows, BMatrix, PackA, PackB};
use super::im2col::Im2col;
use super::threads::written;

/// Runs `f` on the tensor's f32 values in row-major order, without a copy when it is
/// already contiguous.
pub(super) fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Some((start, end)) = layout.contiguous_offsets() else { bail!("gemm: tensor not contiguous after contiguous()") };
    match &*storage {
        Storage::Cpu(cpu) => Ok(f(&cpu.as_slice::<f32>()?[start..end])),
        _ => bail!("gemm: tensor not on the CPU"),
    }
}

/// `rows` copies of `bias` (or zeros): the starting C of a GEMM that adds a bias per column.
fn bias_rows(bias: Option<&Tensor>, rows: usize, n: usize) -> Result<Vec<f32>> {
    match bias {
        Some(b) => with_values(b, |b| written(rows * n, rows_per_piece(rows) * n, |_, piece| piece.chunks_exact_mut(n).for_each(|row| row.copy_from_slice(b)))),
        None => Ok(written_zeros(rows * n)),
    }
}

/// Rows per piece of a C that [`written`] starts: a few pieces per thread.
fn rows_per_piece(rows: usize) -> usize {
    rows.div_ceil(4 * super::threads::count()).max(1)
}

/// x @ w^T + b for x [.., K], w [N, K], b [N].
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let (n, k) = w.dims2()?;
    with_values(w, |w| linear_from(x, n, &BMatrix::NK { data: w, ld: k }, b, false))?
}

/// [`linear`] with the weight's `[N, K]` from any B source: packed once ahead (a native
/// session's) or read from its stored bytes (the page's: `dequantized`).
pub fn linear_from(x: &Tensor, n: usize, w: &(impl PackB + Sync), b: Option<&Tensor>, dequantized: bool) -> Result<Tensor> {
    let k = x.dims().last().copied().unwrap_or(1);
    let rows = x.elem_count() / k;
    let mut c = bias_rows(b, rows, n)?;
    with_values(x, |x| {
        let x = ARows { data: x, ld: k };
        // Split by rows, each thread packs all of B; by columns, all of A. A weight value
        // dequantized into place costs a few times an activation copied, so columns pay
        // unless the rows far outnumber them (the UNet's 64 to 256 tokens, CLIP's 77).
        // Packed ahead (natively), B costs nothing to pack: columns only where the rows
        // are too few to give every thread its share (the UNet's 16 tokens at 256 px, the
        // time embedding's one row: 1.7-2x faster on 2 threads).
        let cols = if dequantized { rows < 3 * n } else { rows < 4 * super::gemm::MR * super::threads::count() };
        if cols {
            par_gemm_cols(rows, n, k, &x, w, &mut c, n)
        } else {
            par_gemm_from(rows, n, k, &x, w, &mut c, n)
        }
    })?;
    let mut shape = x.dims().to_vec();
    *shape.last_mut().expect("x has a last axis") = n;
    Tensor::from_vec(c, shape, &Device::Cpu)
}

/// a [B.., M, K] @ b [B.., K, N] (or b [B.., N, K] with `transpose_b`) -> [B.., M, N].
pub fn matmul(a: &Tensor, b: &Tensor, transpose_b: bool) -> Result<Tensor> {
    let (da, db) = (a.dims(), b.dims());
    let (m, k) = (da[da.len() - 2], da[da.len() - 1]);
    let n = if transpose_b { db[db.len() - 2] } else { db[db.len() - 1] };
    let batch = a.elem_count() / (m * k);
    let mut c = written_zeros(batch * m * n);
    with_values(a, |a| {
        with_values(b, |b| {
            for i in 0..batch {
                let (ai, bi) = (&a[i * m * k..][..m * k], &b[i * k * n..][..k * n]);
                let bm = if transpose_b { BMatrix::NK { data: bi, ld: k } } else { BMatrix::KN { data: bi, ld: n } };
                gemm(m, n, k, ai, k, &bm, &mut c[i * m * n..][..m * n], n);
            }
        })
    })??;
    let mut shape = da.to_vec();
    *shape.last_mut().expect("a has a last axis") = n;
    Tensor::from_vec(c, shape, &Device::Cpu)
}

/// NCHW convolution with [top, bottom, left, right] zero padding: per image, the weights
/// [O, C*kh*kw] times implicit im2col columns.
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, stride: usize, pad: [usize; 4]) -> Result<Tensor> {
    let (o, c, kh, kw) = w.dims4()?;
    with_values(w, |w| conv2d_from(x, [o, c, kh, kw], &ARows { data: w, ld: c * kh * kw }, b, stride, pad))?
}

/// [`conv2d`] with the weight (`dims` [O, C, kh, kw]) as rows of C*kh*kw from any A
/// source (the page reads it from its stored bytes).
pub fn conv2d_from(x: &Tensor, [o, _, kh, kw]: [usize; 4], w: &impl PackA, b: Option<&Tensor>, stride: usize, pad: [usize; 4]) -> Result<Tensor> {
    let (batch, c, h, wi) = x.dims4()?;
    let ho = (h + pad[0] + pad[1] - kh) / stride + 1;
    let wo = (wi + pad[2] + pad[3] - kw) / stride + 1;
    let (k, n) = (c * kh * kw, ho * wo);
    // Per channel bias: C starts as [O, Ho*Wo] rows of bias[o], repeated per image.
    let per = rows_per_piece(batch * o);
    let mut out = match b {
        Some(b) => with_values(b, |b| written(batch * o * n, per * n, |p, piece| piece.chunks_exact_mut(n).enumerate().for_each(|(i, row)| row.fill(b[(p * per + i) % o]))))?,
        None => written_zeros(batch * o * n),
    };
    with_values(x, |x| {
        for (img, y) in x.chunks_exact(c * h * wi).zip(out.chunks_exact_mut(o * n)) {
            if kh == 1 && kw == 1 && stride == 1 && pad == [0; 4] {
                par_gemm_from(o, n, k, w, &BMatrix::KN { data: img, ld: n }, y, n);
            } else {
                let cols = Im2col { x: img, h, w: wi, kh, kw, stride, top: pad[0], left: pad[2], wo };
                par_gemm_from(o, n, k, w, &cols, y, n);
            }
        }
    })?;
    Tensor::from_vec(out, (batch, o, ho, wo), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::cpu::nn;

    fn tensor(shape: &[usize], seed: u32) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(crate::gpu::test_values(n, seed), shape, &Device::Cpu).unwrap()
    }

    /// Max |got - want| over max |want|.
    fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
        assert_eq!(got.dims(), want.dims());
        let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let scale = w.iter().fold(0f32, |s, x| s.max(x.abs())).max(1e-30);
        g.iter().zip(&w).fold(0f32, |e, (a, b)| e.max((a - b).abs())) / scale
    }

    #[test]
    fn linear_matches_candle() {
        let x = tensor(&[2, 7, 37], 1);
        let w = tensor(&[19, 37], 2);
        let b = tensor(&[19], 3);
        for bias in [None, Some(&b)] {
            let e = rel_err(&linear(&x, &w, bias).unwrap(), &nn::linear(&x, &w, bias).unwrap());
            assert!(e < 1e-5, "relative error {e}");
        }
    }

    #[test]
    fn matmul_matches_candle_both_layouts() {
        let a = tensor(&[3, 9, 21], 4);
        let b = tensor(&[3, 21, 13], 5);
        let want = a.matmul(&b).unwrap();
        assert!(rel_err(&matmul(&a, &b, false).unwrap(), &want) < 1e-5);
        let bt = b.transpose(1, 2).unwrap().contiguous().unwrap();
        assert!(rel_err(&matmul(&a, &bt, true).unwrap(), &want) < 1e-5);
    }

    #[test]
    fn conv2d_matches_candle() {
        // Symmetric and asymmetric padding, stride 2, 1x1, a batch of two, odd sizes.
        let cases: [(usize, usize, usize, usize, usize, [usize; 4]); 6] = [
            (3, 5, 3, 1, 11, [1, 1, 1, 1]),
            (4, 6, 3, 2, 9, [0, 1, 0, 1]),
            (5, 7, 3, 2, 10, [1, 1, 1, 1]),
            (6, 4, 1, 1, 7, [0, 0, 0, 0]),
            (2, 3, 3, 1, 5, [0, 0, 0, 0]),
            (3, 8, 5, 1, 13, [2, 2, 2, 2]),
        ];
        for (i, &(c, o, kk, stride, hw, pad)) in cases.iter().enumerate() {
            let x = tensor(&[2, c, hw, hw + 2], 10 + i as u32);
            let w = tensor(&[o, c, kk, kk], 20 + i as u32);
            let b = tensor(&[o], 30 + i as u32);
            let got = conv2d(&x, &w, Some(&b), stride, pad).unwrap();
            let want = nn::conv2d(&x, &w, Some(&b), stride, pad).unwrap();
            let e = rel_err(&got, &want);
            assert!(e < 1e-5, "case {i}: relative error {e}");
        }
    }

    #[test]
    fn bias_started_outputs_past_the_threads_threshold_match_candle() {
        // C over 2^18 values, so the threads write the bias: a conv over a batch of two
        // (bias per channel, repeated per image) and a linear (bias per column).
        let x = tensor(&[2, 8, 96, 96], 50);
        let (w, b) = (tensor(&[15, 8, 3, 3], 51), tensor(&[15], 52));
        let e = rel_err(&conv2d(&x, &w, Some(&b), 1, [1; 4]).unwrap(), &nn::conv2d(&x, &w, Some(&b), 1, [1; 4]).unwrap());
        assert!(e < 1e-5, "conv: relative error {e}");
        let x = tensor(&[1, 1030, 24], 53);
        let (w, b) = (tensor(&[300, 24], 54), tensor(&[300], 55));
        let e = rel_err(&linear(&x, &w, Some(&b)).unwrap(), &nn::linear(&x, &w, Some(&b)).unwrap());
        assert!(e < 1e-5, "linear: relative error {e}");
    }

    #[test]
    fn conv2d_across_gemm_blocks_matches_candle() {
        // K = 40 * 9 spans two KC blocks; 65 * 66 output pixels span two NC panels.
        let x = tensor(&[1, 40, 65, 66], 40);
        let w = tensor(&[33, 40, 3, 3], 41);
        let e = rel_err(&conv2d(&x, &w, None, 1, [1; 4]).unwrap(), &nn::conv2d(&x, &w, None, 1, [1; 4]).unwrap());
        assert!(e < 1e-5, "relative error {e}");
    }
}
