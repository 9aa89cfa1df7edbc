//! Shards straight into GPU buffers: the manifest says which tensor bytes each shard holds;
//! each arriving shard is checked and its parts written to the tensors' buffers, so a
//! model never sits whole in (wasm) memory.

use super::manifest::{sha256_hex, Manifest, ShardEntry};
use crate::error::{OpError, WeightsError};
use crate::gpu::GpuContext;
use crate::ops::gpu::GpuWeights;
use crate::ops::{HostWeight, WeightStore};

/// What a stream checks of an arriving shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Size and sha256 against the manifest.
    Sha256,
    /// Size only: the caller has checked the bytes itself (the page's loader does, off the
    /// engine's thread: the sha256 on download, a checksum on every later load), so hashing
    /// again here would only add time.
    SizeOnly,
}

impl Check {
    fn passes(self, entry: &ShardEntry, bytes: &[u8]) -> bool {
        bytes.len() as u64 == entry.size && (self == Check::SizeOnly || sha256_hex(bytes) == entry.sha256)
    }
}

/// A shard's bytes as the engine receives them: a slice of its own memory, or in the page a
/// JS array (`api`), which each tensor's part is copied out of once, straight into place.
pub trait ShardBytes {
    fn byte_len(&self) -> usize;
    /// Appends bytes `start..end` to `out`.
    fn append(&self, start: usize, end: usize, out: &mut Vec<u8>);
}

impl ShardBytes for [u8] {
    fn byte_len(&self) -> usize {
        self.len()
    }

    fn append(&self, start: usize, end: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&self[start..end]);
    }
}

/// A model being loaded onto the GPU.
pub struct ModelStream {
    pub manifest: Manifest,
    pub weights: GpuWeights,
    next_shard: usize,
}

fn op(e: OpError) -> WeightsError {
    WeightsError::Manifest(e.to_string())
}

impl ModelStream {
    /// Allocates the GPU buffers of every tensor in `manifest`.
    pub fn begin(ctx: &GpuContext, manifest: Manifest) -> Result<Self, WeightsError> {
        let specs: Vec<_> = manifest.tensors.iter().map(|t| (t.name.clone(), t.shape.clone(), t.storage)).collect();
        let limit = ctx.device.limits().max_storage_buffer_binding_size;
        let weights = GpuWeights::allocate(ctx, &specs, limit).map_err(op)?;
        Ok(Self { manifest, weights, next_shard: 0 })
    }

    /// Writes shard `index` (shards must come in order: tensors span consecutive shards).
    pub fn add_shard(&mut self, ctx: &GpuContext, index: usize, bytes: &[u8], check: Check) -> Result<(), WeightsError> {
        let entry = self.manifest.shards.get(index).ok_or_else(|| WeightsError::Manifest(format!("there is no shard {index}")))?;
        if index != self.next_shard {
            return Err(WeightsError::Shard { file: entry.file.clone(), message: format!("arrived out of order (expected shard {})", self.next_shard) });
        }
        if !check.passes(entry, bytes) {
            return Err(WeightsError::Shard { file: entry.file.clone(), message: "size or sha256 mismatch: the shard is corrupt".into() });
        }
        for t in &self.manifest.tensors {
            for p in t.parts.iter().filter(|p| p.shard == index) {
                self.weights.write(ctx, &t.name, &bytes[p.offset as usize..(p.offset + p.length) as usize]).map_err(op)?;
            }
        }
        self.next_shard += 1;
        Ok(())
    }

    /// Checks every tensor is complete and hands over the weights.
    pub fn finish(self) -> Result<(Manifest, GpuWeights), WeightsError> {
        if self.next_shard != self.manifest.shards.len() {
            return Err(WeightsError::Manifest(format!("{} of {} shards arrived", self.next_shard, self.manifest.shards.len())));
        }
        self.weights.check_complete().map_err(op)?;
        Ok((self.manifest, self.weights))
    }
}

/// The CPU backend's counterpart: shards assembled into a host `WeightStore`.
pub struct HostModelStream {
    pub manifest: Manifest,
    pending: Vec<Vec<u8>>,
    next_shard: usize,
}

impl HostModelStream {
    /// Starts collecting the tensors of `manifest`.
    pub fn begin(manifest: Manifest) -> Self {
        let pending = manifest.tensors.iter().map(|t| Vec::with_capacity(t.byte_len() as usize)).collect();
        Self { manifest, pending, next_shard: 0 }
    }

