//! Data movement: permute, slice and concat, all one strided-copy kernel.

use super::elementwise::groups_for;
use super::loaders::Q8_UNPACK;
use super::params::{vec4s, Dequantize, StridedCopy};
use super::split::{fits, limit_err};
use super::Operand;
use super::{splice, strides, NodeCx};
use crate::error::OpError;
use crate::ops::gpu::builder::{Buf, KernelBuilder};
use crate::ops::quant::StorageType;

fn strided_copy(
    kb: &mut KernelBuilder,
    cx: &NodeCx,
    src: Buf,
    shape: &[usize],
    (src_base, src_strides): (usize, &[usize]),
    (dst_base, dst_strides): (usize, &[usize]),
) -> Result<(), OpError> {
    if shape.len() > 6 {
        return Err(OpError::Shape { node: cx.node.label.clone(), message: format!("{} axes (max 6)", shape.len()) });
    }
    let n: usize = shape.iter().product();
    if n == 0 {
        return Ok(());
    }
    if fits(kb, &[&src, &cx.out]) {
        return copy_dispatch(kb, src, cx.out.clone(), shape, (src_base, src_strides), (dst_base, dst_strides));
    }
    // Over the binding limit: chunks of the region's first axis with more than one entry
    // (the axes before it have one), each bound to the aligned windows of src and out it
    // touches, with the bases made relative to those windows.
    let ax = shape.iter().position(|&d| d > 1).unwrap_or(0);
    let (max, align) = (kb.max_elems(), kb.offset_align());
    // Elements a chunk of `k` entries spans in a buffer with these strides (plus the slack
    // of aligning its start down).
    let span = |k: usize, st: &[usize]| (k - 1) * st[ax] + shape.iter().zip(st).enumerate().filter(|(d, _)| *d != ax).map(|(_, (&e, &s))| (e - 1) * s).sum::<usize>() + 1 + align;
    let per = (1..=shape[ax]).rev().find(|&k| span(k, src_strides) <= max && span(k, dst_strides) <= max);
    let Some(per) = per else {
        return Err(limit_err(cx, format!("one entry of axis {ax} of a {shape:?} copy spans more than the binding limit")));
    };
    for i0 in (0..shape[ax]).step_by(per) {
        let k = per.min(shape[ax] - i0);
        let mut sub = shape.to_vec();
        sub[ax] = k;
        let (s0, d0) = (src_base + i0 * src_strides[ax], dst_base + i0 * dst_strides[ax]);
        let (sw, dw) = (s0 / align * align, d0 / align * align);
        let src_win = src.window(sw, (span(k, src_strides) - align + (s0 - sw)).min(src.size as usize / 4 - sw));
        let dst_win = cx.out.window(dw, (span(k, dst_strides) - align + (d0 - dw)).min(cx.out.size as usize / 4 - dw));
        copy_dispatch(kb, src_win, dst_win, &sub, (s0 - sw, src_strides), (d0 - dw, dst_strides))?;
    }
    Ok(())
}

fn copy_dispatch(
    kb: &mut KernelBuilder,
    src: Buf,
    dst: Buf,
    shape: &[usize],
    (src_base, src_strides): (usize, &[usize]),
    (dst_base, dst_strides): (usize, &[usize]),
) -> Result<(), OpError> {
    let n: usize = shape.iter().product();
    let params = StridedCopy {
        n: n as u32,
        ndim: shape.len() as u32,
        src_base: src_base as u32,
        dst_base: dst_base as u32,
        shape: vec4s(shape),
        src_strides: vec4s(src_strides),
        dst_strides: vec4s(dst_strides),
    };
    kb.dispatch("strided_copy", || include_str!("strided_copy.wgsl").into(), vec![src, dst], &params, groups_for(n))
}

