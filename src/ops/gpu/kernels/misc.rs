//! Lookups and selections (filled in by the misc kernel work).

use super::NodeCx;
use crate::error::OpError;
use crate::ops::gpu::builder::KernelBuilder;

fn pending(cx: &NodeCx, what: &str) -> OpError {
    OpError::Shape { node: cx.node.label.clone(), message: format!("{what} has no GPU kernel yet") }
}

pub fn embedding(_kb: &mut KernelBuilder, cx: &NodeCx) -> Result<(), OpError> {
    Err(pending(cx, "embedding"))
}

pub fn timestep_embedding(_kb: &mut KernelBuilder, cx: &NodeCx, _dim: usize, _flip: bool, _shift: f32, _max_period: f32) -> Result<(), OpError> {
    Err(pending(cx, "timestep_embedding"))
}

pub fn argmax(_kb: &mut KernelBuilder, cx: &NodeCx) -> Result<(), OpError> {
    Err(pending(cx, "argmax"))
}

pub fn top_k(_kb: &mut KernelBuilder, cx: &NodeCx, _k: usize) -> Result<(), OpError> {
    Err(pending(cx, "top_k"))
}

pub fn vq_nearest(_kb: &mut KernelBuilder, cx: &NodeCx) -> Result<(), OpError> {
    Err(pending(cx, "vq_nearest"))
}
