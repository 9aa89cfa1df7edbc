//! GGML-compatible block quantization (Q8_0, Q4_0) and the GPU packing of its blocks.
//!
//! Host form: GGML's byte layout (34 bytes per Q8_0 block: f16 scale + 32 i8; 18 bytes per
//! Q4_0 block: f16 scale + 16 bytes of nibbles, byte j holding q[j] low and q[j+16] high),
//! so files interoperate with GGUF tools. GPU form: scales and quants in separate u32
//! arrays, because WGSL storage arrays are 4-byte aligned; scales travel as f16 pairs read
//! with `unpack2x16float`, which needs no `shader-f16`.

use std::mem::MaybeUninit;

use half::f16;
use serde::{Deserialize, Serialize};

/// Weights per block, both formats.
pub const BLOCK: usize = 32;

/// How a weight tensor is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageType {
    F32,
    F16,
    Q8_0,
    Q4_0,
}

impl StorageType {
    /// Bytes for `n` values (n a multiple of 32 for the block formats).
    pub fn byte_len(self, n: usize) -> usize {
        match self {
            Self::F32 => 4 * n,
            Self::F16 => 2 * n,
            Self::Q8_0 => n / BLOCK * 34,
            Self::Q4_0 => n / BLOCK * 18,
        }
    }

    /// `byte_len`, or None when it does not fit in usize (shapes from untrusted manifests).
    pub fn checked_byte_len(self, n: usize) -> Option<usize> {
        match self {
            Self::F32 => n.checked_mul(4),
            Self::F16 => n.checked_mul(2),
            Self::Q8_0 => (n / BLOCK).checked_mul(34),
            Self::Q4_0 => (n / BLOCK).checked_mul(18),
        }
    }

    /// Whether this is a block format.
    pub fn is_quantized(self) -> bool {
        matches!(self, Self::Q8_0 | Self::Q4_0)
    }

    /// The storage called `name` (as in manifests; `q8`/`q4` also accepted).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "f32" => Self::F32,
            "f16" => Self::F16,
            "q8_0" | "q8" => Self::Q8_0,
            "q4_0" | "q4" => Self::Q4_0,
            _ => return None,
        })
    }

    /// The name used in manifests and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
        }
    }
}

/// GGML's `quantize_row_q8_0`: d = amax / 127, q = round(x / d) (half away from zero).
pub fn quantize_q8_0(xs: &[f32]) -> Vec<u8> {
    assert!(xs.len().is_multiple_of(BLOCK), "Q8_0 needs a multiple of 32 values, got {}", xs.len());
    let mut out = Vec::with_capacity(xs.len() / BLOCK * 34);
    for block in xs.chunks_exact(BLOCK) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|x| (x * id).round() as i8 as u8));
    }
    out
}