/// Input `i` as f32 values: a weight stored f16 or in a block format is first widened into
/// a scratch buffer (its chunks one after another), so that copies can move it.
pub(super) fn f32_source(kb: &mut KernelBuilder, cx: &NodeCx, i: usize) -> Result<Buf, OpError> {
    let Operand::Weight(w, _) = &cx.inputs[i] else { return cx.f32_input(i) };
    if w.storage == StorageType::F32 {
        return cx.f32_input(i);
    }
    let row: usize = w.shape.iter().skip(1).product();
    let out = kb.scratch(w.shape.iter().product::<usize>() as u64 * 4);
    let storage = w.storage;
    for c in &w.chunks {
        let n = c.rows.len() * row;
        let bindings = std::iter::once(&c.values).chain(c.scales.as_ref()).map(Buf::whole).chain([out.window(c.rows.start * row, n)]).collect();
        kb.dispatch(&format!("dequantize_{}", storage.name()), || dequantize_source(storage), bindings, &Dequantize { n: n as u32 }, groups_for(n))?;
    }
    Ok(out)
}

/// Element i of a chunk: f16 pairs, or Q8_0 / Q4_0 quants (32 per block, row-major, so
/// element i is in block i / 32) times their block's f16 scale.
fn dequantize_source(storage: StorageType) -> String {
    let load = match storage {
        StorageType::F16 => "fn value(i: u32) -> f32 { return unpack2x16float(w[i / 2u])[i % 2u]; }".to_string(),
        StorageType::Q8_0 => format!("{Q8_UNPACK}\n{SCALE}\nfn value(i: u32) -> f32 {{ return unpack_q8(w[i / 4u])[i % 4u] * scale(i / 32u); }}"),
        _ => format!("{SCALE}\nfn value(i: u32) -> f32 {{ return (f32((w[i / 8u] >> ((i % 8u) * 4u)) & 15u) - 8.0) * scale(i / 32u); }}"),
    };
    let scales = storage != StorageType::F16;
    let mut bindings = vec!["var<storage, read_write> w: array<u32>;"];
    if scales {
        bindings.push("var<storage, read_write> scales: array<u32>;");
    }
    bindings.extend(["var<storage, read_write> out: array<f32>;", "var<uniform> params: Params;"]);
    let bindings: Vec<String> = bindings.iter().enumerate().map(|(i, b)| format!("@group(0) @binding({i}) {b}")).collect();
    splice(include_str!("dequantize.wgsl"), &[("BINDINGS", &bindings.join("\n")), ("LOAD", &load)])
}

/// A block's f16 scale, two per word.
const SCALE: &str = "fn scale(b: u32) -> f32 { return unpack2x16float(scales[b / 2u])[b % 2u]; }";

pub fn permute(kb: &mut KernelBuilder, cx: &NodeCx, perm: &[usize]) -> Result<(), OpError> {
    let in_strides = strides(&cx.in_shapes[0]);
    let src_strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let out = &cx.node.shape;
    let src = f32_source(kb, cx, 0)?;
    strided_copy(kb, cx, src, out, (0, &src_strides), (0, &strides(out)))
}

pub fn slice(kb: &mut KernelBuilder, cx: &NodeCx, axis: usize, start: usize, _len: usize) -> Result<(), OpError> {
    let in_strides = strides(&cx.in_shapes[0]);
    let out = &cx.node.shape;
    let src = f32_source(kb, cx, 0)?;
    strided_copy(kb, cx, src, out, (start * in_strides[axis], &in_strides), (0, &strides(out)))
}

pub fn concat(kb: &mut KernelBuilder, cx: &NodeCx, axis: usize) -> Result<(), OpError> {
    let out_strides = strides(&cx.node.shape);
    let mut offset = 0;
    for i in 0..cx.inputs.len() {
        let shape = cx.in_shapes[i].clone();
        let src = f32_source(kb, cx, i)?;
        strided_copy(kb, cx, src, &shape, (0, &strides(&shape)), (offset * out_strides[axis], &out_strides))?;
        offset += shape[axis];
    }
    Ok(())
}

/// Every variant of this file's kernels: (key, WGSL).
#[cfg(all(test, not(target_arch = "wasm32")))]
pub fn variants() -> Vec<(String, String)> {
    use super::kernel_source;
    let mut out: Vec<(String, String)> = [StorageType::F16, StorageType::Q8_0, StorageType::Q4_0]
        .into_iter()
        .map(|s| (format!("dequantize_{}", s.name()), kernel_source::<Dequantize>(&dequantize_source(s))))
        .collect();
    out.push(("strided_copy".into(), kernel_source::<StridedCopy>(include_str!("strided_copy.wgsl"))));
    out
}
