//! The engine's model-file parsers, compiled from their own source files with the module
//! layout they expect (`super::error`, `crate::ops::StorageType`) and nothing else. Sharing
//! the files (rather than copying them) means the fuzzers always test the real parsers; if a
//! parser starts to need an engine type, this crate stops building and the `fuzz` suite says so.

#[path = "../../src/weights/error.rs"]
pub mod error;
#[path = "../../src/weights/manifest.rs"]
pub mod manifest;
#[path = "../../src/weights/safetensors.rs"]
pub mod safetensors;

#[path = "../../src/ops/quant.rs"]
pub mod quant;
// quant.rs dequantizes on the CPU backend's threads (std only).
#[path = "../../src/ops/cpu/threads.rs"]
pub mod threads;
// threads.rs times its loops for a profile (std only natively).
#[path = "../../src/platform.rs"]
pub mod platform;

pub mod ops {
    pub use crate::quant;
    pub use crate::quant::StorageType;
    pub mod cpu {
        pub use crate::threads;
    }
}