/// GGML's `quantize_row_q4_0`: d = (value of largest magnitude) / -8, q = min(15, trunc(x/d + 8.5)).
pub fn quantize_q4_0(xs: &[f32]) -> Vec<u8> {
    assert!(xs.len().is_multiple_of(BLOCK), "Q4_0 needs a multiple of 32 values, got {}", xs.len());
    let mut out = Vec::with_capacity(xs.len() / BLOCK * 18);
    for block in xs.chunks_exact(BLOCK) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &x in block {
            if amax < x.abs() {
                amax = x.abs();
                max = x;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        for j in 0..BLOCK / 2 {
            let lo = 15u8.min((block[j] * id + 8.5) as u8);
            let hi = 15u8.min((block[j + BLOCK / 2] * id + 8.5) as u8);
            out.push(lo | (hi << 4));
        }
    }
    out
}

/// Expands GGML blocks (or f32/f16 bytes) back to f32, pieces of blocks on every CPU thread
/// (the page's CPU backend expands each weight as a step needs it).
pub fn dequantize(ty: StorageType, bytes: &[u8]) -> Vec<f32> {
    let block_values = if ty.is_quantized() { BLOCK } else { 1 };
    let block_bytes = ty.byte_len(block_values);
    let len = bytes.len() / block_bytes * block_values;
    // Written once, by the threads: zeroing it first would be one more pass, on one thread.
    let mut out: Vec<f32> = Vec::with_capacity(len);
    // 64 KiB of f32 a piece: far more work than handing it to a thread costs.
    let piece_blocks = (16384 / block_values).max(1);
    crate::ops::cpu::threads::for_each_piece(&mut out.spare_capacity_mut()[..len], piece_blocks * block_values, |i, dst| {
        let src = &bytes[i * piece_blocks * block_bytes..];
        for (b, d) in src.chunks_exact(block_bytes).zip(dst.chunks_exact_mut(block_values)) {
            dequantize_block(ty, b, d);
        }
    });
    // SAFETY: the pieces cover all `len` values and every block writes each of its values.
    unsafe { out.set_len(len) };
    out
}

/// One block (or one f32/f16 value) of `ty` into `out`, every value written.
#[inline]
fn dequantize_block(ty: StorageType, b: &[u8], out: &mut [MaybeUninit<f32>]) {
    match ty {
        StorageType::F32 => _ = out[0].write(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        StorageType::F16 => _ = out[0].write(f16::from_le_bytes([b[0], b[1]]).to_f32()),
        StorageType::Q8_0 => {
            let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
            for (o, &q) in out.iter_mut().zip(&b[2..]) {
                o.write(q as i8 as f32 * d);
            }
        }
        StorageType::Q4_0 => {
            let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
            let (lo, hi) = out.split_at_mut(BLOCK / 2);
            for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b[2..]) {
                l.write(((q & 0xF) as i32 - 8) as f32 * d);
                h.write(((q >> 4) as i32 - 8) as f32 * d);
            }
        }
    }
}

/// Values `start..start + out.len()` of a tensor stored as `ty` (the flat index over all
/// its values), each exactly as [`dequantize`] gives it: the CPU GEMM packs a weight's
/// rows straight from its blocks, with no f32 copy of the whole weight.
pub fn dequantize_range(ty: StorageType, bytes: &[u8], start: usize, out: &mut [f32]) {
    match ty {
        StorageType::F32 => {
            for (o, b) in out.iter_mut().zip(bytes[start * 4..].chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        StorageType::F16 => {
            for (o, b) in out.iter_mut().zip(bytes[start * 2..].chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        StorageType::Q8_0 | StorageType::Q4_0 => {
            let block_bytes = ty.byte_len(BLOCK);
            let mut done = 0;
            while done < out.len() {
                let (block, first) = ((start + done) / BLOCK, (start + done) % BLOCK);
                let take = (BLOCK - first).min(out.len() - done);
                let b = &bytes[block * block_bytes..][..block_bytes];
                let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
                let dst = &mut out[done..done + take];
                if ty == StorageType::Q8_0 {
                    for (o, &q) in dst.iter_mut().zip(&b[2 + first..]) {
                        *o = q as i8 as f32 * d;
                    }
                } else {
                    for (j, o) in (first..).zip(dst.iter_mut()) {
                        let q = if j < BLOCK / 2 { b[2 + j] & 0xF } else { b[2 + j - BLOCK / 2] >> 4 };
                        *o = (q as i32 - 8) as f32 * d;
                    }
                }
                done += take;
            }
        }
    }
}

/// Quantizes f32 values to `ty` in the host (GGML) layout.
pub fn quantize(ty: StorageType, xs: &[f32]) -> Vec<u8> {
    match ty {
        StorageType::F32 => bytemuck::cast_slice(xs).to_vec(),
        StorageType::F16 => xs.iter().flat_map(|x| f16::from_f32(*x).to_le_bytes()).collect(),
        StorageType::Q8_0 => quantize_q8_0(xs),
        StorageType::Q4_0 => quantize_q4_0(xs),
    }
}

/// The fast precision's int8 activations, as `quantize_q8.wgsl` makes them: per block of
/// 32 values, quants round(x * (127 / amax)) with ties to even (WGSL's `round`; GGML's
/// weights round half away from zero) and the scale amax / 127, kept in f32.
pub fn quantize_activations_q8(xs: &[f32]) -> (Vec<i8>, Vec<f32>) {
    assert!(xs.len().is_multiple_of(BLOCK), "int8 activations need a multiple of 32 values, got {}", xs.len());
    let mut quants = Vec::with_capacity(xs.len());
    let mut scales = Vec::with_capacity(xs.len() / BLOCK);
    for block in xs.chunks_exact(BLOCK) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        scales.push(amax / 127.0);
        quants.extend(block.iter().map(|x| (x * inv).round_ties_even().clamp(-127.0, 127.0) as i8));
    }
    (quants, scales)
}

/// `x [m, k] @ w^T` for Q8_0 weight rows `w` [n, k] (GGML bytes) as the fast precision's
/// `linear_q8dot` kernel computes it: x quantized by `quantize_activations_q8`, each block's
/// integer dot product scaled by the weight's scale, then the activation's, blocks summed in
/// order. The reference its GPU results are held to.
pub fn linear_q8_int8(x: &[f32], m: usize, k: usize, w: &[u8], n: usize) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "x is not {m}x{k}");
    assert_eq!(w.len(), StorageType::Q8_0.byte_len(n * k), "w is not {n}x{k} Q8_0");
    let (xq, xd) = quantize_activations_q8(x);
    let blocks = k / BLOCK;
    let mut out = vec![0f32; m * n];
    for (r, row) in out.chunks_exact_mut(n).enumerate() {
        for (c, o) in row.iter_mut().enumerate() {
            let mut acc = 0f32;
            for kb in 0..blocks {
                let wb = &w[(c * blocks + kb) * 34..][..34];
                let sw = f16::from_le_bytes([wb[0], wb[1]]).to_f32();
                let xb = &xq[(r * blocks + kb) * BLOCK..][..BLOCK];
                let dot: i32 = xb.iter().zip(&wb[2..]).map(|(&a, &b)| a as i32 * b as i8 as i32).sum();
                acc += dot as f32 * sw * xd[r * blocks + kb];
            }
            *o = acc;
        }
    }
    out
}

/// A block-quantized tensor split for WGSL: `qs` holds the quants as u32 words (Q8_0: 8
/// words a block, 4 i8 each; Q4_0: 4 words a block, word w holding quants 8w..8w+7 in
/// its nibbles, lowest first, so that 4 consecutive quants sit in one half-word), `scales`
/// the f16 scales two to a word (block b in the low half of word b/2 when b is even).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuBlocks {
    pub qs: Vec<u32>,
    pub scales: Vec<u32>,
}

/// Repacks GGML blocks for the GPU.
pub fn pack_for_gpu(ty: StorageType, bytes: &[u8]) -> GpuBlocks {
    let (block_bytes, words) = (ty.byte_len(BLOCK), gpu_words_per_block(ty));
    let blocks = bytes.len() / block_bytes;
    let mut qs = Vec::with_capacity(blocks * words);
    let mut scales = vec![0u32; blocks.div_ceil(2)];
    for (i, b) in bytes.chunks_exact(block_bytes).enumerate() {
        let d = u16::from_le_bytes([b[0], b[1]]) as u32;
        scales[i / 2] |= d << (16 * (i % 2));
        match ty {
            StorageType::Q4_0 => qs.extend(sequential_nibbles(&b[2..])),
            _ => qs.extend(b[2..].chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))),
        }
    }
    GpuBlocks { qs, scales }
}

