//! Images in and out: RGBA for the canvas, PNG files (with the generation's settings in
//! tEXt chunks), and float NCHW tensors for the models.

use super::request::FloatImage;

/// An 8-bit RGBA image, rows top to bottom (what a canvas ImageData holds).
#[derive(Debug, Clone, PartialEq)]
pub struct Rgba {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
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

    /// PNG bytes, with `text` as tEXt key/value chunks (the PNG "parameters" convention).
    pub fn to_png(&self, text: &[(&str, String)]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgba);
            enc.set_depth(png::BitDepth::Eight);
            for (k, v) in text {
                enc.add_text_chunk(k.to_string(), v.clone()).map_err(|e| e.to_string())?;
            }
            let mut w = enc.write_header().map_err(|e| e.to_string())?;
            w.write_image_data(&self.data).map_err(|e| e.to_string())?;
        }
        Ok(out)
    }

    /// Decodes a PNG (8-bit gray, RGB or RGBA; palette and 16-bit are expanded).
    pub fn from_png(bytes: &[u8]) -> Result<Self, String> {
        let mut dec = png::Decoder::new(bytes);
        dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = dec.read_info().map_err(|e| format!("not a readable PNG: {e}"))?;
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).map_err(|e| format!("PNG data: {e}"))?;
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
