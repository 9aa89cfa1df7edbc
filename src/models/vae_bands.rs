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
}

/// Band `i` of `x` with `pad` rows of each neighbour, the rows a 3x3 conv reads across
/// the cut, and the zero rows it still needs at the image's top and bottom edges.
fn with_halo(g: &mut Graph, x: &Bands, i: usize, pad: usize) -> Result<(TensorId, [usize; 2]), OpError> {
    let n = x.0.len();
    let mut parts = Vec::new();
    if pad > 0 && i > 0 {
        let above = x.0[i - 1];
        let h = g.shape(above)[2];
        parts.push(g.slice(above, 2, h - pad, pad)?);
    }
    parts.push(x.0[i]);
    if pad > 0 && i + 1 < n {
        parts.push(g.slice(x.0[i + 1], 2, 0, pad)?);
    }
    let tile = if parts.len() == 1 { parts[0] } else { g.concat(&parts, 2)? };
    Ok((tile, [if i == 0 { pad } else { 0 }, if i + 1 == n { pad } else { 0 }]))
}

/// `nn.Conv2d` called `name` to `out` channels, stride 1, on a tile from `with_halo`
/// (3x3 when `pad` is 1, 1x1 when 0): the band's rows of the whole map's conv.
fn conv_tile(g: &mut Graph, name: &str, tile: TensorId, edges: [usize; 2], out: usize, pad: usize) -> Result<TensorId, OpError> {
    let spec = ConvSpec { out, kernel: 2 * pad + 1, stride: 1, padding: [edges[0], edges[1], pad, pad], bias: true };
    conv_with(g, name, tile, spec)
}

/// The whole map's GroupNorm moments for the `nn.GroupNorm` called `name`, and its
/// weight and bias.
fn norm_of(g: &mut Graph, name: &str, x: &Bands, norm: Norm) -> Result<[TensorId; 3], OpError> {
    let c = g.shape(x.0[0])[1];
    let moments = g.band_moments(&x.0, norm.groups, norm.eps)?;
    g.scoped(name, |g| Ok([moments, g.param("weight", &[c])?, g.param("bias", &[c])?]))
}

/// GroupNorm + SiLU (from `norm_of`) then a 3x3 conv, band by band: each band is
/// normalized with its halo rows just before its conv, so one band's normalized copy is
/// alive at a time, never the whole map's.
fn norm_conv(
    g: &mut Graph,
    x: &Bands,
    norm: (&str, Norm),
    conv: &str,
    out: usize,
    mut per_band: impl FnMut(&mut Graph, usize, TensorId) -> Result<TensorId, OpError>,
) -> Result<Bands, OpError> {
    let [moments, w, b] = norm_of(g, norm.0, x, norm.1)?;
    (0..x.0.len())
        .map(|i| {
            let (tile, edges) = with_halo(g, x, i, 1)?;
            let t = g.group_norm_apply(tile, w, b, moments, norm.1.groups, true)?;
            let h = conv_tile(g, conv, t, edges, out, 1)?;
            per_band(g, i, h)
        })
        .collect::<Result<_, _>>()
        .map(Bands)
}

/// `ResnetBlock2D` to `out` channels without a time embedding, in the current scope, in
/// band-major order: a band's shortcut and conv1 are made before the next band's, so
/// each input band dies as soon as its neighbour has read its halo row.
pub fn resnet(g: &mut Graph, x: Bands, out: usize, norm: Norm) -> Result<Bands, OpError> {
    let inp = g.shape(x.0[0])[1];
    let mut shortcut = Vec::with_capacity(x.0.len());
    let h = norm_conv(g, &x, ("norm1", norm), "conv1", out, |g, i, h| {
        shortcut.push(if inp != out { conv_tile(g, "conv_shortcut", x.0[i], [0, 0], out, 0)? } else { x.0[i] });
        Ok(h)
    })?;
    norm_conv(g, &h, ("norm2", norm), "conv2", out, |g, i, h| g.add(shortcut[i], h))
}

