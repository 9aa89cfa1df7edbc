//! Host-side arithmetic on small latent tensors between UNet calls.

use super::image::Rgba;
use super::request::Request;
use super::PipelineError;
use crate::rng::Rng;

/// The starting noise of `shape` ([images, ..]): `req.init_latents` when given, else the
/// seed's draws from `rng` (so the sampler's later draws continue the same stream), walked
/// toward `req.walk`'s seed by slerp (image by image) when a walk is asked for.
pub fn starting_noise(req: &Request, rng: &mut Rng, shape: &[usize]) -> Result<Vec<f32>, PipelineError> {
    let total: usize = shape.iter().product();
    let len = total / shape[0].max(1);
    let dims = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
    match (&req.init_latents, &req.walk) {
        (Some(_), Some(_)) => Err(PipelineError::Request("give either init latents or a walk, not both".into())),
        (Some(l), None) if l.len() == total => Ok(l.clone()),
        (Some(l), None) => Err(PipelineError::Request(format!("init latents have {} values, the generation wants {total} ({dims})", l.len()))),
        (None, None) => Ok(rng.normal_vec(total)),
        (None, Some(walk)) => {
            let (a, b) = (rng.normal_vec(total), Rng::new(walk.to_seed).normal_vec(total));
            Ok(a.chunks(len).zip(b.chunks(len)).flat_map(|(a, b)| slerp(a, b, walk.t)).collect())
        }
    }
}

/// The generator for the draws after the starting noise (`drawn` values): on a walk, it
/// walks too (see `Rng::walking`), its partner past the same draws of the other seed.
pub fn after_start(req: &Request, rng: Rng, drawn: usize) -> Rng {
    match (&req.walk, &req.init_latents) {
        (Some(w), None) => {
            let mut to = Rng::new(w.to_seed);
            to.normal_vec(drawn);
            rng.walking(to, w.t)
        }
        _ => rng,
    }
}

/// (1 - t) a + t b, exact at both ends (0 x a adds nothing to b): a morph's conditioning.
pub fn lerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| (1.0 - t) * x + t * y).collect()
}

/// Spherical interpolation from `a` (t = 0, returned exactly) to `b` (t = 1, exactly): the
/// path keeps a Gaussian draw's norm where a straight line would shrink it mid-way.
/// Nearly parallel vectors fall back to the straight line.
pub fn slerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let cos = (dot / (norm(a) * norm(b))).clamp(-1.0, 1.0);
    let theta = libm::acos(cos);
    let t = t as f64;
    let (ca, cb) = if libm::sin(theta).abs() < 1e-6 { (1.0 - t, t) } else { (libm::sin((1.0 - t) * theta) / libm::sin(theta), libm::sin(t * theta) / libm::sin(theta)) };
    a.iter().zip(b).map(|(x, y)| (ca * *x as f64 + cb * *y as f64) as f32).collect()
}

/// `x` repeated `n` times along the batch axis.
pub fn repeat(x: &[f32], n: usize) -> Vec<f32> {
    x.repeat(n)
}

/// Classifier-free guidance on a [uncond..., cond...] batch: u + g (c - u).
pub fn cfg_combine(out: &[f32], guidance: f32) -> Vec<f32> {
    let (u, c) = out.split_at(out.len() / 2);
    u.iter().zip(c).map(|(u, c)| u + guidance * (c - u)).collect()
}

/// A [1, 1, H, W] mask resized to [1, 1, h, w] like torch's `interpolate(mode="nearest")`:
/// output pixel i reads input pixel floor(i * H / h).
pub fn mask_to_latent(mask: &[f32], height: usize, width: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        for x in 0..w {
            out.push(mask[(y * height / h) * width + x * width / w]);
        }
    }
    out
}

/// (1 - m) * known + m * generated on [b, channels, hw], the [b, 1, hw] mask broadcast over
/// channels.
pub fn blend(known: &[f32], generated: &[f32], mask: &[f32], channels: usize, hw: usize) -> Vec<f32> {
    known
        .iter()
        .zip(generated)
        .enumerate()
        .map(|(i, (k, g))| {
            let (sample, pixel) = (i / (channels * hw), i % hw);
            let m = mask[sample * hw + pixel];
            (1.0 - m) * k + m * g
        })
        .collect()
}

/// A cheap RGB approximation of SD latents (a fixed linear map per pixel, values measured on
/// SD 1.x's VAE), upscaled 8x nearest: good enough to watch an image form.
pub fn latent_preview(latents: &[f32], channels: usize, h: usize, w: usize) -> Rgba {
    const MAP: [[f32; 3]; 4] = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]];
    let (big_w, big_h) = (w * 8, h * 8);
    let mut data = vec![255u8; big_w * big_h * 4];
    for y in 0..big_h {
        for x in 0..big_w {
            let p = (y / 8) * w + x / 8;
            for (c, px) in data[(y * big_w + x) * 4..][..3].iter_mut().enumerate() {
                let v: f32 = (0..channels.min(4)).map(|k| latents[k * h * w + p] * MAP[k][c]).sum();
                *px = ((v + 1.0) * 127.5).clamp(0.0, 255.0) as u8;
            }
        }
    }
    Rgba { width: big_w, height: big_h, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slerp_ends_exactly_and_keeps_the_norm_between() {
        let a = Rng::new(1).normal_vec(4096);
        let b = Rng::new(2).normal_vec(4096);
        assert_eq!(slerp(&a, &b, 0.0), a);
        assert_eq!(slerp(&a, &b, 1.0), b);
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        // Two independent draws are nearly orthogonal: the straight line's middle has about
        // 1/sqrt(2) of the norm, the arc all of it (between the ends' norms).
        let (na, nb) = (norm(&a), norm(&b));
        for t in [0.25f32, 0.5, 0.75] {
            let n = norm(&slerp(&a, &b, t));
            assert!(n > na.min(nb) * 0.99 && n < na.max(nb) * 1.01, "t {t}: {n} vs {na}, {nb}");
        }
        let mid: Vec<f32> = a.iter().zip(&b).map(|(x, y)| 0.5 * (x + y)).collect();
        assert!((norm(&mid) / na - std::f64::consts::FRAC_1_SQRT_2).abs() < 0.03);
    }
}
