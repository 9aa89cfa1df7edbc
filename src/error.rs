//! Errors that reach the user. Each message says what went wrong and what to do about it.

use thiserror::Error;

/// Everything the GPU layer can fail with.
#[derive(Debug, Error)]
pub enum GpuError {
    /// The browser has no `navigator.gpu` at all.
    #[error(
        "WebGPU is not available in this browser (navigator.gpu is missing). Use a current \
         Chrome or Edge (113+), Safari 26+, or Firefox 141+ on Windows; on Linux start Chrome \
         with --enable-unsafe-webgpu. Easel will run on its slower CPU backend meanwhile."
    )]
    NoWebGpu,
    /// The API exists but no adapter was handed out (blocklisted driver, disabled GPU).
    #[error(
        "No WebGPU adapter was found ({detail}). Check that hardware acceleration is on \
         (chrome://settings/system) and see chrome://gpu for why WebGPU is disabled; on Linux \
         start Chrome with --enable-unsafe-webgpu --enable-features=Vulkan. Easel will run on \
         its slower CPU backend meanwhile."
    )]
    NoWebAdapter { detail: String },
    /// Native: no Vulkan device at all.
    #[error(
        "No Vulkan adapter was found ({detail}). Install a Vulkan driver (on Debian/Ubuntu: \
         apt-get install mesa-vulkan-drivers for the software one) or run with --backend cpu."
    )]
    NoNativeAdapter { detail: String },
    /// The adapter refused a device with its own advertised limits and features.
    #[error("The GPU adapter '{adapter}' refused to create a device: {detail}")]
    DeviceRequest { adapter: String, detail: String },
    /// A shader failed to compile or a dispatch failed validation.
    #[error("GPU validation failed in {stage}: {detail}")]
    Validation { stage: &'static str, detail: String },
    /// The device stopped working (driver reset, GPU removed, `destroy`): every buffer on
    /// it is gone, so the engine must open a new device and upload the model again.
    #[error("the GPU device was lost ({0}); the engine has to reopen the GPU and reload the model")]
    DeviceLost(String),
    /// Reading a result back from the GPU failed.
    #[error("Reading results back from the GPU failed: {0}")]
    Readback(String),
    /// A computation disagreed with its CPU reference.
    #[error("GPU self-test failed: {0}")]
    SelfTest(String),
}

/// Errors of the CPU backend (candle).
#[derive(Debug, Error)]
pub enum CpuError {
    /// candle reported an error; its message names the op and the shapes.
    #[error("CPU backend: {0}")]
    Candle(#[from] candle_core::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_webgpu_says_which_browser_and_flag() {
        let msg = GpuError::NoWebGpu.to_string();
        assert!(msg.contains("Chrome") && msg.contains("--enable-unsafe-webgpu") && msg.contains("CPU backend"), "{msg}");
        let msg = GpuError::NoNativeAdapter { detail: "none".into() }.to_string();
        assert!(msg.contains("mesa-vulkan-drivers") && msg.contains("--backend cpu"), "{msg}");
    }
}

/// Errors of graph building and execution, on either backend.
#[derive(Debug, Error)]
pub enum OpError {
    /// Shapes that do not fit; `node` is the checkpoint-style path of the op.
    #[error("{node}: {message}")]
    Shape { node: String, message: String },
    /// The model asked for a weight the checkpoint does not have.
    #[error("weight '{name}' is missing from the model")]
    MissingWeight { name: String },
    /// A weight exists but is unusable as stored.
    #[error("weight '{name}': {message}")]
    BadWeight { name: String, message: String },
    /// A run-time input was not supplied or has the wrong length.
    #[error("input '{name}': {message}")]
    Input { name: String, message: String },
    /// The CPU backend failed.
    #[error(transparent)]
    Cpu(#[from] CpuError),
    /// The GPU backend failed.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// The GPU cannot hold a tensor within its limits.
    #[error("{node}: {message}")]
    Limits { node: String, message: String },
    /// A model config value this build cannot use.
    #[error("{component} config: {message}")]
    Config { component: String, message: String },
}

impl From<candle_core::Error> for OpError {
    fn from(e: candle_core::Error) -> Self {
        OpError::Cpu(CpuError::Candle(e))
    }
}

/// Model-file errors live with the weights code, which also builds without the engine
/// (the fuzz targets compile the parsers alone).
pub use crate::weights::error::WeightsError;
