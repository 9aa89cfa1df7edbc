//! Shards straight into GPU buffers: the manifest says which tensor bytes each shard holds;
//! each arriving shard is checked and its parts written to the tensors' buffers, so a
//! model never sits whole in (wasm) memory.

use super::manifest::{sha256_hex, Manifest};
use crate::error::{OpError, WeightsError};
use crate::gpu::GpuContext;
use crate::ops::gpu::GpuWeights;
use crate::ops::{HostWeight, WeightStore};

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
    pub fn add_shard(&mut self, ctx: &GpuContext, index: usize, bytes: &[u8]) -> Result<(), WeightsError> {
        let entry = self.manifest.shards.get(index).ok_or_else(|| WeightsError::Manifest(format!("there is no shard {index}")))?;
        if index != self.next_shard {
            return Err(WeightsError::Shard { file: entry.file.clone(), message: format!("arrived out of order (expected shard {})", self.next_shard) });
        }
        if bytes.len() as u64 != entry.size || sha256_hex(bytes) != entry.sha256 {
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

    /// Adds shard `index` (in order), checking its size and sha256.
    pub fn add_shard(&mut self, index: usize, bytes: &[u8]) -> Result<(), WeightsError> {
        let entry = self.manifest.shards.get(index).ok_or_else(|| WeightsError::Manifest(format!("there is no shard {index}")))?;
        if index != self.next_shard || bytes.len() as u64 != entry.size || sha256_hex(bytes) != entry.sha256 {
            return Err(WeightsError::Shard { file: entry.file.clone(), message: "out of order, or size or sha256 mismatch".into() });
        }
        for (t, buf) in self.manifest.tensors.iter().zip(&mut self.pending) {
            for p in t.parts.iter().filter(|p| p.shard == index) {
                buf.extend_from_slice(&bytes[p.offset as usize..(p.offset + p.length) as usize]);
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
