//! Model files: the safetensors reader, Easel's manifest + shard format, and (natively) the
//! converter and the folder loader; `stream` writes arriving shards straight into GPU
//! buffers (the browser's fetch/verify/cache side is `www/loader.js`).

#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod folder;
pub mod manifest;
pub mod safetensors;
pub mod stream;

pub use manifest::{Manifest, ShardWriter, FORMAT_VERSION, MAX_SHARD_BYTES};
