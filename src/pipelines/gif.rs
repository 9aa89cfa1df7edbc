//! Animated GIF (GIF89a), for the places an APNG is not shown (chat apps, older viewers):
//! each frame gets its own 256-colour table (its exact colours when it has no more, else
//! a median cut of them), LZW-coded as the spec's appendix F describes (variable codes of
//! 9 to 12 bits, a clear code when the table fills), looping forever (the NETSCAPE2.0
//! block) with a delay per frame and the settings in a comment block. GIF has no alpha here:
//! frames are opaque.

use std::collections::HashMap;

use super::Rgba;

/// `frames` (one size) as a looping GIF, `delay_ms` per frame (GIF counts hundredths, so it
/// rounds to 10 ms; browsers show delays under 20 ms as 100 ms), `comment` in a comment block.
pub fn encode_gif(frames: &[Rgba], delay_ms: u16, comment: &str) -> Result<Vec<u8>, String> {
    let first = frames.first().ok_or("an animation needs at least one frame")?;
    let (w, h) = (first.width, first.height);
    if w == 0 || h == 0 || w > 65535 || h > 65535 {
        return Err(format!("GIF frames must be 1 to 65535 pixels a side, not {w}x{h}"));
    }
    if let Some(f) = frames.iter().find(|f| (f.width, f.height) != (w, h) || f.data.len() != w * h * 4) {
        return Err(format!("every frame must be {w}x{h} RGBA, not {}x{}", f.width, f.height));
    }
    let mut out = b"GIF89a".to_vec();
    out.extend((w as u16).to_le_bytes());
    out.extend((h as u16).to_le_bytes());
    out.extend([0, 0, 0]); // no global colour table, background 0, square pixels
    out.extend([0x21, 0xff, 11]);
    out.extend(b"NETSCAPE2.0");
    out.extend([3, 1, 0, 0, 0]); // loop forever
    if !comment.is_empty() {
        out.extend([0x21, 0xfe]);
        sub_blocks(&mut out, comment.as_bytes());
    }
    let delay = (delay_ms as u32).div_ceil(10).min(65535) as u16;
    for f in frames {
        let (palette, indices) = quantize(&f.data);
        out.extend([0x21, 0xf9, 4, 0x04]); // graphic control: "do not dispose", no transparency
        out.extend(delay.to_le_bytes());
        out.extend([0, 0]);
        out.push(0x2c);
        out.extend([0, 0, 0, 0]);
        out.extend((w as u16).to_le_bytes());
        out.extend((h as u16).to_le_bytes());
        out.push(0x80 | 7); // a local colour table of 2^(7+1) entries, not interlaced
        out.extend(&palette);
        out.extend(std::iter::repeat_n(0, 256 * 3 - palette.len()));
        out.push(8); // LZW minimum code size
        sub_blocks(&mut out, &lzw(&indices));
    }
    out.push(0x3b);
    Ok(out)
}

/// Data as sub-blocks of at most 255 bytes, then the terminator.
fn sub_blocks(out: &mut Vec<u8>, data: &[u8]) {
    for chunk in data.chunks(255) {
        out.push(chunk.len() as u8);
        out.extend(chunk);
    }
    out.push(0);
}

/// A frame's colour table (RGB triples) and each pixel's index in it.
fn quantize(rgba: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<[u8; 3]> = rgba.chunks_exact(4).map(|p| [p[0], p[1], p[2]]).collect();
    let mut exact: HashMap<[u8; 3], u8> = HashMap::new();
    for p in &pixels {
        if !exact.contains_key(p) {
            if exact.len() == 256 {
                return median_cut(&pixels);
            }
            exact.insert(*p, exact.len() as u8);
        }
    }
    let mut palette = vec![0u8; exact.len() * 3];
    for (c, &i) in &exact {
        palette[3 * i as usize..3 * i as usize + 3].copy_from_slice(c);
    }
    (palette, pixels.iter().map(|p| exact[p]).collect())
}

