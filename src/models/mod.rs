//! The models, each written once against the op vocabulary (`ops::Graph`) so the CPU and
//! GPU backends run the same computation: CLIP text encoders, the SD UNet, the VAE, the TAESD preview decoder,
//! the VQ autoencoders (diffusers and taming VQModel, on the VAE's encoder/decoder).
//! `session` holds a model's weights on a backend and runs its compiled graphs.

pub mod blocks;
pub mod clip;
pub mod config;
pub mod dcgan;
pub mod layers;
pub mod lora_stack;
pub mod random;
pub mod schema;
pub mod session;
pub mod taesd;
pub mod taming;
pub mod unet;
pub mod uvit;
pub mod vae;
pub mod vae_bands;
pub mod vqgan;
pub mod yaml;

pub use lora_stack::LoraStack;
pub use session::{Backend, Compiled, Session, ShapeMap};
