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

/// The input read as little-endian u64s laid over a header's shapes and offsets and the
/// file's size: overflowing arithmetic hides in big numbers, which JSON mutation seldom writes.
fn numeric(data: &[u8]) {
    let mut words = data.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
    let mut next = move || words.next().unwrap_or(0);
    let size = next();
    let dtypes = ["F32", "F16", "BF16", "I64", "I32", "U8"];
    let header: serde_json::Map<String, serde_json::Value> = (0..next() % 4)
        .map(|i| {
            let dtype = dtypes[(next() % 6) as usize];
            let shape: Vec<u64> = (0..next() % 4).map(|_| next()).collect();
            (format!("t{i}"), serde_json::json!({ "dtype": dtype, "shape": shape, "data_offsets": [next(), next()] }))
        })
        .collect();
    let json = serde_json::to_vec(&header).expect("json");
    if let Ok(h) = safetensors::parse_header("fuzz", &json, size) {
        check(&h, size);
    }
}

fuzz_target!(|data: &[u8]| {
    numeric(data);
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
