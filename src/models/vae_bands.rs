//! The VAE decoder's last blocks on a feature map held as bands of rows, for maps larger
//! than one buffer may be: at 768x768, SD's decoder makes a 256-channel 768x768 map
//! (576 MiB) where WebGPU's default maxBufferSize is 256 MiB. Every op is exact per band:
//! a 3x3 conv reads one halo row from each neighbour (zero padding only at the image's
//! edges), GroupNorm takes every band's statistics before normalizing any
//! (`Graph::group_norm_bands`), and upsampling and 1x1 convs work row by row.

use super::blocks::Norm;
use super::layers::{conv_with, within, ConvSpec};
use super::vae::VaeConfig;
use crate::error::OpError;
use crate::ops::{Graph, TensorId};

/// A [B, C, H, W] map as bands of rows: all of one height but the last, which may be
/// shorter (what `group_norm_bands` takes).
pub struct Bands(pub Vec<TensorId>);

impl Bands {
    /// `x` cut into `n` bands of ceil(H / n) rows (fewer bands when H is small).
    pub fn split(g: &mut Graph, x: TensorId, n: usize) -> Result<Self, OpError> {
        let h = g.shape(x)[2];
        let rows = h.div_ceil(n.max(1));
        (0..h).step_by(rows).map(|s| g.slice(x, 2, s, rows.min(h - s))).collect::<Result<_, _>>().map(Self)
    }

    /// The whole map again (only for a map that fits one buffer: the decoder's RGB output).
    pub fn join(self, g: &mut Graph) -> Result<TensorId, OpError> {
        if self.0.len() == 1 {
            return Ok(self.0[0]);
        }
        g.concat(&self.0, 2)
    }

    fn map(self, g: &mut Graph, mut f: impl FnMut(&mut Graph, TensorId) -> Result<TensorId, OpError>) -> Result<Self, OpError> {
        self.0.into_iter().map(|b| f(g, b)).collect::<Result<_, _>>().map(Self)
    }
}

/// `nn.Conv2d` to `out` channels called `name` (3x3 with padding 1, or 1x1), stride 1,
/// band by band.
pub fn conv(g: &mut Graph, name: &str, x: &Bands, out: usize, pad: usize) -> Result<Bands, OpError> {
    let n = x.0.len();
    let mut outputs = Vec::with_capacity(n);
    for (i, &band) in x.0.iter().enumerate() {
        let mut parts = Vec::new();
        // Halo rows from the neighbours stand in for the zero padding between bands.
        if pad > 0 && i > 0 {
            let above = x.0[i - 1];
            let h = g.shape(above)[2];
            parts.push(g.slice(above, 2, h - pad, pad)?);
        }
        parts.push(band);
        if pad > 0 && i + 1 < n {
            parts.push(g.slice(x.0[i + 1], 2, 0, pad)?);
        }
        let input = if parts.len() == 1 { band } else { g.concat(&parts, 2)? };
        let (top, bottom) = (if i == 0 { pad } else { 0 }, if i + 1 == n { pad } else { 0 });
        let spec = ConvSpec { out, kernel: 2 * pad + 1, stride: 1, padding: [top, bottom, pad, pad], bias: true };
        outputs.push(conv_with(g, name, input, spec)?);
    }
    Ok(Bands(outputs))
}

/// `nn.GroupNorm` called `name` (+ SiLU) over all bands together.
pub fn group_norm(g: &mut Graph, name: &str, x: &Bands, norm: Norm, silu: bool) -> Result<Bands, OpError> {
    let c = g.shape(x.0[0])[1];
    g.scoped(name, |g| {
        let (w, b) = (g.param("weight", &[c])?, g.param("bias", &[c])?);
        g.group_norm_bands(&x.0, w, b, norm.groups, norm.eps, silu).map(Bands)
    })
}

