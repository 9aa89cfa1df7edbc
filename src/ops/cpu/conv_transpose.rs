//! Transposed convolution (a DCGAN generator's upsampling layers) through our GEMM: per
//! image, the weights' [O kh kw, C] transpose times x's [C, H W] gives every input pixel's
//! contribution to each output tap, which are then added into place in a fixed order.
//! candle's version sums its dot products in a vector order that differs between x86 (AVX)
//! and the page (SIMD128), so the default model's images in the page were not the CLI's.

use candle_core::{bail, Device, Result, Tensor};

use super::gemm::{par_gemm_from, written_zeros, ARows, BMatrix};
use super::gemm_ops::with_values;
use super::threads;

/// x [B, C, H, W], w [C, O, kh, kw] (PyTorch's layout), bias [O]? ->
/// [B, O, (H - 1) stride + kh - 2 padding, ..].
pub fn conv_transpose2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, stride: usize, padding: usize) -> Result<Tensor> {
    let (batch, c, h, wd) = x.dims4()?;
    let (wc, o, kh, kw) = w.dims4()?;
    let side = |n: usize, k: usize| ((n.max(1) - 1) * stride + k).checked_sub(2 * padding).filter(|&s| s > 0);
    let (Some(ho), Some(wo)) = (side(h, kh), side(wd, kw)) else { bail!("conv_transpose2d: padding {padding} leaves nothing of x {:?}", x.dims()) };
    if wc != c {
        bail!("conv_transpose2d: x {:?} does not fit weight {:?}", x.dims(), w.dims());
    }
    let (taps, pixels) = (o * kh * kw, h * wd);
    // W^T, [O kh kw, C]: the GEMM's A (a weight of a few hundred KB at most).
    let wt = with_values(w, |w| {
        let mut t = vec![0f32; taps * c];
        for (ci, row) in w.chunks_exact(taps).enumerate() {
            row.iter().enumerate().for_each(|(j, &v)| t[j * c + ci] = v);
        }
        t
    })?;
    let bias = bias.map(|b| b.flatten_all().and_then(|b| b.to_vec1::<f32>())).transpose()?;
    let mut out = written_zeros(batch * o * ho * wo);
    with_values(x, |x| {
        for (image, out) in x.chunks_exact(c * pixels).zip(out.chunks_exact_mut(o * ho * wo)) {
            let mut cols = written_zeros(taps * pixels);
            par_gemm_from(taps, pixels, c, &ARows { data: &wt, ld: c }, &BMatrix::KN { data: image, ld: pixels }, &mut cols, pixels);
            // Each output channel's plane on one thread: taps in (ky, kx) order, then the
            // input pixels in order, then the bias (candle adds it after the sum too).
            threads::for_each_piece(out, ho * wo, |oc, plane| {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let tap = &cols[((oc * kh + ky) * kw + kx) * pixels..][..pixels];
                        for iy in 0..h {
                            let Some(oy) = (iy * stride + ky).checked_sub(padding).filter(|&y| y < ho) else { continue };
                            for ix in 0..wd {
                                if let Some(ox) = (ix * stride + kx).checked_sub(padding).filter(|&x| x < wo) {
                                    plane[oy * wo + ox] += tap[iy * wd + ix];
                                }
                            }
                        }
                    }
                }
                if let Some(b) = &bias {
                    plane.iter_mut().for_each(|v| *v += b[oc]);
                }
            });
        }
    })?;
    Tensor::from_vec(out, (batch, o, ho, wo), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(t: Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn conv_transpose2d_hand_values() {
        let dev = Device::Cpu;
        let x = Tensor::from_vec(vec![1f32, 2.0, 3.0, 4.0], (1, 1, 2, 2), &dev).unwrap();
        let w = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &dev).unwrap();
        // Stride 2: each input pixel stamps its own 2x2 block.
        assert_eq!(flat(conv_transpose2d(&x, &w, None, 2, 0).unwrap()), [1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.]);
        // Stride 1: the stamps overlap and add; padding 1 then crops the 3x3 sum to its centre.
        assert_eq!(flat(conv_transpose2d(&x, &w, None, 1, 0).unwrap()), [1., 3., 2., 4., 10., 6., 3., 7., 4.]);
        let b = Tensor::from_vec(vec![0.5f32], 1, &dev).unwrap();
        assert_eq!(flat(conv_transpose2d(&x, &w, Some(&b), 1, 1).unwrap()), [10.5]);
    }

    /// Against candle's on DCGAN's shapes (4x4 kernels; stride 1 from a 1x1 latent, then
    /// stride 2 with padding 1) with two images, odd sizes and a bias.
    #[test]
    #[allow(clippy::disallowed_methods)] // candle's as the reference
    fn matches_candles_transposed_convolution() {
        let dev = Device::Cpu;
        let values = |n: usize, seed: u32| -> Vec<f32> { (0..n as u32).map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect() };
        for (c, o, h, w, stride, padding) in [(16, 8, 1, 1, 1, 0), (8, 5, 5, 7, 2, 1), (3, 2, 4, 4, 2, 0)] {
            let x = Tensor::from_vec(values(2 * c * h * w, 1), (2, c, h, w), &dev).unwrap();
            let k = Tensor::from_vec(values(c * o * 16, 2), (c, o, 4, 4), &dev).unwrap();
            let b = Tensor::from_vec(values(o, 3), o, &dev).unwrap();
            let got = conv_transpose2d(&x, &k, Some(&b), stride, padding).unwrap();
            let want = x.conv_transpose2d(&k, padding, 0, stride, 1).unwrap().broadcast_add(&b.reshape((1, o, 1, 1)).unwrap()).unwrap();
            assert_eq!(got.dims(), want.dims());
            let (got, want) = (flat(got), flat(want));
            let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "c {c} o {o} {h}x{w} stride {stride}: max difference {worst}");
            assert!(want.iter().any(|v| v.abs() > 0.5), "a real output, not zeros");
        }
    }
}
