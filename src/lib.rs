//! Easel: image generation in the browser on WebGPU, with a native build for conversion,
//! tests and benchmarks. See ARCHITECTURE.md for the one-page picture.

pub mod error;
pub mod gpu;
pub mod models;
pub mod ops;
pub mod pipelines;
pub mod platform;
pub mod rng;
pub mod schedulers;
pub mod text;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod api;

pub mod bench;

pub use error::{CpuError, GpuError, OpError, WeightsError};

/// The crate version, shown in the page and the CLI.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
