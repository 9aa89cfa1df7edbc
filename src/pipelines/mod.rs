//! Pipelines glue models and schedulers: `sd` holds a Stable Diffusion model on a backend,
//! `generate` runs txt2img / img2img / inpainting the way diffusers does; `vqgan` holds a
//! VQ autoencoder (encode to codes, decode codes).

pub mod amused;
pub mod amused_pipeline;
pub mod animation;
pub mod dcgan;
pub mod ddpm;
pub mod family;
pub mod generate;
pub mod gif;
pub mod image;
pub mod latents;
pub mod limits;
pub mod masking;
pub mod metadata;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod request;
pub mod sd;
pub mod sd_text;
pub mod styles;
pub mod vqgan;

pub use family::{Defaults, Generator};
pub use generate::{generate, Output, Preview, Progress};
pub use image::Rgba;
pub use limits::MemoryBudget;
pub use metadata::{encode_pngs, EncodedPng, ImageInfo};
pub use request::{FloatImage, LoraUse, Request};
pub use sd::StableDiffusion;
pub use vqgan::VqGan;

use thiserror::Error;

/// Why a generation failed.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// The model's files or configs cannot be used.
    #[error("model: {0}")]
    Model(String),
    /// The request asks for something impossible.
    #[error("request: {0}")]
    Request(String),
    /// The request's activations would not fit the backend (names the largest size that does).
    #[error("too large: {0}")]
    TooLarge(String),
    /// The model produced NaN or infinite values (the image would be black or garbage).
    #[error("invalid output: {0}")]
    NotFinite(String),
    /// An op failed on the backend (names the node).
    #[error(transparent)]
    Op(#[from] crate::OpError),
    /// The scheduler config cannot be used.
    #[error(transparent)]
    Scheduler(#[from] crate::schedulers::SchedulerError),
    /// The caller cancelled between steps.
    #[error("cancelled")]
    Cancelled,
}