/// `ResnetBlock2D` to `out` channels without a time embedding, in the current scope.
pub fn resnet(g: &mut Graph, x: Bands, out: usize, norm: Norm) -> Result<Bands, OpError> {
    let inp = g.shape(x.0[0])[1];
    let h = group_norm(g, "norm1", &x, norm, true)?;
    let h = conv(g, "conv1", &h, out, 1)?;
    let h = group_norm(g, "norm2", &h, norm, true)?;
    let h = conv(g, "conv2", &h, out, 1)?;
    let shortcut = if inp != out { conv(g, "conv_shortcut", &x, out, 0)? } else { x };
    let pairs: Vec<_> = shortcut.0.into_iter().zip(h.0).collect();
    pairs.into_iter().map(|(s, h)| g.add(s, h)).collect::<Result<_, _>>().map(Bands)
}

/// `Upsample2D`: nearest 2x per band (rows double, so bands stay aligned), then the conv.
pub fn upsample(g: &mut Graph, x: Bands) -> Result<Bands, OpError> {
    let c = g.shape(x.0[0])[1];
    let up = x.map(g, |g, b| g.upsample2x(b))?;
    within(g, "upsamplers.0", |g| conv(g, "conv", &up, c, 1))
}

/// Where to cut the decoder into bands, when a map would exceed `max_bytes`: the up block
/// whose output is split (before its upsampler), and into how many bands. None when every
/// map fits whole.
pub fn plan(cfg: &VaeConfig, batch: usize, latent: [usize; 2], max_bytes: u64) -> Result<Option<(usize, usize)>, OpError> {
    let chans: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
    // The widest map of up block i: the channels it receives or makes.
    let widest = |i: usize| chans[i].max(if i == 0 { chans[0] } else { chans[i - 1] });
    let bytes = |i: usize| (batch * widest(i) * (latent[0] << i) * (latent[1] << i) * 4) as u64;
    let Some(level) = (0..chans.len()).find(|&i| bytes(i) > max_bytes) else { return Ok(None) };
    let too_big = || OpError::Limits {
        node: "vae.decoder".into(),
        message: format!("its {}-channel map at up block {level} ({} bytes) is over the {max_bytes}-byte buffer limit even in bands", widest(level), bytes(level)),
    };
    if level == 0 || cfg.up_attention[level..].iter().any(|&a| a) {
        return Err(too_big());
    }
    let (rows, cols) = (latent[0] << (level - 1), latent[1] << (level - 1));
    let widths: Vec<usize> = (level..chans.len()).map(widest).collect();
    let fits = |n: usize| {
        let h0 = rows.div_ceil(n);
        widths.iter().enumerate().all(|(k, &c)| ((((h0 << (k + 1)) + 2) * (cols << (k + 1)) * c * batch * 4) as u64) <= max_bytes)
    };
    (1..=rows).find(|&n| fits(n)).map(|n| Some((level - 1, n))).ok_or_else(too_big)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd_vae() -> VaeConfig {
        let v = serde_json::json!({
            "block_out_channels": [128, 256, 512, 512],
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
            "layers_per_block": 2
        });
        VaeConfig::from_json(&v).unwrap()
    }

    #[test]
    fn sd_at_768_is_cut_in_three_bands_under_the_default_buffer_limit() {
        let vae = sd_vae();
        // Up block 2 gets 512 channels at 384x384 (302 MB > 256 MiB): cut block 1's 192-row
        // output. Bands of 64 rows become 256 at 768: (256 + 2) x 768 x 256 x 4 B = 203 MB;
        // two bands of 96 would make (384 + 2) x 768 x 256 x 4 B = 304 MB.
        assert_eq!(plan(&vae, 1, [96, 96], 256 << 20).unwrap(), Some((1, 3)));
        // 512: the 256-channel 512x512 map is exactly 256 MiB, so nothing is cut.
        assert_eq!(plan(&vae, 1, [64, 64], 256 << 20).unwrap(), None);
        // Two images at 512: the 512x512 map is too big, cut at 256 rows.
        assert_eq!(plan(&vae, 2, [64, 64], 256 << 20).unwrap(), Some((2, 3)));
    }
}