/// `Upsample2D`, band by band: nearest 2x (rows double, so bands stay aligned), then the
/// conv, whose halo rows are the neighbours' upsampled edge rows.
pub fn upsample(g: &mut Graph, x: Bands) -> Result<Bands, OpError> {
    let c = g.shape(x.0[0])[1];
    let n = x.0.len();
    within(g, "upsamplers.0", |g| {
        (0..n)
            .map(|i| {
                let mut parts = Vec::new();
                // Nearest upsampling repeats each row, so a neighbour's edge row, upsampled,
                // is the one halo row the conv reads.
                let edge = |g: &mut Graph, band: TensorId, row: usize| -> Result<TensorId, OpError> {
                    let r = g.slice(band, 2, row, 1)?;
                    let up = g.upsample2x(r)?;
                    g.slice(up, 2, 0, 1)
                };
                if i > 0 {
                    let h = g.shape(x.0[i - 1])[2];
                    parts.push(edge(g, x.0[i - 1], h - 1)?);
                }
                parts.push(g.upsample2x(x.0[i])?);
                if i + 1 < n {
                    parts.push(edge(g, x.0[i + 1], 0)?);
                }
                let tile = if parts.len() == 1 { parts[0] } else { g.concat(&parts, 2)? };
                conv_tile(g, "conv", tile, [usize::from(i == 0), usize::from(i + 1 == n)], c, 1)
            })
            .collect::<Result<_, _>>()
            .map(Bands)
    })
}

/// The decoder's end: `conv_norm_out` (GroupNorm + SiLU) and `conv_out`, band by band.
pub fn norm_out(g: &mut Graph, x: Bands, norm: Norm, out: usize) -> Result<Bands, OpError> {
    norm_conv(g, &x, ("conv_norm_out", norm), "conv_out", out, |_, _, h| Ok(h))
}

/// Maps over this many bytes are decoded in bands even where one buffer could hold them:
/// in band-major order only one band's temporaries (normalized copy, halo tile, upsampled
/// rows) are alive at a time instead of whole maps' copies.
pub const BAND_OVER: u64 = 64 << 20;
/// Bands cut for memory hold at most this many bytes each.
pub const BAND_BYTES: u64 = 32 << 20;

/// Where to cut the decoder into bands, when a map would exceed `max_bytes`: the up block
/// whose output is split (before its upsampler), and into how many bands. None when every
/// map fits whole.
pub fn plan(cfg: &VaeConfig, batch: usize, latent: [usize; 2], max_bytes: u64) -> Result<Option<(usize, usize)>, OpError> {
    cut(cfg, batch, latent, max_bytes, max_bytes, false)
}

/// `plan` for memory as well as the buffer limit: also cuts maps over `BAND_OVER` into
/// bands of at most `BAND_BYTES`, when the decoder's shape allows; else `plan`.
pub fn plan_for_memory(cfg: &VaeConfig, batch: usize, latent: [usize; 2], max_bytes: u64) -> Result<Option<(usize, usize)>, OpError> {
    match cut(cfg, batch, latent, max_bytes.min(BAND_OVER), max_bytes.min(BAND_BYTES), true) {
        Ok(Some(c)) => Ok(Some(c)),
        _ => plan(cfg, batch, latent, max_bytes),
    }
}

/// The first up block with a map over `over` bytes starts the bands (with `lift`, up block
/// 1 when it is block 0, which cannot be cut), each band at most `band_max` bytes.
fn cut(cfg: &VaeConfig, batch: usize, latent: [usize; 2], over: u64, band_max: u64, lift: bool) -> Result<Option<(usize, usize)>, OpError> {
    let chans: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
    // The widest map of up block i: the channels it receives or makes.
    let widest = |i: usize| chans[i].max(if i == 0 { chans[0] } else { chans[i - 1] });
    let bytes = |i: usize| (batch * widest(i) * (latent[0] << i) * (latent[1] << i) * 4) as u64;
    let Some(mut level) = (0..chans.len()).find(|&i| bytes(i) > over) else { return Ok(None) };
    if lift && level == 0 && chans.len() > 1 {
        level = 1;
    }
    let too_big = || OpError::Limits {
        node: "vae.decoder".into(),
        message: format!("its {}-channel map at up block {level} ({} bytes) is over the {band_max}-byte buffer limit even in bands", widest(level), bytes(level)),
    };
    if level == 0 || cfg.up_attention[level..].iter().any(|&a| a) {
        return Err(too_big());
    }
    let (rows, cols) = (latent[0] << (level - 1), latent[1] << (level - 1));
    let widths: Vec<usize> = (level..chans.len()).map(widest).collect();
    let fits = |n: usize| {
        let h0 = rows.div_ceil(n);
        widths.iter().enumerate().all(|(k, &c)| ((((h0 << (k + 1)) + 2) * (cols << (k + 1)) * c * batch * 4) as u64) <= band_max)
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
