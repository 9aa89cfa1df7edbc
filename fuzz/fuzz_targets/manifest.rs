//! The manifest parser on arbitrary input: it must never panic, and whatever it accepts must
//! keep every tensor inside its shards with the byte length its shape and storage need.

#![no_main]

use easel_fuzz::manifest::{Manifest, Part, ShardEntry, TensorEntry, FORMAT_VERSION, MAX_SHARD_BYTES};
use easel_fuzz::ops::StorageType;
use libfuzzer_sys::fuzz_target;

fn check(m: &Manifest) {
    for s in &m.shards {
        assert!(s.size <= MAX_SHARD_BYTES, "{}", s.file);
    }
    for t in &m.tensors {
        let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).expect("shape fits");
        assert_eq!(t.storage.byte_len(numel) as u64, t.byte_len(), "{}", t.name);
        for p in &t.parts {
            assert!(p.offset + p.length <= m.shards[p.shard].size, "{}", t.name);
        }
    }
}

/// Parses `m` after giving it the right content hash (raw bytes rarely carry one, which
/// would stop parsing before the structural checks).
fn parse_rehashed(mut m: Manifest) {
    m.content_sha256 = m.compute_hash();
    let json = serde_json::to_vec(&m).expect("serializable");
    if let Ok(parsed) = Manifest::parse(&json) {
        check(&parsed);
        assert_eq!((&parsed.tensors, &parsed.shards), (&m.tensors, &m.shards));
    }
}

/// The input read as little-endian u64s laid over a manifest's shapes, sizes, offsets and
/// lengths: overflowing arithmetic hides in big numbers, which JSON mutation seldom writes.
fn numeric(data: &[u8]) -> Manifest {
    let mut words = data.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
    let mut next = move || words.next().unwrap_or(0);
    let shards: Vec<ShardEntry> =
        (0..1 + next() % 2).map(|i| ShardEntry { file: format!("shard-{i:05}.bin"), size: next() % (MAX_SHARD_BYTES + 2), sha256: "0".repeat(64) }).collect();
    let storages = [StorageType::F32, StorageType::F16, StorageType::Q8_0, StorageType::Q4_0];
    let tensors = (0..next() % 4)
        .map(|i| TensorEntry {
            name: format!("t{i}"),
            storage: storages[(next() % 4) as usize],
            shape: (0..next() % 4).map(|_| next() as usize).collect(),
            parts: (0..next() % 3).map(|_| Part { shard: (next() % 3) as usize, offset: next(), length: next() }).collect(),
        })
        .collect();
    Manifest { format_version: FORMAT_VERSION, family: "f".into(), name: "n".into(), configs: Default::default(), tensors, shards, files: vec![], content_sha256: String::new() }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        check(&m);
    }
    if let Ok(m) = serde_json::from_slice::<Manifest>(data) {
        parse_rehashed(m);
    }
    parse_rehashed(numeric(data));
});