/// u32 words of quants per block in `pack_for_gpu`'s layout (block formats only).
pub fn gpu_words_per_block(ty: StorageType) -> usize {
    match ty {
        StorageType::Q8_0 => 8,
        StorageType::Q4_0 => 4,
        _ => panic!("GPU block packing takes a block format, not {ty:?}"),
    }
}

/// The inverse of `pack_for_gpu` for the first `blocks` blocks: GGML block bytes again.
pub fn unpack_from_gpu(ty: StorageType, packed: &GpuBlocks, blocks: usize) -> Vec<u8> {
    let words = gpu_words_per_block(ty);
    let mut bytes = Vec::with_capacity(blocks * ty.byte_len(BLOCK));
    for i in 0..blocks {
        bytes.extend_from_slice(&((packed.scales[i / 2] >> (16 * (i % 2))) as u16).to_le_bytes());
        let qs = &packed.qs[i * words..(i + 1) * words];
        match ty {
            StorageType::Q4_0 => {
                let quant = |i: usize| ((qs[i / 8] >> (4 * (i % 8))) & 15) as u8;
                bytes.extend((0..16).map(|j| quant(j) | quant(j + 16) << 4));
            }
            _ => bytes.extend(qs.iter().flat_map(|w| w.to_le_bytes())),
        }
    }
    bytes
}

