//! Model files: the safetensors reader, Easel's manifest + shard format, the conversion
//! shared by `easel convert` and Hub mode (`rules`, `builder`, `repo`), and natively the
//! converter's file side and the folder loader; `stream` writes arriving shards straight
//! into GPU buffers (the browser's fetch/verify/cache side is `www/loader.js`, `www/hub.js`).

pub mod builder;
#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
pub mod error;
pub mod fit;
#[cfg(not(target_arch = "wasm32"))]
pub mod folder;
pub mod lora;
mod lora_names;
pub mod manifest;
pub mod repo;
pub mod rules;
pub mod safetensors;
pub mod shards;
pub mod stream;

pub use manifest::{Manifest, FORMAT_VERSION, MAX_SHARD_BYTES};
pub use shards::ShardWriter;
