//! Tensors packed into shard files of at most 32 MiB, in order, streaming: a full shard is
//! hashed and handed out at once, so neither converter holds a whole model in memory.

use super::manifest::{sha256_hex, Part, ShardEntry, TensorEntry, MAX_SHARD_BYTES};
use crate::ops::StorageType;

/// A finished shard: its entry and its bytes.
pub type ShardFile = (ShardEntry, Vec<u8>);

/// Packs tensors into shards of at most `shard_bytes`, in the given order; a tensor that
/// does not fit the current shard continues in the next one. A shard is closed (and hashed)
/// as soon as it is full, so a streaming caller can store it and let it go.
pub struct ShardWriter {
    shard_bytes: u64,
    current: Vec<u8>,
    /// Every closed shard's entry, in order.
    closed: Vec<ShardEntry>,
    /// Closed shards whose bytes have not been taken yet.
    ready: Vec<ShardFile>,
    tensors: Vec<TensorEntry>,
    open: Option<TensorEntry>,
}

impl ShardWriter {
    /// A writer cutting shards at `shard_bytes` (clamped to 1..=32 MiB).
    pub fn new(shard_bytes: u64) -> Self {
        Self { shard_bytes: shard_bytes.clamp(1, MAX_SHARD_BYTES), current: Vec::new(), closed: Vec::new(), ready: Vec::new(), tensors: Vec::new(), open: None }
    }

    /// Appends a whole tensor's stored bytes.
    pub fn push(&mut self, name: &str, shape: &[usize], storage: StorageType, bytes: &[u8]) {
        self.begin(name, shape, storage);
        self.append(bytes);
        self.end();
    }

    /// Starts a tensor whose stored bytes follow through `append`.
    pub fn begin(&mut self, name: &str, shape: &[usize], storage: StorageType) {
        assert!(self.open.is_none(), "ShardWriter::begin({name}) while another tensor is open");
        self.open = Some(TensorEntry { name: name.into(), shape: shape.to_vec(), storage, parts: Vec::new() });
    }

    /// Adds stored bytes to the open tensor.
    pub fn append(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let t = self.open.as_mut().expect("ShardWriter::append needs begin first");
            let room = (self.shard_bytes - self.current.len() as u64) as usize;
            let take = bytes.len().min(room);
            let shard = self.closed.len();
            match t.parts.last_mut() {
                Some(p) if p.shard == shard => p.length += take as u64,
                _ => t.parts.push(Part { shard, offset: self.current.len() as u64, length: take as u64 }),
            }
            self.current.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.current.len() as u64 == self.shard_bytes {
                let full = std::mem::take(&mut self.current);
                self.close(full);
            }
        }
    }

    /// Finishes the open tensor (a tensor of no bytes has no parts).
    pub fn end(&mut self) {
        self.tensors.push(self.open.take().expect("ShardWriter::end needs begin first"));
    }

    fn close(&mut self, bytes: Vec<u8>) {
        let entry = ShardEntry { file: format!("shard-{:05}.bin", self.closed.len()), size: bytes.len() as u64, sha256: sha256_hex(&bytes) };
        self.closed.push(entry.clone());
        self.ready.push((entry, bytes));
    }

    /// Full shards not taken yet, in order.
    pub fn take_ready(&mut self) -> Vec<ShardFile> {
        std::mem::take(&mut self.ready)
    }

    /// Finishes: the tensors, every shard's entry (`shard-00000.bin` ...), and the shards
    /// whose bytes were not taken yet (the last one included).
    pub fn finish(mut self) -> (Vec<TensorEntry>, Vec<ShardEntry>, Vec<ShardFile>) {
        assert!(self.open.is_none(), "ShardWriter::finish with a tensor still open");
        if !self.current.is_empty() || self.closed.is_empty() {
            let last = std::mem::take(&mut self.current);
            self.close(last);
        }
        (self.tensors, self.closed, self.ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::manifest::tests::manifest;

    #[test]
    fn streamed_pieces_make_the_same_shards_as_whole_tensors() {
        let (m, shards) = manifest();
        let mut w = ShardWriter::new(40);
        w.begin("a", &[4], StorageType::F32);
        w.append(&[1; 16]);
        w.end();
        w.begin("big", &[16], StorageType::F32);
        w.append(&[2; 30]);
        // The first shard is full: it is ready before the tensor ends.
        let first = w.take_ready();
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].0.size, first[0].1.clone()), (40, shards[0].clone()));
        w.append(&[2; 34]);
        w.end();
        w.begin("empty", &[0], StorageType::F32);
        w.end();
        let (tensors, entries, rest) = w.finish();
        assert_eq!(entries, m.shards);
        assert_eq!(rest.into_iter().map(|s| s.1).collect::<Vec<_>>(), vec![shards[1].clone()]);
        assert_eq!(&tensors[..2], &m.tensors[..]);
        assert!(tensors[2].parts.is_empty(), "a tensor of no bytes points at no shard");
    }
}
