//! Normalizations and softmax (filled in by the norm kernel work).

use super::NodeCx;
use crate::error::OpError;
use crate::ops::gpu::builder::KernelBuilder;

fn pending(cx: &NodeCx, what: &str) -> OpError {
    OpError::Shape { node: cx.node.label.clone(), message: format!("{what} has no GPU kernel yet") }
}

pub fn group_norm(_kb: &mut KernelBuilder, cx: &NodeCx, _groups: usize, _eps: f32, _silu: bool) -> Result<(), OpError> {
    Err(pending(cx, "group_norm"))
}

pub fn layer_norm(_kb: &mut KernelBuilder, cx: &NodeCx, _eps: f32) -> Result<(), OpError> {
    Err(pending(cx, "layer_norm"))
}

pub fn rms_norm(_kb: &mut KernelBuilder, cx: &NodeCx, _eps: f32) -> Result<(), OpError> {
    Err(pending(cx, "rms_norm"))
}

pub fn softmax(_kb: &mut KernelBuilder, cx: &NodeCx) -> Result<(), OpError> {
    Err(pending(cx, "softmax"))
}