/// Heckbert's median cut: split the box whose widest channel spans most at that channel's
/// median until there are 256 boxes; each box's mean is a colour, each pixel takes the
/// nearest.
fn median_cut(pixels: &[[u8; 3]]) -> (Vec<u8>, Vec<u8>) {
    let span = |b: &[[u8; 3]]| -> (usize, u8) {
        (0..3)
            .map(|c| {
                let (lo, hi) = b.iter().fold((255u8, 0u8), |(lo, hi), p| (lo.min(p[c]), hi.max(p[c])));
                (c, hi - lo)
            })
            .max_by_key(|&(_, s)| s)
            .unwrap_or((0, 0))
    };
    let mut boxes: Vec<Vec<[u8; 3]>> = vec![pixels.to_vec()];
    while boxes.len() < 256 {
        let Some((i, (c, s))) = boxes.iter().enumerate().map(|(i, b)| (i, span(b))).max_by_key(|&(_, (_, s))| s) else { break };
        if s == 0 {
            break;
        }
        let mut b = boxes.swap_remove(i);
        b.sort_unstable_by_key(|p| p[c]);
        let upper = b.split_off(b.len() / 2);
        boxes.push(b);
        boxes.push(upper);
    }
    let palette: Vec<[u8; 3]> = boxes
        .iter()
        .map(|b| {
            let n = b.len().max(1) as u32;
            let sum = b.iter().fold([0u32; 3], |s, p| [s[0] + p[0] as u32, s[1] + p[1] as u32, s[2] + p[2] as u32]);
            [(sum[0] + n / 2) / n, (sum[1] + n / 2) / n, (sum[2] + n / 2) / n].map(|v| v as u8)
        })
        .collect();
    let mut nearest: HashMap<[u8; 3], u8> = HashMap::new();
    let indices = pixels
        .iter()
        .map(|p| {
            *nearest.entry(*p).or_insert_with(|| {
                let d = |q: &[u8; 3]| (0..3).map(|c| (p[c] as i32 - q[c] as i32).pow(2)).sum::<i32>();
                palette.iter().enumerate().min_by_key(|(_, q)| d(q)).map_or(0, |(i, _)| i as u8)
            })
        })
        .collect();
    (palette.concat(), indices)
}

