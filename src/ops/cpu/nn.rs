//! The CPU ops that are more than one candle call.

use super::gemm_ops::with_values;
use super::math;
use super::wide::widest;
use candle_core::{Result, Tensor, D};

/// x @ w^T + b for x [.., K], w [N, K].
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let k = dims[dims.len() - 1];
    let rows = x.elem_count() / k;
    let y = x.contiguous()?.reshape((rows, k))?.matmul(&w.t()?)?;
    let y = match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out = dims;
    *out.last_mut().unwrap() = w.dim(0)?;
    y.reshape(out)
}

/// NCHW convolution with [top, bottom, left, right] zero padding.
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, stride: usize, pad: [usize; 4]) -> Result<Tensor> {
    let y = if pad.iter().all(|&p| p == pad[0]) {
        x.contiguous()?.conv2d(w, pad[0], stride, 1, 1)?
    } else {
        let x = x.pad_with_zeros(2, pad[0], pad[1])?.pad_with_zeros(3, pad[2], pad[3])?;
        x.contiguous()?.conv2d(w, 0, stride, 1, 1)?
    };
    match b {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?),
        None => Ok(y),
    }
}

/// GroupNorm over [B, C, ..]: biased variance per (batch, group), then per-channel affine
/// and SiLU when `silu`, in one pass over each group's own output: every (batch, group) is
/// contiguous in NCHW, and the groups are shared among the CPU threads.
pub fn group_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, groups: usize, eps: f32, silu: bool) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let channels = dims[1];
    let per_channel: usize = dims[2..].iter().product();
    let group_len = channels / groups * per_channel;
    let (gamma, beta) = (gamma.flatten_all()?.to_vec1::<f32>()?, beta.flatten_all()?.to_vec1::<f32>()?);
    let mut out = x.flatten_all()?.to_vec1::<f32>()?;
    super::threads::for_each_piece(&mut out, group_len, |i, values| {
        widest(
            #[inline(always)]
            || {
                let (mean, inv) = moments(values, eps);
                affine_planes(values, (i % groups) * (channels / groups), per_channel, &gamma, &beta, silu, |v| (v - mean) * inv);
            },
        )
    });
    Tensor::from_vec(out, dims, x.device())
}

/// One group's planes (channels `first_channel`..) normalized by `norm`, then * gamma[c] +
/// beta[c], then SiLU when `silu`: the two GroupNorms' shared last pass (inlined into each,
/// so it runs on the widest vectors there).
#[inline(always)]
fn affine_planes(values: &mut [f32], first_channel: usize, per_channel: usize, gamma: &[f32], beta: &[f32], silu: bool, norm: impl Fn(f32) -> f32) {
    for (c, plane) in values.chunks_exact_mut(per_channel).enumerate() {
        let (g, b) = (gamma[first_channel + c], beta[first_channel + c]);
        match silu {
            true => plane.iter_mut().for_each(|v| *v = math::silu(norm(*v) * g + b)),
            false => plane.iter_mut().for_each(|v| *v = norm(*v) * g + b),
        }
    }
}

