//! Data movement: permute, slice and concat, all one strided-copy kernel.

use super::elementwise::groups_for;
use super::split::{fits, limit_err};
use super::{strides, with_prelude, NodeCx};
use crate::error::OpError;
use crate::ops::gpu::builder::{Buf, KernelBuilder};

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
    let mut params = vec![n as u32, shape.len() as u32, src_base as u32, dst_base as u32];
    for v in [shape, src_strides, dst_strides] {
        let mut w: Vec<u32> = v.iter().map(|&x| x as u32).collect();
        w.resize(6, 0);
        params.extend(w);
    }
    kb.dispatch("strided_copy", || with_prelude(include_str!("strided_copy.wgsl")), vec![src, dst], &params, groups_for(n))
}

pub fn permute(kb: &mut KernelBuilder, cx: &NodeCx, perm: &[usize]) -> Result<(), OpError> {
    let in_strides = strides(&cx.in_shapes[0]);
    let src_strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let out = &cx.node.shape;
    strided_copy(kb, cx, cx.f32_input(0)?, out, (0, &src_strides), (0, &strides(out)))
}

pub fn slice(kb: &mut KernelBuilder, cx: &NodeCx, axis: usize, start: usize, _len: usize) -> Result<(), OpError> {
    let in_strides = strides(&cx.in_shapes[0]);
    let out = &cx.node.shape;
    strided_copy(kb, cx, cx.f32_input(0)?, out, (start * in_strides[axis], &in_strides), (0, &strides(out)))
}

pub fn concat(kb: &mut KernelBuilder, cx: &NodeCx, axis: usize) -> Result<(), OpError> {
    let out_strides = strides(&cx.node.shape);
    let mut offset = 0;
    for i in 0..cx.inputs.len() {
        let shape = cx.in_shapes[i].clone();
        strided_copy(kb, cx, cx.f32_input(i)?, &shape, (0, &strides(&shape)), (offset * out_strides[axis], &out_strides))?;
        offset += shape[axis];
    }
    Ok(())
}
