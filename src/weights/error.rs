//! Errors of model files: reading, converting, verifying, loading. Kept free of engine
//! types so the parsers build on their own (see `fuzz/`).

use thiserror::Error;

/// Errors of model files: reading, converting, verifying, loading.
#[derive(Debug, Error)]
pub enum WeightsError {
    /// A safetensors file whose header is malformed or lies.
    #[error("{file}: {message}")]
    Safetensors { file: String, message: String },
    /// A manifest that cannot be used.
    #[error("manifest: {0}")]
    Manifest(String),
    /// A shard whose bytes do not match the manifest.
    #[error("shard {file}: {message}")]
    Shard { file: String, message: String },
    /// The converter cannot handle this source.
    #[error("cannot convert {source_path}: {message}")]
    Convert { source_path: String, message: String },
    /// File system or network failure.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}
