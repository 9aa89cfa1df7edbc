//! Multi-head attention (filled in by the attention kernel work).

use super::NodeCx;
use crate::error::OpError;
use crate::ops::gpu::builder::KernelBuilder;

pub fn attention(_kb: &mut KernelBuilder, cx: &NodeCx, _heads: usize, _scale: f32, _causal: bool) -> Result<(), OpError> {
    Err(OpError::Shape { node: cx.node.label.clone(), message: "attention has no GPU kernel yet".into() })
}
