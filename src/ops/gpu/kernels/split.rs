//! Activations above the binding limit: a node whose tensors do not fit one binding is
//! recorded as several dispatches of the same kernel, each bound to a window of the big
//! buffers (arena buffers may be as large as maxBufferSize; only bindings are capped).
//! Window offsets must be multiples of minStorageBufferOffsetAlignment, so windows start on
//! whole units of items whose size keeps that alignment.

use std::ops::Range;

use super::NodeCx;
use crate::error::OpError;
use crate::ops::gpu::builder::{Buf, KernelBuilder};

/// Greatest common divisor (alignment units).
pub fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Splits `count` items of `item` f32 elements each, laid out from element `base` of a
/// buffer, into ranges of at most `max_elems` elements whose first element is a multiple
/// of `align`; every range starts on a multiple of `step` items as well.
pub fn spans(count: usize, item: usize, base: usize, max_elems: usize, align: usize, step: usize) -> Result<Vec<Range<usize>>, String> {
    if !base.is_multiple_of(align) {
        return Err(format!("a tensor at element {base} is not aligned to {align} elements"));
    }
    let item = item.max(1);
    let for_align = align / gcd(item, align);
    let unit = for_align / gcd(for_align, step) * step;
    let per = (max_elems / item) / unit * unit;
    if per == 0 {
        return Err(format!("{unit} items of {item} values are the smallest aligned window, over the {max_elems}-value binding limit"));
    }
    Ok((0..count).step_by(per).map(|s| s..(s + per).min(count)).collect())
}

/// The single window of an op whose bindings fit: all `n` items.
pub fn whole(n: usize) -> Vec<Range<usize>> {
    std::iter::once(0..n).collect()
}

/// Whether every binding of a node (inputs that are activations, and its output) fits.
pub fn fits(kb: &KernelBuilder, bufs: &[&Buf]) -> bool {
    bufs.iter().all(|b| b.size <= kb.max_binding)
}

/// A planner failure as the node's limit error.
pub fn limit_err(cx: &NodeCx, message: String) -> OpError {
    OpError::Limits { node: cx.node.label.clone(), message: format!("activations above the binding limit: {message}") }
}

/// Windows over the flat element range `0..n` of the given buffers (same index space):
/// for element-wise ops.
pub fn flat_spans(kb: &KernelBuilder, cx: &NodeCx, n: usize) -> Result<Vec<Range<usize>>, OpError> {
    spans(n, 1, 0, kb.max_elems(), kb.offset_align(), 1).map_err(|m| limit_err(cx, m))
}

/// Windows of whole rows for buffers that hold `widths[i]` elements per row (a linear
/// layer's x and out, GEGLU's in and out): each window's start aligned in every buffer.
pub fn row_spans(kb: &KernelBuilder, cx: &NodeCx, rows: usize, widths: &[usize]) -> Result<Vec<Range<usize>>, OpError> {
    let align = kb.offset_align();
    let unit = widths.iter().map(|&w| align / gcd(w, align)).fold(1, |u, a| u / gcd(u, a) * a);
    let widest = widths.iter().copied().max().unwrap_or(1);
    let per = (kb.max_elems() / widest.max(1)) / unit * unit;
    if per == 0 {
        return Err(limit_err(cx, format!("{unit} rows of {widest} values are the smallest aligned window, over the binding limit")));
    }
    Ok((0..rows).step_by(per).map(|s| s..(s + per).min(rows)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_respect_size_alignment_and_step() {
        // 10 planes of 100 values, binding of 450 values, 64-value alignment: 16 planes
        // would be the unit (1600 = 25 * 64), over the limit.
        assert!(spans(10, 100, 0, 450, 64, 1).is_err());
        // Planes of 96 values: 2 planes (192 = 3 * 64) per unit, 4 planes fit 450.
        let s = spans(10, 96, 0, 450, 64, 1).unwrap();
        assert_eq!(s, vec![0..4, 4..8, 8..10]);
        // Input channels of a quantized 3x3 conv step by 32.
        let s = spans(96, 64, 0, 64 * 40, 64, 32).unwrap();
        assert_eq!(s, vec![0..32, 32..64, 64..96]);
        // Flat elements: ranges of whole alignment units.
        let s = spans(1000, 1, 0, 300, 64, 1).unwrap();
        assert_eq!(s, vec![0..256, 256..512, 512..768, 768..1000]);
        assert!(spans(10, 64, 32, 640, 64, 1).is_err(), "misaligned base");
    }
}
