//! Nearest-neighbour upsampling (the UNet's and the VAE's upsamplers, before their conv).

use super::elementwise::groups_for;
use super::params::UpsampleNearest;
use super::split::{fits, gcd, limit_err, spans, whole};
use super::NodeCx;
use crate::error::OpError;
use crate::ops::gpu::builder::KernelBuilder;

/// Nearest-neighbour upsampling of [B, C, H, W] to the node's [B, C, OH, OW].
pub fn upsample_nearest(kb: &mut KernelBuilder, cx: &NodeCx) -> Result<(), OpError> {
    let (h, w) = (cx.in_shapes[0][2], cx.in_shapes[0][3]);
    let (oh, ow) = (cx.node.shape[2], cx.node.shape[3]);
    let planes = cx.node.numel() / (oh * ow).max(1);
    let x = cx.f32_input(0)?;
    // Above the binding limit: windows of whole planes, aligned in both x and out.
    let windows = if fits(kb, &[&x, &cx.out]) {
        whole(planes)
    } else {
        let (max, align) = (kb.max_elems(), kb.offset_align());
        // Whole units of input planes, so that x's windows are aligned too.
        let step = align / gcd(h * w, align);
        spans(planes, oh * ow, 0, max, align, step).map_err(|m| limit_err(cx, m))?
    };
    for p in windows {
        let n = p.len() * oh * ow;
        let bindings = vec![x.window(p.start * h * w, p.len() * h * w), cx.out.window(p.start * oh * ow, n)];
        let params = UpsampleNearest { n: n as u32, h: h as u32, w: w as u32, oh: oh as u32, ow: ow as u32 };
        kb.dispatch("upsample_nearest", || include_str!("upsample_nearest.wgsl").into(), bindings, &params, groups_for(n))?;
    }
    Ok(())
}

/// The kernel: (key, WGSL).
#[cfg(all(test, not(target_arch = "wasm32")))]
pub fn variants() -> Vec<(String, String)> {
    vec![("upsample_nearest".into(), super::kernel_source::<UpsampleNearest>(include_str!("upsample_nearest.wgsl")))]
}
