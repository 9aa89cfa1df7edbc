//! Host-side arithmetic on small latent tensors between UNet calls.

use super::image::Rgba;

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
