//! ConvNeXt pieces (aMUSEd's UVit2DModel): depthwise convolution, one invocation per output
//! value, and GlobalResponseNorm's scale, one workgroup per batch item; and the DCGAN's
//! transposed convolution, also one invocation per output value.

use super::params::{ConvTranspose2d, DepthwiseConv2d, ResponseNorm};
use super::NodeCx;
use crate::error::OpError;
use crate::ops::gpu::builder::{grid, KernelBuilder};

/// Depthwise conv, stride 1: out[b, c, y, x] = bias[c] + sum over taps of w[c, 0, i, j] *
/// x[b, c, y + i - pad, x + j - pad] (zero outside the image).
pub fn depthwise_conv2d(kb: &mut KernelBuilder, cx: &NodeCx, padding: usize) -> Result<(), OpError> {
    let count = cx.node.numel();
    if count == 0 {
        return Ok(());
    }
    let (xs, ws, os) = (&cx.in_shapes[0], &cx.in_shapes[1], &cx.node.shape);
    let has_bias = cx.inputs.len() > 2;
    let mut bindings = vec![cx.f32_input(0)?, cx.f32_input(1)?];
    // Without a bias a placeholder keeps one layout (never read).
    bindings.push(if has_bias { cx.f32_input(2)? } else { kb.placeholder() });
    bindings.push(cx.out.clone());
    let [count, c, h, w, oh, ow, kh, kw, pad, has_bias] = [count, xs[1], xs[2], xs[3], os[2], os[3], ws[2], ws[3], padding, has_bias as usize].map(|v| v as u32);
    let params = DepthwiseConv2d { count, c, h, w, oh, ow, kh, kw, pad, has_bias };
    kb.dispatch("depthwise_conv2d", || include_str!("depthwise_conv2d.wgsl").into(), bindings, &params, grid(count.div_ceil(256)))
}

/// PyTorch's ConvTranspose2d (the DCGAN generator's layer), one invocation per output value.
/// A weight stored f16 or quantized is widened into scratch first (the model is small).
pub fn conv_transpose2d(kb: &mut KernelBuilder, cx: &NodeCx, stride: usize, padding: usize) -> Result<(), OpError> {
    let count = cx.node.numel();
    if count == 0 {
        return Ok(());
    }
    let (xs, ws, os) = (&cx.in_shapes[0], &cx.in_shapes[1], &cx.node.shape);
    let has_bias = cx.inputs.len() > 2;
    let w = super::copy::f32_source(kb, cx, 1)?;
    // Without a bias a placeholder keeps one layout (never read).
    let bias = if has_bias { super::copy::f32_source(kb, cx, 2)? } else { kb.placeholder() };
    let bindings = vec![cx.f32_input(0)?, w, bias, cx.out.clone()];
    let [count, c, h, w, o, oh, ow, kh, kw, stride, pad, has_bias] =
        [count, xs[1], xs[2], xs[3], os[1], os[2], os[3], ws[2], ws[3], stride, padding, has_bias as usize].map(|v| v as u32);
    let params = ConvTranspose2d { count, c, h, w, o, oh, ow, kh, kw, stride, pad, has_bias };
    kb.dispatch("conv_transpose2d", || include_str!("conv_transpose2d.wgsl").into(), bindings, &params, grid(count.div_ceil(256)))
}

/// nx[b, 0, c] = gx[b, c] / (mean over c of gx[b, c] + eps), gx = L2 norm of x[b, :, c].
pub fn response_norm(kb: &mut KernelBuilder, cx: &NodeCx, eps: f32) -> Result<(), OpError> {
    let s = &cx.in_shapes[0];
    if cx.node.numel() == 0 {
        return Ok(());
    }
    let params = ResponseNorm { n: s[1] as u32, c: s[2] as u32, eps };
    let bindings = vec![cx.f32_input(0)?, cx.out.clone()];
    kb.dispatch("response_norm", || include_str!("response_norm.wgsl").into(), bindings, &params, grid(s[0] as u32))
}
