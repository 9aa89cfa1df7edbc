//! GPU backend: a graph compiled once into a list of compute dispatches over buffers
//! allocated by liveness, replayed with new inputs in one submit per run.
//!
//! - `weights`: uploads a `WeightStore` (block formats stay quantized; tensors larger than
//!   the binding limit are split along their first axis).
//! - `arena`: activation buffers shared between tensors whose lifetimes do not overlap.
//! - `builder`: pipeline cache, the shared parameter buffer, dispatch recording.
//! - `program`: compile / set_input / run / read.
//! - `kernels/`: one Rust file per op family and one WGSL file per kernel.

mod arena;
mod builder;
mod kernels;
mod program;
mod weights;

pub use builder::PipelineCache;
pub use kernels::TILE_HEIGHTS;
pub use program::GpuProgram;
pub use weights::{GpuWeight, GpuWeights, WeightChunk};
