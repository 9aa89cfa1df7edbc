//! The op vocabulary the models are written against (`graph`), the weights it reads
//! (`weights`, `quant`), and two backends: `cpu` (candle: the reference and the fallback)
//! and `gpu` (wgpu + one WGSL file per kernel).

pub mod backend;
pub mod check;
pub mod cpu;
pub mod gpu;
pub mod graph;
mod graph_bands;
mod graph_conv_transpose;
mod graph_convnext;
mod graph_layout;
mod graph_params;
mod graph_wide;
pub mod quant;
pub mod weights;

pub use backend::{choose_backend, BackendChoice, BackendKind, BackendPreference};
pub use graph::{BinaryOp, DType, Graph, Node, Op, TensorId, UnaryOp, WeightShapes};
pub use quant::StorageType;
pub use weights::{HostWeight, WeightStore};
