//! Images in and out: RGBA for the canvas, PNG files (with the generation's settings in
//! text chunks, see `metadata.rs`), and float NCHW tensors for the models.

use super::request::FloatImage;

/// An 8-bit RGBA image, rows top to bottom (what a canvas ImageData holds).
#[derive(Debug, Clone, PartialEq)]
pub struct Rgba {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// An 8-bit RGBA PNG encoder with `text` as key/value chunks: tEXt where the value is
/// Latin-1, else iTXt (stills and animations share it).
pub(super) fn rgba_encoder<W: std::io::Write>(out: W, width: usize, height: usize, text: &[(&str, String)]) -> Result<png::Encoder<'static, W>, String> {
    let mut enc = png::Encoder::new(out, width as u32, height as u32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    for (k, v) in text {
        if v.chars().all(|c| (c as u32) < 256) { enc.add_text_chunk(k.to_string(), v.clone()) } else { enc.add_itxt_chunk(k.to_string(), v.clone()) }.map_err(|e| e.to_string())?;
    }
    Ok(enc)
}

impl Rgba {
    /// From one [3, H, W] image in about [-1, 1]: clamp(x / 2 + 0.5, 0, 1), as diffusers'
    /// postprocessing, rounded to 8 bits.
    pub fn from_nchw(x: &[f32], width: usize, height: usize) -> Self {
        let hw = width * height;
        let mut data = vec![255u8; hw * 4];
        for p in 0..hw {
            for c in 0..3 {
                data[p * 4 + c] = ((x[c * hw + p] / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
        Self { width, height, data }
    }

    /// From an NCHW RGB image in [0, 1] (aMUSEd's VQ decoder; values outside are clipped).
    pub fn from_unit_nchw(x: &[f32], width: usize, height: usize) -> Self {
        let hw = width * height;
        let mut data = vec![255u8; hw * 4];
        for p in 0..hw {
            for c in 0..3 {
                data[p * 4 + c] = (x[c * hw + p].clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
        Self { width, height, data }
    }

    /// PNG bytes, with `text` as key/value chunks: tEXt where the value is Latin-1 (what
    /// every reader shows), else iTXt (UTF-8), as PIL and AUTOMATIC1111 write them.
    pub fn to_png(&self, text: &[(&str, String)]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        {
            let enc = rgba_encoder(&mut out, self.width, self.height, text)?;
            let mut w = enc.write_header().map_err(|e| e.to_string())?;
            w.write_image_data(&self.data).map_err(|e| e.to_string())?;
        }
        Ok(out)
    }

    /// Every text chunk of a PNG (tEXt, zTXt and iTXt), as key/value pairs in file order
    /// within each kind.
    pub fn png_text(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
        let reader = png::Decoder::new(bytes).read_info().map_err(|e| format!("not a readable PNG: {e}"))?;
        let info = reader.info();
        let mut out: Vec<(String, String)> = info.uncompressed_latin1_text.iter().map(|t| (t.keyword.clone(), t.text.clone())).collect();
        for t in &info.compressed_latin1_text {
            out.push((t.keyword.clone(), t.get_text().map_err(|e| format!("zTXt '{}': {e}", t.keyword))?));
        }
        for t in &info.utf8_text {
            out.push((t.keyword.clone(), t.get_text().map_err(|e| format!("iTXt '{}': {e}", t.keyword))?));
        }
        Ok(out)
    }

    /// Decodes a PNG (8-bit gray, RGB or RGBA; palette and 16-bit are expanded).
    pub fn from_png(bytes: &[u8]) -> Result<Self, String> {
        // Photos of 10,000 x 10,000 are 400 MB as RGBA: allow them (the default is 64 MiB).
        let mut dec = png::Decoder::new_with_limits(bytes, png::Limits { bytes: 1 << 30 });
        dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = dec.read_info().map_err(|e| format!("not a readable PNG: {e}"))?;
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).map_err(|e| format!("the PNG's pixel data is truncated or corrupt ({e})"))?;
        let (w, h) = (info.width as usize, info.height as usize);
        let channels = info.color_type.samples();
        let mut data = Vec::with_capacity(w * h * 4);
        for px in buf[..w * h * channels].chunks(channels) {
            match channels {
                1 => data.extend_from_slice(&[px[0], px[0], px[0], 255]),
                2 => data.extend_from_slice(&[px[0], px[0], px[0], px[1]]),
                3 => data.extend_from_slice(&[px[0], px[1], px[2], 255]),
                _ => data.extend_from_slice(&px[..4]),
            }
        }
        Ok(Self { width: w, height: h, data })
    }

    /// Resized to `width` x `height` with a box filter: each output pixel averages the source
    /// pixels it covers (so large downscales do not alias); enlarging repeats pixels.
    pub fn resized(&self, width: usize, height: usize) -> Self {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let (sx, sy) = (self.width as f32 / width as f32, self.height as f32 / height as f32);
        let mut data = vec![0u8; width * height * 4];
        for y in 0..height {
            let (y0, y1) = span(y, sy, self.height);
            for x in 0..width {
                let (x0, x1) = span(x, sx, self.width);
                let mut sum = [0f32; 4];
                for yy in y0..y1 {
                    for xx in x0..x1 {
                        let p = &self.data[(yy * self.width + xx) * 4..][..4];
                        sum.iter_mut().zip(p).for_each(|(s, &v)| *s += v as f32);
                    }
                }
                let n = ((y1 - y0) * (x1 - x0)) as f32;
                for c in 0..4 {
                    data[(y * width + x) * 4 + c] = (sum[c] / n).round() as u8;
                }
            }
        }
        Self { width, height, data }
    }

    /// [1, 3, H, W] in [0, 1].
    pub fn to_float_rgb(&self) -> FloatImage {
        let hw = self.width * self.height;
        let mut values = vec![0.0; 3 * hw];
        for p in 0..hw {
            for c in 0..3 {
                values[c * hw + p] = self.data[p * 4 + c] as f32 / 255.0;
            }
        }
        FloatImage { shape: [1, 3, self.height, self.width], values }
    }

    /// [1, 1, H, W] in [0, 1] from the red channel (white = repaint).
    pub fn to_float_mask(&self) -> FloatImage {
        let values = self.data.chunks(4).map(|p| p[0] as f32 / 255.0).collect();
        FloatImage { shape: [1, 1, self.height, self.width], values }
    }
}

/// The source rows (or columns) output index `i` covers at `scale` source pixels per output
/// pixel: at least one, nearest when upscaling.
fn span(i: usize, scale: f32, len: usize) -> (usize, usize) {
    let a = ((i as f32 * scale) as usize).min(len - 1);
    let b = (((i + 1) as f32 * scale).ceil() as usize).clamp(a + 1, len);
    (a, b)
}