/// A group's mean and 1 / sqrt(variance + eps): two passes (the mean, then the squared
/// deviations: no cancellation), summed in f64 over eight interleaved lanes so they vectorize.
#[inline(always)]
fn moments(values: &[f32], eps: f32) -> (f32, f32) {
    let n = values.len() as f64;
    let mean = lanes_sum(values, |v| v as f64) / n;
    let var = lanes_sum(values, |v| (v as f64 - mean) * (v as f64 - mean)) / n;
    (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
}

#[inline(always)]
fn lanes_sum(values: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// [B, G, 2]: each (batch, group)'s mean and sum of squared deviations (two passes, in f64
/// over [`lanes_sum`]'s fixed lanes: candle's sums run in a vector order that differs
/// between x86 and the page), the sets shared among the CPU threads.
pub fn group_moments(x: &Tensor, groups: usize) -> Result<Tensor> {
    let sets = x.dims()[0] * groups;
    let out = with_values(x, |values| {
        let len = values.len() / sets.max(1);
        super::threads::map(sets, |s| {
            widest(
                #[inline(always)]
                || {
                    let set = &values[s * len..(s + 1) * len];
                    let mean = lanes_sum(set, |v| v as f64) / len as f64;
                    [mean as f32, lanes_sum(set, |v| (v as f64 - mean) * (v as f64 - mean)) as f32]
                },
            )
        })
    })?;
    Tensor::from_vec(out.concat(), (x.dims()[0], groups, 2), x.device())
}

/// Whole sets' (mean, sqrt(var + eps)) from parts [B, G, P, 2] of (mean, M2), by Chan et
/// al.'s update: mean = sum(n_p mean_p) / n, M2 = sum(M2_p + n_p (mean_p - mean)^2).
pub fn moments_combine(parts: &Tensor, len: usize, part_len: usize, eps: f32) -> Result<Tensor> {
    let dims = parts.dims().to_vec();
    let p = dims[2];
    let v = parts.flatten_all()?.to_vec1::<f32>()?;
    let count = |i: usize| ((i + 1) * part_len).min(len) as f32 - (i * part_len) as f32;
    let out: Vec<f32> = v
        .chunks(2 * p)
        .flat_map(|set| {
            let mean = (0..p).map(|i| count(i) * set[2 * i]).sum::<f32>() / len as f32;
            let m2: f32 = (0..p).map(|i| set[2 * i + 1] + count(i) * (set[2 * i] - mean).powi(2)).sum();
            [mean, (m2 / len as f32 + eps).sqrt()]
        })
        .collect();
    Tensor::from_vec(out, (dims[0], dims[1], 2), parts.device())
}

/// GroupNorm of x [B, C, ..] from moments [B, G, 2] of (mean, sqrt(var + eps)), then SiLU
/// when `silu` ([`math::silu`], as [`group_norm`]'s): one pass over each (batch, group),
/// the groups shared among the CPU threads. The decoder's bands normalize their maps this
/// way at 512 px and up, so it runs at memory speed like the whole norm.
pub fn group_norm_apply(x: &Tensor, gamma: &Tensor, beta: &Tensor, moments: &Tensor, groups: usize, silu: bool) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let channels = dims[1];
    let per_channel: usize = dims[2..].iter().product();
    let group_len = channels / groups * per_channel;
    let (gamma, beta) = (gamma.flatten_all()?.to_vec1::<f32>()?, beta.flatten_all()?.to_vec1::<f32>()?);
    let moments = moments.flatten_all()?.to_vec1::<f32>()?;
    let mut out = x.flatten_all()?.to_vec1::<f32>()?;
    super::threads::for_each_piece(&mut out, group_len, |i, values| {
        widest(
            #[inline(always)]
            || {
                let (mean, sd) = (moments[2 * i], moments[2 * i + 1]);
                affine_planes(values, (i % groups) * (channels / groups), per_channel, &gamma, &beta, silu, |v| (v - mean) / sd);
            },
        )
    });
    Tensor::from_vec(out, dims, x.device())
}

fn batched_matmul(a: &Tensor, b: &Tensor, transpose_b: bool) -> Result<Tensor> {
    if transpose_b {
        a.matmul(&b.t()?)
    } else {
        a.matmul(b)
    }
}

/// softmax(q k^T * scale) v per head on [B, L, H*D] tensors, through candle: the
/// EASEL_CPU_ATTENTION=candle comparison path (the engine uses `attention.rs`, which is
/// blocked, and portable to the page where candle's exp and vector sums are not).
#[allow(clippy::disallowed_methods)]
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f32, causal: bool) -> Result<Tensor> {
    let split = |t: &Tensor| -> Result<Tensor> {
        let (b, l, hd) = t.dims3()?;
        t.reshape((b, l, heads, hd / heads))?.transpose(1, 2)?.contiguous()
    };
    let (q4, k4, v4) = (split(q)?, split(k)?, split(v)?);
    let mut scores = (batched_matmul(&q4, &k4, true)? * scale as f64)?;
    if causal {
        let (lq, lk) = (q.dim(1)?, k.dim(1)?);
        // Query i sees keys up to i + (lk - lq), as with a KV cache.
        let mask: Vec<f32> = (0..lq).flat_map(|i| (0..lk).map(move |j| if j + lq > i + lk { f32::NEG_INFINITY } else { 0.0 })).collect();
        scores = scores.broadcast_add(&Tensor::from_vec(mask, (lq, lk), q.device())?)?;
    }
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    let out = batched_matmul(&probs, &v4, false)?.transpose(1, 2)?.contiguous()?;
    let (b, l, _, d) = out.dims4()?;
    out.reshape((b, l, heads * d))
}

