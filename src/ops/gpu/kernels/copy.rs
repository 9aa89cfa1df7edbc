//! Data movement: permute, slice and concat, all one strided-copy kernel.

use super::elementwise::groups_for;
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
    let mut params = vec![n as u32, shape.len() as u32, src_base as u32, dst_base as u32];
    for v in [shape, src_strides, dst_strides] {
        let mut w: Vec<u32> = v.iter().map(|&x| x as u32).collect();
        w.resize(6, 0);
        params.extend(w);
    }
    kb.dispatch("strided_copy", || with_prelude(include_str!("strided_copy.wgsl")), vec![src, cx.out.clone()], &params, groups_for(n))
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
