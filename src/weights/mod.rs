//! Model files: the safetensors reader, Easel's manifest + shard format, and (natively) the
//! converter and the folder loader. The browser loader (fetch, verify, Cache Storage) is
//! planned on top of the same manifest.

#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
#[cfg(not(target_arch = "wasm32"))]
pub mod folder;
pub mod manifest;
pub mod safetensors;

pub use manifest::{Manifest, ShardWriter, FORMAT_VERSION, MAX_SHARD_BYTES};