/// GIF's LZW of 8-bit indices: codes LSB first, 9 bits growing to 12, clear code 256, end
/// code 257; a full table (4096 codes) is cleared and starts again.
fn lzw(indices: &[u8]) -> Vec<u8> {
    const CLEAR: u32 = 256;
    const END: u32 = 257;
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u64, 0u32);
    let mut emit = |code: u32, size: u32, out: &mut Vec<u8>| {
        acc |= (code as u64) << bits;
        bits += size;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    };
    let mut table: HashMap<(u32, u8), u32> = HashMap::new();
    let (mut next, mut size) = (258u32, 9u32);
    emit(CLEAR, size, &mut out);
    let mut prefix: Option<u32> = None;
    for &k in indices {
        let Some(p) = prefix else {
            prefix = Some(k as u32);
            continue;
        };
        if let Some(&code) = table.get(&(p, k)) {
            prefix = Some(code);
            continue;
        }
        emit(p, size, &mut out);
        if next == 4096 {
            // The decoder's table is full too: both start again.
            emit(CLEAR, size, &mut out);
            table.clear();
            (next, size) = (258, 9);
        } else {
            table.insert((p, k), next);
            next += 1;
            // The decoder adds each entry one code later than we do, and widens once its
            // table reaches 2^size: for the codes after this one, that is once `next`
            // passes 2^size.
            if next > (1 << size) && size < 12 {
                size += 1;
            }
        }
        prefix = Some(k as u32);
    }
    if let Some(p) = prefix {
        emit(p, size, &mut out);
        // Reading that code, the decoder adds the entry we would have added now (its
        // table is then `next` long) and widens if that fills 2^size: the end code follows
        // at its width.
        if next == (1 << size) && size < 12 {
            size += 1;
        }
    }
    emit(END, size, &mut out);
    if bits > 0 {
        out.push(acc as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoder written from the spec, separately from the encoder above, for round trips.
    fn unlzw(data: &[u8], pixels: usize) -> Vec<u8> {
        let (mut pos, mut size) = (0usize, 9u32);
        let read = |pos: &mut usize, size: u32| -> u32 {
            let mut v = 0u32;
            for i in 0..size {
                let bit = (data[(*pos + i as usize) / 8] >> ((*pos + i as usize) % 8)) & 1;
                v |= (bit as u32) << i;
            }
            *pos += size as usize;
            v
        };
        let mut dict: Vec<Vec<u8>> = (0..258).map(|i| if i < 256 { vec![i as u8] } else { vec![] }).collect();
        let mut out = Vec::new();
        let mut prev: Option<Vec<u8>> = None;
        while out.len() < pixels {
            let code = read(&mut pos, size) as usize;
            if code == 256 {
                dict.truncate(258);
                size = 9;
                prev = None;
                continue;
            }
            assert_ne!(code, 257, "end code before every pixel");
            let entry = if code < dict.len() {
                dict[code].clone()
            } else {
                let p = prev.clone().expect("a new code follows a known one");
                let mut e = p.clone();
                e.push(p[0]);
                e
            };
            if let Some(p) = prev {
                let mut e = p;
                e.push(entry[0]);
                dict.push(e);
                if dict.len() == (1 << size) && size < 12 {
                    size += 1;
                }
            }
            out.extend(&entry);
            prev = Some(entry);
        }
        assert_eq!(read(&mut pos, size), 257, "the end code follows the last pixel");
        out
    }

    #[test]
    fn lzw_round_trips_through_table_growth_and_clears() {
        // Enough varied data to pass 512, 1024, 2048 and 4096 codes.
        let mut x = 12345u32;
        let noisy: Vec<u8> = (0..60_000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8 % 7
            })
            .collect();
        for data in [vec![5u8; 1], vec![0, 0, 0, 0, 1, 1, 0, 0], noisy, (0..=255).cycle().take(9000).collect()] {
            assert_eq!(unlzw(&lzw(&data), data.len()), data);
        }
        // Every length up to past the first widening: the end code must follow at the
        // width the decoder has reached, whichever code is last.
        let ramp: Vec<u8> = (0..700u32).map(|i| (i * 7 % 251) as u8).collect();
        for n in 1..ramp.len() {
            assert_eq!(unlzw(&lzw(&ramp[..n]), n), &ramp[..n], "{n} values");
        }
    }

    #[test]
    fn few_colours_are_exact_and_many_are_close() {
        let few: Vec<u8> = (0..64u32).flat_map(|i| [(i * 4) as u8, 7, 200, 255]).collect();
        let (palette, idx) = quantize(&few);
        for (i, p) in few.chunks(4).enumerate() {
            assert_eq!(&palette[3 * idx[i] as usize..3 * idx[i] as usize + 3], &p[..3]);
        }
        let many: Vec<u8> = (0..4096u32).flat_map(|i| [(i % 64 * 4) as u8, (i / 64 * 4) as u8, 128, 255]).collect();
        let (palette, idx) = quantize(&many);
        assert_eq!(palette.len(), 256 * 3);
        let worst = many.chunks(4).enumerate().map(|(i, p)| (0..3).map(|c| (p[c] as i32 - palette[3 * idx[i] as usize + c] as i32).abs()).max().unwrap()).max().unwrap();
        assert!(worst <= 8, "a 64x64 gradient in 256 colours is within 8 levels, not {worst}");
    }

    #[test]
    fn the_file_has_its_blocks_in_order() {
        let f = Rgba { width: 2, height: 1, data: vec![255, 0, 0, 255, 0, 0, 255, 255] };
        let gif = encode_gif(&[f.clone(), f], 125, "a fox").unwrap();
        assert!(gif.starts_with(b"GIF89a\x02\x00\x01\x00"));
        assert!(gif.windows(11).any(|w| w == b"NETSCAPE2.0"));
        assert_eq!(gif.windows(4).filter(|w| w == &[0x21, 0xf9, 4, 0x04]).count(), 2, "a graphic control block per frame");
        assert!(gif.windows(5).any(|w| w == b"a fox"));
        assert_eq!(*gif.last().unwrap(), 0x3b);
        assert!(encode_gif(&[], 100, "").is_err());
    }
}
