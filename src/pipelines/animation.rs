//! Animated PNG (APNG) for walks and morphs: every frame full size, the settings as text
//! chunks like a still's. Browsers play APNG in an <img>; viewers without APNG support show
//! the first frame. `apng_frames` reads one back (the tests check the frames survive).

use super::image::Rgba;

/// The frames (all the same size) as an APNG looping forever, `delay_ms` per frame.
pub fn encode_apng(frames: &[Rgba], delay_ms: u16, text: &[(&str, String)]) -> Result<Vec<u8>, String> {
    let first = frames.first().ok_or("an animation needs at least one frame")?;
    if let Some((i, f)) = frames.iter().enumerate().find(|(_, f)| (f.width, f.height) != (first.width, first.height)) {
        return Err(format!("frame {i} is {}x{}, the first is {}x{}", f.width, f.height, first.width, first.height));
    }
    let mut out = Vec::new();
    {
        let mut enc = super::image::rgba_encoder(&mut out, first.width, first.height, text)?;
        enc.set_animated(frames.len() as u32, 0).map_err(|e| e.to_string())?;
        enc.set_frame_delay(delay_ms, 1000).map_err(|e| e.to_string())?;
        let mut w = enc.write_header().map_err(|e| e.to_string())?;
        for f in frames {
            w.write_image_data(&f.data).map_err(|e| e.to_string())?;
        }
        w.finish().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The frames of an APNG written by `encode_apng` (full-size RGBA frames).
pub fn apng_frames(bytes: &[u8]) -> Result<Vec<Rgba>, String> {
    let mut reader = png::Decoder::new(bytes).read_info().map_err(|e| format!("not a readable PNG: {e}"))?;
    let count = reader.info().animation_control().map_or(1, |a| a.num_frames as usize);
    let mut frames = Vec::with_capacity(count);
    for _ in 0..count {
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).map_err(|e| format!("frame {}: {e}", frames.len()))?;
        buf.truncate(info.buffer_size());
        frames.push(Rgba { width: info.width as usize, height: info.height as usize, data: buf });
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_text_survive_the_round_trip() {
        let frame = |v: u8| Rgba { width: 3, height: 2, data: (0..24).map(|i| v.wrapping_add(i)).collect() };
        let frames = vec![frame(0), frame(100), frame(200)];
        let apng = encode_apng(&frames, 125, &[("prompt", "红心 ❤️ -> 😀".into())]).unwrap();
        assert_eq!(apng_frames(&apng).unwrap(), frames);
        assert_eq!(Rgba::png_text(&apng).unwrap(), vec![("prompt".to_string(), "红心 ❤️ -> 😀".to_string())]);
        // A still viewer sees the first frame.
        assert_eq!(Rgba::from_png(&apng).unwrap(), frames[0]);
        let odd = Rgba { width: 2, height: 2, data: vec![0; 16] };
        assert_eq!(encode_apng(&[frame(0), odd], 100, &[]).unwrap_err(), "frame 1 is 2x2, the first is 3x2");
    }
}