    /// Adds shard `index` (in order), checking its size and, unless told it was checked, its sha256.
    pub fn add_shard(&mut self, index: usize, bytes: &[u8], check: Check) -> Result<(), WeightsError> {
        self.add_from(index, bytes, |entry| check.passes(entry, bytes))
    }

    /// Adds shard `index` (in order) whose sha256 the caller has checked, copying each
    /// tensor's part out of `bytes` straight into place: from a JS array in the page, one
    /// copy instead of two (into wasm memory, then into the tensor).
    pub fn add_verified_shard<B: ShardBytes + ?Sized>(&mut self, index: usize, bytes: &B) -> Result<(), WeightsError> {
        self.add_from(index, bytes, |entry| bytes.byte_len() as u64 == entry.size)
    }

    fn add_from<B: ShardBytes + ?Sized>(&mut self, index: usize, bytes: &B, passes: impl FnOnce(&ShardEntry) -> bool) -> Result<(), WeightsError> {
        let entry = self.manifest.shards.get(index).ok_or_else(|| WeightsError::Manifest(format!("there is no shard {index}")))?;
        if index != self.next_shard || !passes(entry) {
            return Err(WeightsError::Shard { file: entry.file.clone(), message: "out of order, or size or sha256 mismatch".into() });
        }
        for (t, buf) in self.manifest.tensors.iter().zip(&mut self.pending) {
            for p in t.parts.iter().filter(|p| p.shard == index) {
                bytes.append(p.offset as usize, (p.offset + p.length) as usize, buf);
            }
        }
        self.next_shard += 1;
        Ok(())
    }

    /// The finished store.
    pub fn finish(self) -> Result<(Manifest, WeightStore), WeightsError> {
        let mut store = WeightStore::new();
        for (t, bytes) in self.manifest.tensors.iter().zip(self.pending) {
            store.insert_raw(&t.name, HostWeight { shape: t.shape.clone(), storage: t.storage, bytes }).map_err(op)?;
        }
        Ok((self.manifest, store))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::manifest::tests::manifest;

    fn load(shards: &[Vec<u8>], check: Check) -> Result<WeightStore, WeightsError> {
        let (m, _) = manifest();
        let mut s = HostModelStream::begin(m);
        for (i, bytes) in shards.iter().enumerate() {
            s.add_shard(i, bytes, check)?;
        }
        Ok(s.finish()?.1)
    }

    #[test]
    fn a_shard_is_checked_by_sha256_unless_the_caller_checked_it() {
        let (_, shards) = manifest();
        let big = |store: WeightStore| store.get("big").unwrap().bytes.clone();
        assert_eq!(big(load(&shards, Check::Sha256).unwrap()), [vec![2; 24], shards[1].clone()].concat());
        // One byte changed, the size kept: only the sha256 tells.
        let mut damaged = shards.clone();
        damaged[1][5] ^= 1;
        let e = load(&damaged, Check::Sha256).unwrap_err().to_string();
        assert!(e.contains("shard-00001.bin") && e.contains("sha256"), "{e}");
        // The caller vouches for the sha256: the bytes are taken as they are.
        assert_eq!(big(load(&damaged, Check::SizeOnly).unwrap())[24 + 5], 2 ^ 1);
        // The caller's own copy path gives the same bytes.
        let (m, _) = manifest();
        let mut s = HostModelStream::begin(m);
        for (i, bytes) in damaged.iter().enumerate() {
            s.add_verified_shard(i, bytes.as_slice()).unwrap();
        }
        assert_eq!(big(s.finish().unwrap().1), big(load(&damaged, Check::SizeOnly).unwrap()));
        // A wrong size is refused either way.
        let mut short = shards.clone();
        short[1].pop();
        for check in [Check::Sha256, Check::SizeOnly] {
            let e = load(&short, check).unwrap_err().to_string();
            assert!(e.contains("shard-00001.bin"), "{check:?}: {e}");
        }
        let (m, _) = manifest();
        let mut s = HostModelStream::begin(m);
        s.add_verified_shard(0, shards[0].as_slice()).unwrap();
        let e = s.add_verified_shard(1, short[1].as_slice()).unwrap_err().to_string();
        assert!(e.contains("shard-00001.bin"), "{e}");
    }
}
