//! Elementwise kernels: activations, broadcast arithmetic, GEGLU.

use super::params::{vec4s, Binary, Geglu, Unary};
use super::split::{fits, flat_spans, limit_err, row_spans, whole};
use super::{strides, NodeCx};
use crate::error::OpError;
use crate::ops::gpu::builder::{grid, Buf, KernelBuilder};
use crate::ops::graph::{BinaryOp, UnaryOp};

const ACTIVATIONS: &str = include_str!("activations.wgsl");

fn source(kernel: &str) -> String {
    format!("{ACTIVATIONS}\n{kernel}")
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
    let x = cx.f32_input(0)?;
    // Over the binding limit: the same kernel on windows of x and out.
    let spans = if fits(kb, &[&x, &cx.out]) { whole(n) } else { flat_spans(kb, cx, n)? };
    for s in spans {
        let bindings = vec![x.window(s.start, s.len()), cx.out.window(s.start, s.len())];
        let params = Unary { n: s.len() as u32, op: code, mul, add };
        kb.dispatch("unary", || source(include_str!("unary.wgsl")), bindings, &params, groups_for(s.len()))?;
    }
    Ok(())
}

pub fn binary(kb: &mut KernelBuilder, cx: &NodeCx, op: BinaryOp) -> Result<(), OpError> {
    let out_shape = &cx.node.shape;
    let nd = out_shape.len();
    if nd > 6 {
        return Err(OpError::Shape { node: cx.node.label.clone(), message: format!("broadcast over {nd} axes (max 6)") });
    }
    // Strides of each input seen through the output's axes: 0 on broadcast axes.
    let view = |shape: &[usize]| -> Vec<usize> {
        let s = strides(shape);
        let pad = nd - shape.len();
        (0..nd).map(|ax| if ax < pad || shape[ax - pad] == 1 { 0 } else { s[ax - pad] }).collect()
    };
    let n = cx.node.numel();
    let op = match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
    };
    let params = Binary {
        n: n as u32,
        op,
        ndim: nd as u32,
        shape: vec4s(out_shape),
        a_strides: vec4s(&view(&cx.in_shapes[0])),
        b_strides: vec4s(&view(&cx.in_shapes[1])),
        ..Default::default()
    };
    let (a, b) = (cx.f32_input(0)?, cx.f32_input(1)?);
    if fits(kb, &[&a, &b, &cx.out]) {
        let bindings = vec![a, b, cx.out.clone()];
        return kb.dispatch("binary", || source(include_str!("binary.wgsl")), bindings, &params, groups_for(n));
    }
    // Windows of the output's flat range; an input too big to bind whole must have the
    // output's shape, so that its window is the same range.
    let spans = flat_spans(kb, cx, n)?;
    let big = |buf: &Buf, i: usize| -> Result<bool, OpError> {
        let big = buf.size > kb.max_binding;
        if big && cx.in_shapes[i] != *out_shape {
            return Err(limit_err(cx, format!("input {i} {:?} is broadcast to {out_shape:?} and too big to bind whole", cx.in_shapes[i])));
        }
        Ok(big)
    };
    let (a_big, b_big) = (big(&a, 0)?, big(&b, 1)?);
    for s in spans {
        let (start, len) = (s.start, s.len());
        let p = Binary { n: len as u32, first: start as u32, a_first: if a_big { start as u32 } else { 0 }, b_first: if b_big { start as u32 } else { 0 }, ..params };
        let a = if a_big { a.window(start, len) } else { a.clone() };
        let b = if b_big { b.window(start, len) } else { b.clone() };
        let bindings = vec![a, b, cx.out.window(start, len)];
        kb.dispatch("binary", || source(include_str!("binary.wgsl")), bindings, &p, groups_for(len))?;
    }
    Ok(())
}

pub fn geglu(kb: &mut KernelBuilder, cx: &NodeCx) -> Result<(), OpError> {
    let n = cx.node.numel();
    let d = *cx.node.shape.last().unwrap_or(&1);
    let x = cx.f32_input(0)?;
    let windows = if fits(kb, &[&x, &cx.out]) { whole(n / d.max(1)) } else { row_spans(kb, cx, n / d, &[2 * d, d])? };
    for w in windows {
        let bindings = vec![x.window(w.start * 2 * d, w.len() * 2 * d), cx.out.window(w.start * d, w.len() * d)];
        let params = Geglu { n: (w.len() * d) as u32, d: d as u32 };
        kb.dispatch("geglu", || source(include_str!("geglu.wgsl")), bindings, &params, groups_for(w.len() * d))?;
    }
    Ok(())
}

/// Every kernel of this file: (key, WGSL).
#[cfg(all(test, not(target_arch = "wasm32")))]
pub fn variants() -> Vec<(String, String)> {
    use super::kernel_source;
    vec![
        ("unary".into(), kernel_source::<Unary>(&source(include_str!("unary.wgsl")))),
        ("binary".into(), kernel_source::<Binary>(&source(include_str!("binary.wgsl")))),
        ("geglu".into(), kernel_source::<Geglu>(&source(include_str!("geglu.wgsl")))),
    ]
}