/// GGML's Q4_0 nibbles (byte j: quant j low, quant j + 16 high) as 4 words of 8
/// consecutive quants each.
fn sequential_nibbles(bytes: &[u8]) -> [u32; 4] {
    let quant = |i: usize| if i < 16 { bytes[i] & 15 } else { bytes[i - 16] >> 4 } as u32;
    std::array::from_fn(|w| (0..8).fold(0, |word, p| word | quant(8 * w + p) << (4 * p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::test_values;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    fn candle_bytes(xs: &[f32], dtype: GgmlDType) -> Vec<u8> {
        let t = Tensor::from_slice(xs, (xs.len() / 64, 64), &Device::Cpu).unwrap();
        QTensor::quantize(&t, dtype).unwrap().data().unwrap().into_owned()
    }

    fn sample() -> Vec<f32> {
        // Random values plus an all-zero block and exact ties at .5 to exercise the rounding.
        let mut xs: Vec<f32> = test_values(64 * 6, 9).iter().map(|x| x * 3.0).collect();
        xs[64..96].fill(0.0);
        for (i, x) in xs[128..160].iter_mut().enumerate() {
            *x = (i as f32 - 16.0) * 0.5;
        }
        xs
    }

    #[test]
    fn q8_0_bytes_equal_ggml_via_candle() {
        let xs = sample();
        assert_eq!(quantize_q8_0(&xs), candle_bytes(&xs, GgmlDType::Q8_0));
    }

    #[test]
    fn q4_0_bytes_equal_ggml_via_candle() {
        let xs = sample();
        assert_eq!(quantize_q4_0(&xs), candle_bytes(&xs, GgmlDType::Q4_0));
    }

    #[test]
    fn dequantized_values_are_within_the_format_bound() {
        // Q8_0 is symmetric: half a step (amax/127/2). Q4_0 maps the extreme value to -8, so
        // the opposite extreme clamps at +7: up to one full step (amax/8).
        let xs = sample();
        for (ty, levels) in [(StorageType::Q8_0, 254.0), (StorageType::Q4_0, 8.0)] {
            let back = dequantize(ty, &quantize(ty, &xs));
            for (block, back) in xs.chunks(BLOCK).zip(back.chunks(BLOCK)) {
                let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
                // Plus the f16 rounding of the scale.
                let bound = amax / levels + amax * 1e-3 + 1e-7;
                for (x, y) in block.iter().zip(back) {
                    assert!((x - y).abs() <= bound, "{ty:?}: {x} -> {y} (bound {bound})");
                }
            }
        }
    }

    #[test]
    fn gpu_packing_keeps_scales_and_quants() {
        // Two Q8_0 blocks: scale 1.0 (0x3c00) and 2.0 (0x4000), quants 0..31 and -1..-32.
        let mut bytes = vec![0x00, 0x3c];
        bytes.extend(0..32u8);
        bytes.extend([0x00, 0x40]);
        bytes.extend((1..=32i8).map(|q| (-q) as u8));
        let p = pack_for_gpu(StorageType::Q8_0, &bytes);
        assert_eq!(p.scales, vec![0x4000_3c00]);
        assert_eq!(p.qs.len(), 16);
        assert_eq!(p.qs[0], u32::from_le_bytes([0, 1, 2, 3]));
        assert_eq!(p.qs[8], u32::from_le_bytes([0xff, 0xfe, 0xfd, 0xfc]));
        assert_eq!(dequantize(StorageType::Q8_0, &bytes)[33], -4.0);

        // A Q4_0 block whose quant i is i % 16: word w holds quants 8w..8w+7, lowest nibble
        // first.
        let mut q4 = vec![0x00, 0x3c];
        q4.extend((0..16u8).map(|j| j | (j << 4)));
        let p = pack_for_gpu(StorageType::Q4_0, &q4);
        assert_eq!(p.qs, vec![0x7654_3210, 0xfedc_ba98, 0x7654_3210, 0xfedc_ba98]);
        let mut q4 = vec![0x00, 0x3c];
        q4.extend((0..16u8).map(|j| (15 - j) << 4));
        assert_eq!(pack_for_gpu(StorageType::Q4_0, &q4).qs, vec![0, 0, 0x89ab_cdef, 0x0123_4567]);
    }

    #[test]
    fn gpu_unpacking_gives_the_ggml_bytes_back() {
        // An odd block count leaves half a scale word: the last block must still come back.
        let xs = &sample()[..5 * BLOCK];
        for ty in [StorageType::Q8_0, StorageType::Q4_0] {
            let bytes = quantize(ty, xs);
            assert_eq!(unpack_from_gpu(ty, &pack_for_gpu(ty, &bytes), 5), bytes, "{ty:?}");
        }
    }

    #[test]
    fn any_range_dequantizes_to_the_same_bits() {
        // Ranges that start and end inside blocks, span several, or sit in one.
        let xs: Vec<f32> = (0..BLOCK * 7).map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0).collect();
        for ty in [StorageType::F32, StorageType::F16, StorageType::Q8_0, StorageType::Q4_0] {
            let bytes = quantize(ty, &xs);
            let whole = dequantize(ty, &bytes);
            for (start, len) in [(0, 224), (5, 3), (13, 40), (31, 1), (32, 32), (47, 150), (200, 24)] {
                let mut part = vec![f32::NAN; len];
                dequantize_range(ty, &bytes, start, &mut part);
                assert!(part.iter().zip(&whole[start..]).all(|(a, b)| a.to_bits() == b.to_bits()), "{ty:?} {start}+{len}");
            }
        }
    }

    #[test]
    fn dequantize_in_pieces_equals_block_by_block() {
        // 1100 blocks: two whole pieces of 512 blocks and a part, on the threads.
        let xs: Vec<f32> = (0..BLOCK * 1100).map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0).collect();
        for ty in [StorageType::F32, StorageType::F16, StorageType::Q8_0, StorageType::Q4_0] {
            let bytes = quantize(ty, &xs);
            let one_by_one: Vec<f32> = bytes.chunks(ty.byte_len(BLOCK)).flat_map(|b| dequantize(ty, b)).collect();
            let whole = dequantize(ty, &bytes);
            assert_eq!(whole.len(), xs.len(), "{ty:?}");
            assert!(whole.iter().zip(&one_by_one).all(|(a, b)| a.to_bits() == b.to_bits()), "{ty:?}");
            let err = whole.iter().zip(&xs).fold(0f32, |e, (a, b)| e.max((a - b).abs()));
            assert!(err < 0.3, "{ty:?}: max error {err}");
        }
    }

    #[test]
    fn int8_activations_round_ties_to_even_and_scale_by_amax() {
        // amax 127 makes the step exactly 1: the quants are x rounded, ties to even.
        let mut xs = vec![0f32; 32];
        xs[..8].copy_from_slice(&[127.0, -127.0, 1.5, 2.5, -0.5, 3.5, -2.5, 0.49]);
        let (q, d) = quantize_activations_q8(&xs);
        assert_eq!(&q[..8], &[127, -127, 2, 2, 0, 4, -2, 0]);
        assert_eq!(d, vec![1.0]);
        // An all-zero block has scale 0 and zero quants (no division by zero).
        let (q, d) = quantize_activations_q8(&[0.0; 32]);
        assert!(q.iter().all(|&v| v == 0) && d == vec![0.0]);
    }

    #[test]
    fn int8_linear_is_the_integer_dot_product_times_both_scales() {
        // x: one block with amax 127 (step 1, so its quants are its values); w: one row of
        // 0.5s, quants 127 at scale 0.5/127 in f16. y = sum(q_x * 127) * scale_w * 1.
        let x: Vec<f32> = (0..32).map(|i| if i == 0 { 127.0 } else { i as f32 - 16.0 }).collect();
        let w = quantize_q8_0(&[0.5; 32]);
        let sw = f16::from_le_bytes([w[0], w[1]]).to_f32();
        assert!(w[2..].iter().all(|&q| q == 127), "the weight is one level, 127");
        let sum_q: i32 = 127 + (1..32).map(|i| i - 16).sum::<i32>();
        let y = linear_q8_int8(&x, 1, 32, &w, 1);
        assert_eq!(y, vec![(sum_q * 127) as f32 * sw * 1.0]);
    }
}
