//! The safetensors header parser on arbitrary files: it must never panic, and whatever it
//! accepts must be safe to slice and decode.

#![no_main]

use easel_fuzz::safetensors::{self, Header};
use libfuzzer_sys::fuzz_target;

/// What an accepted header promises: every tensor inside the file, sized by its shape.
fn check(h: &Header, file_size: u64) {
    for (name, t) in &h.tensors {
        assert!(t.begin <= t.end, "{name}");
        assert!(h.data_start + t.end <= file_size, "{name} ends past the file");
        assert_eq!((t.end - t.begin) as usize, t.numel() * t.dtype.size(), "{name}");
    }
}

fuzz_target!(|data: &[u8]| {
    // A whole file in memory (the native converter).
    if let Ok(h) = safetensors::parse("fuzz.safetensors", data) {
        check(&h, data.len() as u64);
        for (name, t) in &h.tensors {
            let raw = &data[(h.data_start + t.begin) as usize..(h.data_start + t.end) as usize];
            if let Ok(values) = safetensors::to_f32("fuzz", name, t, raw) {
                assert_eq!(values.len(), t.numel(), "{name}");
            }
        }
    }
    // Header bytes plus a size the server claims (Hub mode reads only the header).
    if data.len() >= 16 {
        let claimed = u64::from_le_bytes(data[..8].try_into().unwrap());
        let file = &data[8..];
        if let Ok(n) = safetensors::header_len("fuzz", file, claimed) {
            if let Some(header) = file.get(8..8 + n as usize) {
                if let Ok(h) = safetensors::parse_header("fuzz", header, claimed) {
                    check(&h, claimed);
                }
            }
        }
    }
});
