//! The manifest parser on arbitrary JSON: it must never panic, and whatever it accepts must
//! keep every tensor inside its shards with the byte length its shape and storage need.

#![no_main]

use easel_fuzz::manifest::{Manifest, MAX_SHARD_BYTES};
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

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        check(&m);
    }
    // Raw bytes rarely carry the right content hash, which stops parsing early; re-hash
    // whatever deserializes so the structural checks behind the hash get fuzzed too.
    if let Ok(mut m) = serde_json::from_slice::<Manifest>(data) {
        m.content_sha256 = m.compute_hash();
        let json = serde_json::to_vec(&m).expect("serializable");
        if let Ok(parsed) = Manifest::parse(&json) {
            check(&parsed);
            assert_eq!((&parsed.tensors, &parsed.shards), (&m.tensors, &m.shards));
        }
    }
});
