//! Elementwise kernels: activations, broadcast arithmetic, GEGLU.

use super::{strides, with_prelude, NodeCx};
use crate::error::OpError;
use crate::ops::gpu::builder::{f, grid, KernelBuilder};
use crate::ops::graph::{BinaryOp, UnaryOp};

const ACTIVATIONS: &str = include_str!("activations.wgsl");

fn source(kernel: &str) -> String {
    with_prelude(&format!("{ACTIVATIONS}\n{kernel}"))
}

/// Workgroups of 256 covering `n` elements.
pub fn groups_for(n: usize) -> [u32; 3] {
    grid((n as u32).div_ceil(256))
}

pub fn unary(kb: &mut KernelBuilder, cx: &NodeCx, op: UnaryOp) -> Result<(), OpError> {
    let n = cx.node.numel();
    let (code, mul, add) = match op {
        UnaryOp::Silu => (0, 1.0, 0.0),
        UnaryOp::Gelu => (1, 1.0, 0.0),
        UnaryOp::GeluTanh => (2, 1.0, 0.0),
        UnaryOp::QuickGelu => (3, 1.0, 0.0),
        UnaryOp::Affine { mul, add } => (4, mul, add),
        UnaryOp::Relu => (5, 1.0, 0.0),
        UnaryOp::Tanh => (6, 1.0, 0.0),
    };
    let bindings = vec![cx.f32_input(0)?, cx.out.clone()];
    kb.dispatch("unary", || source(include_str!("unary.wgsl")), bindings, &[n as u32, code, f(mul), f(add)], groups_for(n))
}

pub fn binary(kb: &mut KernelBuilder, cx: &NodeCx, op: BinaryOp) -> Result<(), OpError> {
    let out_shape = &cx.node.shape;
    let nd = out_shape.len();
    if nd > 6 {
        return Err(OpError::Shape { node: cx.node.label.clone(), message: format!("broadcast over {nd} axes (max 6)") });
    }
    // Strides of each input seen through the output's axes: 0 on broadcast axes.
    let view = |shape: &[usize]| -> Vec<u32> {
        let s = strides(shape);
        let pad = nd - shape.len();
        (0..nd).map(|ax| if ax < pad || shape[ax - pad] == 1 { 0 } else { s[ax - pad] as u32 }).collect()
    };
    let mut params = vec![cx.node.numel() as u32, match op { BinaryOp::Add => 0, BinaryOp::Sub => 1, BinaryOp::Mul => 2 }, nd as u32, 0];
    let mut fixed = |v: Vec<u32>| {
        let mut v = v;
        v.resize(6, 1);
        params.extend(v);
    };
    fixed(out_shape.iter().map(|&d| d as u32).collect());
    fixed(view(&cx.in_shapes[0]));
    fixed(view(&cx.in_shapes[1]));
    let bindings = vec![cx.f32_input(0)?, cx.f32_input(1)?, cx.out.clone()];
    kb.dispatch("binary", || source(include_str!("binary.wgsl")), bindings, &params, groups_for(cx.node.numel()))
}

pub fn geglu(kb: &mut KernelBuilder, cx: &NodeCx) -> Result<(), OpError> {
    let n = cx.node.numel();
    let d = *cx.node.shape.last().unwrap_or(&1);
    let bindings = vec![cx.f32_input(0)?, cx.out.clone()];
    kb.dispatch("geglu", || source(include_str!("geglu.wgsl")), bindings, &[n as u32, d as u32], groups_for(n))
}
