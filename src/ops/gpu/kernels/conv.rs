//! Convolution and upsampling (filled in by the conv kernel work).

use super::NodeCx;
use crate::error::OpError;
use crate::ops::gpu::builder::KernelBuilder;

fn pending(cx: &NodeCx, what: &str) -> OpError {
    OpError::Shape { node: cx.node.label.clone(), message: format!("{what} has no GPU kernel yet") }
}

pub fn conv2d(_kb: &mut KernelBuilder, cx: &NodeCx, _stride: usize, _padding: [usize; 4]) -> Result<(), OpError> {
    Err(pending(cx, "conv2d"))
}

pub fn upsample2x(_kb: &mut KernelBuilder, cx: &NodeCx) -> Result<(), OpError> {
    Err(pending(cx, "upsample2x"))
}