/// Index of the nearest codebook row (squared distance) for each row of z.
pub fn vq_nearest(z: &Tensor, codebook: &Tensor) -> Result<Tensor> {
    // |z - c|^2 = |z|^2 - 2 z.c + |c|^2; |z|^2 does not change the argmin.
    // Our GEMM and a fixed-order sum, not candle's matmul and `sum_keepdim`, whose vector
    // orders differ between x86 and the page: a near tie must go the same way in both.
    let zc = super::gemm_ops::matmul(&z.contiguous()?, &codebook.contiguous()?, true)?;
    let (k, d) = codebook.dims2()?;
    let norms: Vec<f32> = codebook.flatten_all()?.to_vec1::<f32>()?.chunks_exact(d.max(1)).map(|c| lanes_sum(c, |v| v as f64 * v as f64) as f32).collect();
    let cc = Tensor::from_vec(norms, (1, k), z.device())?;
    let d = cc.broadcast_sub(&(zc * 2.0)?)?;
    d.argmin_keepdim(D::Minus1)?.squeeze(D::Minus1)
}

/// The frequencies exp(-ln(max_period) i / (half - shift)) of diffusers'
/// `get_timestep_embedding` (the GPU kernel's too, so its t * f rounds as the CPU's does).
/// `libm`'s functions here and in [`timestep_embedding`], not `std`'s: natively those are
/// the system's libm and in the page Rust's own, and their last bits differ, which moved a
/// few pixels of the page's images away from the CLI's.
pub fn timestep_frequencies(half: usize, shift: f32, max_period: f32) -> Vec<f32> {
    (0..half).map(|i| libm::expf(-libm::logf(max_period) * i as f32 / (half as f32 - shift))).collect()
}

/// diffusers' `get_timestep_embedding`: exponents -ln(max_period) * i / (half - shift),
/// [sin, cos] (or [cos, sin] when flipped), zero-padded when `dim` is odd.
pub fn timestep_embedding(t: &[f32], dim: usize, flip_sin_to_cos: bool, shift: f32, max_period: f32) -> Vec<f32> {
    let freqs = timestep_frequencies(dim / 2, shift, max_period);
    let mut out = Vec::with_capacity(t.len() * dim);
    for &ti in t {
        let args: Vec<f32> = freqs.iter().map(|f| ti * f).collect();
        let (sin, cos) = (args.iter().map(|&a| libm::sinf(a)), args.iter().map(|&a| libm::cosf(a)));
        if flip_sin_to_cos {
            out.extend(cos.chain(sin));
        } else {
            out.extend(sin.chain(cos));
        }
        if dim % 2 == 1 {
            out.push(0.0);
        }
    }
    out
}

/// Depthwise conv (stride 1, `padding` on every side): each channel's plane on a thread,
/// its taps added in (ky, kx) order. candle's grouped conv sums in a vector order that
/// differs between x86 and the page.
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, padding: usize) -> Result<Tensor> {
    let (batch, c, h, wd) = x.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    let side = |n: usize, k: usize| (n + 2 * padding + 1).checked_sub(k).filter(|&s| s > 0);
    let (Some(ho), Some(wo)) = (side(h, kh), side(wd, kw)) else {
        candle_core::bail!("depthwise_conv2d: kernel {:?} is larger than x {:?} padded by {padding}", w.dims(), x.dims())
    };
    let (xv, wv) = (x.flatten_all()?.to_vec1::<f32>()?, w.flatten_all()?.to_vec1::<f32>()?);
    let bias = b.map(|b| b.flatten_all().and_then(|b| b.to_vec1::<f32>())).transpose()?;
    let mut out = vec![0f32; batch * c * ho * wo];
    super::threads::for_each_piece(&mut out, ho * wo, |plane_index, plane| {
        let ch = plane_index % c;
        let src = &xv[plane_index * h * wd..][..h * wd];
        for ky in 0..kh {
            for kx in 0..kw {
                let tap = wv[(ch * kh + ky) * kw + kx];
                // Output column ox reads input column ox + kx - padding, where it exists.
                let (x0, x1) = (padding.saturating_sub(kx), (wd + padding).saturating_sub(kx).min(wo));
                for oy in 0..ho {
                    let Some(iy) = (oy + ky).checked_sub(padding).filter(|&y| y < h) else { continue };
                    let row = &src[iy * wd..][..wd];
                    for ox in x0..x1 {
                        plane[oy * wo + ox] += tap * row[ox + kx - padding];
                    }
                }
            }
        }
        if let Some(b) = &bias {
            plane.iter_mut().for_each(|v| *v += b[ch]);
        }
    });
    Tensor::from_vec(out, (batch, c, ho, wo), x.device())
}

/// GlobalResponseNorm's scale: per-channel L2 norm over the positions, divided by its
/// mean over channels plus eps.
pub fn response_norm(x: &Tensor, eps: f32) -> Result<Tensor> {
    // Over positions (not the last dim), candle sums one value at a time in index order:
    // the same bits everywhere.
    #[allow(clippy::disallowed_methods)]
    let gx = x.sqr()?.sum_keepdim(1)?.sqrt()?;
    // The mean over channels in a fixed order (candle's `mean_keepdim` sums in a vector
    // order that differs between x86 and the page).
    let (b, _, c) = gx.dims3()?;
    let means: Vec<f32> = gx.flatten_all()?.to_vec1::<f32>()?.chunks_exact(c).map(|row| (lanes_sum(row, |v| v as f64) / c as f64) as f32).collect();
    gx.broadcast_div(&(Tensor::from_vec(means, (b, 1, 1), x.device())? + eps as f64)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against candle's grouped convolution (one group per channel), with a bias, on
    /// ConvNeXt's 7x7 and a 3x3 kernel, two images and a non-square plane.
    #[test]
    fn depthwise_conv2d_matches_candles_grouped_convolution() {
        let dev = candle_core::Device::Cpu;
        let values = |n: usize, seed: u32| -> Vec<f32> { (0..n as u32).map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect() };
        for (k, padding) in [(7, 3), (3, 1), (3, 0)] {
            let (b, c, h, w) = (2, 6, 9, 5);
            let x = Tensor::from_vec(values(b * c * h * w, 1), (b, c, h, w), &dev).unwrap();
            let kernel = Tensor::from_vec(values(c * k * k, 2), (c, 1, k, k), &dev).unwrap();
            let bias = Tensor::from_vec(values(c, 3), c, &dev).unwrap();
            let got = depthwise_conv2d(&x, &kernel, Some(&bias), padding).unwrap();
            let want = x.conv2d(&kernel, padding, 1, 1, c).unwrap().broadcast_add(&bias.reshape((1, c, 1, 1)).unwrap()).unwrap();
            assert_eq!(got.dims(), want.dims(), "{k}x{k} padding {padding}");
            let (got, want) = (got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "{k}x{k} padding {padding}: max difference {worst}");
            assert!(want.iter().any(|v| v.abs() > 0.5), "a real output");
        }
    }

    #[test]
    fn norms_without_weight_hand_values() {
        use std::collections::HashMap;

        use crate::ops::cpu::{CpuExecutor, HostTensor};
        use crate::ops::{Graph, WeightStore};
        let store = WeightStore::new();
        let mut g = Graph::new(&store);
        let x = g.input("x", &[1, 2]);
        let (rms, layer) = (g.norm_plain(x, 0.0, false).unwrap(), g.norm_plain(x, 0.0, true).unwrap());
        g.output(rms);
        g.output(layer);
        let out = CpuExecutor::new(&store).run(&g, &HashMap::from([("x".to_string(), HostTensor::F32(vec![3.0, 4.0]))])).unwrap();
        // RMS of (3, 4) is sqrt(12.5); LayerNorm centres on 3.5 with variance 0.25.
        let (HostTensor::F32(r), HostTensor::F32(l)) = (&out[&rms], &out[&layer]) else { panic!("f32 outputs") };
        let want_r = [3.0 / 12.5f32.sqrt(), 4.0 / 12.5f32.sqrt()];
        assert!(r.iter().zip(want_r).all(|(a, b)| (a - b).abs() < 1e-6), "{r:?}");
        assert!(l.iter().zip([-1.0, 1.0]).all(|(a, b)| (a - b).abs() < 1e-6), "{l:?}");
    }

    // The platform's own functions (or candle's) as the reference: a second implementation.
    #[allow(clippy::disallowed_methods)]
    #[test]
    fn timestep_embedding_hand_values() {
        // dim 4, half 2, shift 1: freqs = [1, exp(-ln 1e4 / 1)] = [1, 1e-4].
        let e = timestep_embedding(&[2.0], 4, false, 1.0, 10000.0);
        let want = [2f32.sin(), (2e-4f32).sin(), 2f32.cos(), (2e-4f32).cos()];
        for (a, b) in e.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{e:?}");
        }
        let flipped = timestep_embedding(&[2.0], 5, true, 1.0, 10000.0);
        assert_eq!(flipped.len(), 5);
        assert!((flipped[0] - 2f32.cos()).abs() < 1e-6 && flipped[4] == 0.0);
    }

    #[test]
    fn group_norm_hand_values() {
        // One group of [1, 3]: mean 2, var 1 -> [-1, 1] / sqrt(1 + eps); gamma 2, beta 0.5.
        let dev = &candle_core::Device::Cpu;
        let x = Tensor::new(&[[[1f32], [3f32]]], dev).unwrap();
        let g = Tensor::new(&[2f32, 2.], dev).unwrap();
        let b = Tensor::new(&[0.5f32, 0.5], dev).unwrap();
        let y = group_norm(&x, &g, &b, 1, 0.0, false).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y, vec![-1.5, 2.5]);
    }

    /// The banded GroupNorm (moments per band, combined, then applied) against candle's
    /// broadcasts for the same arithmetic, bit for bit, with and without SiLU; and against
    /// the whole GroupNorm to 1e-5, as the banded decoder against the whole one
    /// (models_native; the parts' moments combine in f32, the whole norm's in f64: 1.4e-6
    /// here). Two images, a band of 5 rows and one of 3, enough
    /// values that the threads share the groups.
    #[test]
    fn banded_group_norm_matches_candle_and_the_whole_norm() {
        let dev = &candle_core::Device::Cpu;
        let values = |n: usize, seed: u32| -> Vec<f32> { (0..n as u32).map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 250.0 - 3.0).collect() };
        let (b, c, h, w, groups, eps) = (2, 64, 8, 97, 8, 1e-6);
        let x = Tensor::from_vec(values(b * c * h * w, 1), (b, c, h, w), dev).unwrap();
        let gamma = Tensor::from_vec(values(c, 2), c, dev).unwrap();
        let beta = Tensor::from_vec(values(c, 3), c, dev).unwrap();
        let bands = [x.narrow(2, 0, 5).unwrap(), x.narrow(2, 5, 3).unwrap()];
        // Parts [B, G, 2, 2]; a band's (batch, group) set holds c / groups planes of its rows.
        let parts = Tensor::stack(&[group_moments(&bands[0], groups).unwrap(), group_moments(&bands[1], groups).unwrap()], 2).unwrap();
        let per_set = |rows: usize| c / groups * rows * w;
        // Chan's parts are counted in whole bands of the first band's size.
        let moments = moments_combine(&parts, per_set(h), per_set(5), eps).unwrap();
        for silu in [false, true] {
            let got: Vec<f32> =
                bands.iter().flat_map(|band| group_norm_apply(band, &gamma, &beta, &moments, groups, silu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
            let want: Vec<f32> = bands
                .iter()
                .flat_map(|band| {
                    let dims = band.dims().to_vec();
                    let sets = band.reshape((b, groups, band.elem_count() / (b * groups))).unwrap();
                    let normed = sets.broadcast_sub(&moments.narrow(2, 0, 1).unwrap()).unwrap().broadcast_div(&moments.narrow(2, 1, 1).unwrap()).unwrap();
                    let y =
                        normed.reshape(dims).unwrap().broadcast_mul(&gamma.reshape((1, c, 1, 1)).unwrap()).unwrap().broadcast_add(&beta.reshape((1, c, 1, 1)).unwrap()).unwrap();
                    let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    y.into_iter().map(|v| if silu { math::silu(v) } else { v }).collect::<Vec<f32>>()
                })
                .collect();
            assert!(got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()), "silu {silu}: banded apply differs from candle's broadcasts");
            // Bands are row ranges of each plane: put the whole norm's values in band order.
            let whole = group_norm(&x, &gamma, &beta, groups, eps, silu).unwrap();
            let whole: Vec<f32> =
                [whole.narrow(2, 0, 5).unwrap(), whole.narrow(2, 5, 3).unwrap()].iter().flat_map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
            let worst = got.iter().zip(&whole).map(|(g, w)| (g - w).abs() / w.abs().max(1.0)).fold(0f32, f32::max);
            assert!(worst <= 1e-5, "silu {silu}: banded vs whole norm {worst:e}");
            assert!(whole.iter().any(|v| v.abs() > 1.0), "a real output");
        }
    }
}
