//! Convolution as an implicit GEMM over f32, f16, Q8_0 and Q4_0 weights (dequantized in the
//! kernel, one dispatch per weight chunk); upsampling is in upsample.rs.

use super::conv_tiled::{int8_conv, tiled_source};
use super::loaders::{enable_f16, operand_bindings, Q8_UNPACK, W_F16, W_F16_NATIVE, W_F32_VEC4};
use super::params::Conv2d;
use super::split::{fits, gcd, limit_err, spans};
use super::tiles::tile_rows;
use super::{splice, NodeCx};
use crate::error::OpError;
use crate::ops::gpu::builder::{grid, Buf, KernelBuilder};
use crate::ops::quant::StorageType;

// Weight loaders: `load_w(n, k)` is row n of the chunk at k..k+3. Rows past the chunk
// are clamped to its last row rather than zeroed (their results are never stored): on
// software adapters a branch around a load costs as much as the load (SwiftShader ran
// 1.6x faster without it). The block formats load unscaled quants; `BLOCK_LOOP` applies
// each 32-value block's scales once to its partial sums, as linear_q.wgsl does.
/// f32, any K: scalar loads, zero past K.
const W_F32_SCALAR: &str = r#"
fn load_w(n: u32, k: u32) -> vec4<f32> {
    let K = params.k;
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j = j + 1u) {
        v[j] = select(0.0, w[w_at(n, min(k + j, K - 1u))], k + j < K);
    }
    return v;
}"#;
/// Chunk rows are `row_len` = C*kh*kw long; this dispatch reads columns from `col_off` on (its
/// input-channel range, and its first row within the chunk, when activations are split).
pub(super) const W_AT_CONV: &str = r#"
fn w_at(n: u32, k: u32) -> u32 {
    return min(n, params.n_rows - 1u) * params.row_len + params.col_off + k;
}"#;
/// The f16 scale of block b (two to a word).
const BLOCK_SCALE: &str = r#"
fn block_scale(b: u32) -> f32 {
    let pair = unpack2x16float(scales[b / 2u]);
    return select(pair.x, pair.y, (b & 1u) == 1u);
}

// Scale of block kb of chunk row n (rows past the chunk clamp, like the loads).
fn col_scale(n: u32, kb: u32) -> f32 {
    return block_scale(w_at(n, kb * 32u) / 32u);
}"#;
/// The K loop over f32/f16 weights: 4 taps per step; `w` holds channels c0..c0+3, `v`
/// c0+4..c0+7.
const PLAIN_LOOP: &str = r#"
    for (var k = 0u; k < K; k = k + 4u) {
        // Column j: channel c0 + j's weights at k..k+3; column p of xs: pixel p's inputs.
        let w = mat4x4<f32>(load_w(c0, k), load_w(c0 + 1u, k), load_w(c0 + 2u, k), load_w(c0 + 3u, k));
        let v = mat4x4<f32>(load_w(c0 + 4u, k), load_w(c0 + 5u, k), load_w(c0 + 6u, k), load_w(c0 + 7u, k));
        let xs = load_x(blk, k, &kc);
        acc0 = acc0 + xs[0] * w;
        acc1 = acc1 + xs[1] * w;
        acc2 = acc2 + xs[2] * w;
        acc3 = acc3 + xs[3] * w;
        bcc0 = bcc0 + xs[0] * v;
        bcc1 = bcc1 + xs[1] * v;
        bcc2 = bcc2 + xs[2] * v;
        bcc3 = bcc3 + xs[3] * v;
    }"#;
/// The K loop over block formats (K a multiple of 32): sums of unscaled quants per block,
/// scaled by the 8 channels' block scales once per block instead of once per load.
const BLOCK_LOOP: &str = r#"
    for (var kb = 0u; kb < K / 32u; kb = kb + 1u) {
        let s = vec4<f32>(col_scale(c0, kb), col_scale(c0 + 1u, kb), col_scale(c0 + 2u, kb), col_scale(c0 + 3u, kb));
        let s2 = vec4<f32>(col_scale(c0 + 4u, kb), col_scale(c0 + 5u, kb), col_scale(c0 + 6u, kb), col_scale(c0 + 7u, kb));
        var t0 = vec4<f32>(0.0);
        var t1 = vec4<f32>(0.0);
        var t2 = vec4<f32>(0.0);
        var t3 = vec4<f32>(0.0);
        var u0 = vec4<f32>(0.0);
        var u1 = vec4<f32>(0.0);
        var u2 = vec4<f32>(0.0);
        var u3 = vec4<f32>(0.0);
        for (var k = kb * 32u; k < kb * 32u + 32u; k = k + 4u) {
            let w = mat4x4<f32>(load_w(c0, k), load_w(c0 + 1u, k), load_w(c0 + 2u, k), load_w(c0 + 3u, k));
            let v = mat4x4<f32>(load_w(c0 + 4u, k), load_w(c0 + 5u, k), load_w(c0 + 6u, k), load_w(c0 + 7u, k));
            let xs = load_x(blk, k, &kc);
            t0 = t0 + xs[0] * w;
            t1 = t1 + xs[1] * w;
            t2 = t2 + xs[2] * w;
            t3 = t3 + xs[3] * w;
            u0 = u0 + xs[0] * v;
            u1 = u1 + xs[1] * v;
            u2 = u2 + xs[2] * v;
            u3 = u3 + xs[3] * v;
        }
        acc0 = acc0 + t0 * s;
        acc1 = acc1 + t1 * s;
        acc2 = acc2 + t2 * s;
        acc3 = acc3 + t3 * s;
        bcc0 = bcc0 + u0 * s2;
        bcc1 = bcc1 + u1 * s2;
        bcc2 = bcc2 + u2 * s2;
        bcc3 = bcc3 + u3 * s2;
    }"#;
/// Q8_0: word i/4 holds the 4 int8 quants of k..k+3 (K is a multiple of 32, so they
/// never straddle a block).
const W_Q8_0: &str = r#"
fn load_w(n: u32, k: u32) -> vec4<f32> {
    return unpack_q8(w[w_at(n, k) / 4u]);
}"#;
/// Q4_0, repacked so that word i/8 holds quants i..i+7 (i a multiple of 8), lowest nibble
/// first (`quant::pack_for_gpu`): quants k..k+3 are one half-word.
const W_Q4_0: &str = r#"
fn load_w(n: u32, k: u32) -> vec4<f32> {
    let i = w_at(n, k);
    let h = w[i / 8u] >> ((i % 8u) * 4u);
    return vec4<f32>(vec4<u32>(h, h >> 4u, h >> 8u, h >> 12u) & vec4<u32>(15u)) - 8.0;
}"#;

/// Input gather for any kernel, stride and padding (x bound as f32).
const X_GATHER: &str = r#"
// An output pixel: its input window's top-left corner (may lie in the padding) and the
// index of that corner in x, relative to which every tap is an offset. Pixels past M
// stand in for the last one (their results are not stored).
struct Pixel {
    base: i32,
    iy: i32,
    ix: i32,
}

// The 4 pixels of an invocation.
struct Block {
    p0: Pixel,
    p1: Pixel,
    p2: Pixel,
    p3: Pixel,
}

// One k = (c, ky, kx): its offset in x from a pixel's corner.
struct Tap {
    off: i32,
    ky: i32,
    kx: i32,
}

fn pixel(m: u32) -> Pixel {
    let wo = params.wo;
    let plane = params.ho * wo;
    let mm = min(m, params.m - 1u);
    let r = mm % plane;
    let iy = i32((r / wo) * params.stride) - i32(params.pad_top);
    let ix = i32((r % wo) * params.stride) - i32(params.pad_left);
    let base = i32((mm / plane) * params.c * params.h * params.w) + iy * i32(params.w) + ix;
    return Pixel(base, iy, ix);
}

fn block(r0: u32) -> Block {
    return Block(pixel(r0), pixel(r0 + 1u), pixel(r0 + 2u), pixel(r0 + 3u));
}

// The tap of k = (c, ky, kx). Taps past K (when K % 4 != 0) read the window's corner,
// which their zero weights cancel.
fn tap(k: vec3<u32>) -> Tap {
    let live = k.x < params.c;
    let off = i32((k.x * params.h + k.y) * params.w + k.z);
    return Tap(select(0, off, live), select(0, i32(k.y), live), select(0, i32(k.z), live));
}

// k + 1 in (c, ky, kx) form. Selects, not branches: software adapters run both sides of
// a branch under a lane mask, and masked loads cost them most.
fn next(k: vec3<u32>) -> vec3<u32> {
    let wrap_x = k.z + 1u == params.kw;
    let ky = select(k.y, k.y + 1u, wrap_x);
    let wrap_y = ky == params.kh;
    return vec3<u32>(select(k.x, k.x + 1u, wrap_y), select(ky, 0u, wrap_y), select(k.z + 1u, 0u, wrap_x));
}

// x at tap t of pixel p, zero in the padding: an unconditional load (clamped into x) and
// a select, for the reason above.
fn gather(p: Pixel, t: Tap) -> f32 {
    let inside = (u32(p.iy + t.ky) < params.h) & (u32(p.ix + t.kx) < params.w);
    return select(0.0, x[select(0u, u32(p.base + t.off), inside)], inside);
}

fn gather4(p: Pixel, t0: Tap, t1: Tap, t2: Tap, t3: Tap) -> vec4<f32> {
    return vec4<f32>(gather(p, t0), gather(p, t1), gather(p, t2), gather(p, t3));
}

// Column p: pixel p's inputs at k..k+3 (tracked as `kc`, advanced here).
fn load_x(blk: Block, k: u32, kc: ptr<function, vec3<u32>>) -> mat4x4<f32> {
    var c = *kc;
    let t0 = tap(c);
    c = next(c);
    let t1 = tap(c);
    c = next(c);
    let t2 = tap(c);
    c = next(c);
    let t3 = tap(c);
    *kc = next(c);
    return mat4x4<f32>(gather4(blk.p0, t0, t1, t2, t3), gather4(blk.p1, t0, t1, t2, t3), gather4(blk.p2, t0, t1, t2, t3), gather4(blk.p3, t0, t1, t2, t3));
}
"#;

/// Input for 1x1 convs with stride 1, no padding and Ho*Wo a multiple of 4 (x bound as
/// vec4): an invocation's 4 pixels are one aligned vec4 of each input plane, 4 loads per
/// step instead of 16 (1.7x faster on lavapipe).
const X_POINTWISE: &str = r#"
// Index (in vec4s) of the first pixel of the invocation in input channel 0.
struct Block {
    base: u32,
}

fn block(r0: u32) -> Block {
    let plane = params.ho * params.wo;
    return Block(((r0 / plane) * params.c * plane + r0 % plane) / 4u);
}

// The 4 pixels in input channel c (zero past C, when C % 4 != 0).
fn plane_row(blk: Block, c: u32) -> vec4<f32> {
    let C = params.c;
    return select(vec4<f32>(0.0), x[blk.base + min(c, C - 1u) * (params.ho * params.wo / 4u)], c < C);
}

// Column p: pixel p's inputs at channels k..k+3.
fn load_x(blk: Block, k: u32, _kc: ptr<function, vec3<u32>>) -> mat4x4<f32> {
    return transpose(mat4x4<f32>(plane_row(blk, k), plane_row(blk, k + 1u), plane_row(blk, k + 2u), plane_row(blk, k + 3u)));
}
"#;

/// Writes channels c0..c0+3 (chunk-local) of output pixel m (NCHW), adding to what is
/// there for a later window of input channels.
pub(super) const STORE_PIXEL: &str = r#"
fn store_pixel(m: u32, c0: u32, v: vec4<f32>) {
    if (m >= params.m) {
        return;
    }
    let plane = params.ho * params.wo;
    let base = (m / plane) * params.o * plane + (params.n_off + c0) * plane + m % plane;
    let accumulate = params.accumulate != 0u;
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (c0 + j < params.n_rows) {
            let i = base + j * plane;
            var r = v[j];
            if (accumulate) {
                r = r + out[i];
            }
            out[i] = r;
        }
    }
}"#;

/// Output pixels and channels per workgroup: 8x8 invocations of 4 pixels x 8 channels each.
const TILE_PIXELS: usize = 32;
const TILE_CHANNELS: usize = 64;

/// How a conv variant reads x.
#[derive(Clone, Copy, PartialEq)]
enum XPath {
    /// Any kernel, stride and padding: per-tap gathers.
    Gather,
    /// 1x1, stride 1, no padding: vec4s of 4 pixels.
    Pointwise,
    /// 3x3 stride 1 over f32 weights, 4 pixels in one row: 6 loads per channel row.
    Row3,
}

impl XPath {
    fn name(self) -> &'static str {
        match self {
            XPath::Gather => "gather",
            XPath::Pointwise => "pointwise",
            XPath::Row3 => "row3",
        }
    }
}

/// The weight binding's type and `load_w` (+ `col_scale` for block formats).
pub(super) fn weight_loader(storage: StorageType, w_vec4: bool, f16: bool) -> (&'static str, String) {
    match storage {
        StorageType::Q8_0 => ("array<u32>", format!("{BLOCK_SCALE}\n{Q8_UNPACK}\n{W_Q8_0}")),
        StorageType::Q4_0 => ("array<u32>", format!("{BLOCK_SCALE}\n{W_Q4_0}")),
        StorageType::F16 if f16 => ("array<vec4<f16>>", W_F16_NATIVE.to_string()),
        StorageType::F16 => ("array<vec2<u32>>", W_F16.to_string()),
        _ if w_vec4 => ("array<vec4<f32>>", W_F32_VEC4.to_string()),
        _ => ("array<f32>", W_F32_SCALAR.to_string()),
    }
}

fn conv_source(storage: StorageType, w_vec4: bool, path: XPath, f16: bool) -> String {
    let (row3_fns, row3_loop) = include_str!("conv2d_row3.wgsl").split_once("//{{ROW3_LOOP}}").expect("marker");
    let (w_decl, w_loader) = if path == XPath::Row3 { ("array<f32>", row3_fns.to_string()) } else { weight_loader(storage, w_vec4, f16) };
    let (x_decl, x_loader) = if path == XPath::Pointwise { ("array<vec4<f32>>", X_POINTWISE) } else { ("array<f32>", X_GATHER) };
    let bindings = operand_bindings(x_decl, w_decl, storage.is_quantized());
    let loaders = format!("{W_AT_CONV}\n{w_loader}\n{x_loader}");
    let k_loop = match path {
        XPath::Row3 => row3_loop,
        _ if storage.is_quantized() => BLOCK_LOOP,
        _ => PLAIN_LOOP,
    };
    let src = splice(include_str!("conv2d.wgsl"), &[("BINDINGS", &bindings), ("LOADERS", &loaders), ("K_LOOP", k_loop), ("STORE_PIXEL", STORE_PIXEL)]);
    enable_f16(src, storage == StorageType::F16 && f16)
}

/// NCHW convolution of x [B, C, H, W] by w [O, C, kh, kw] (+ bias), one dispatch per
/// weight chunk, each writing its range of output channels.
pub fn conv2d(kb: &mut KernelBuilder, cx: &NodeCx, stride: usize, padding: [usize; 4]) -> Result<(), OpError> {
    let err = |message: String| OpError::Shape { node: cx.node.label.clone(), message };
    let [b, c, h, w] = cx.in_shapes[0][..] else {
        return Err(err(format!("x {:?} is not [B, C, H, W]", cx.in_shapes[0])));
    };
    let (o, kh, kw) = (cx.in_shapes[1][0], cx.in_shapes[1][2], cx.in_shapes[1][3]);
    let (ho, wo) = (cx.node.shape[2], cx.node.shape[3]);
    let (m, k) = (b * ho * wo, c * kh * kw);
    let (storage, chunks) = cx.weight_chunks(1);
    if storage.is_quantized() && k % 32 != 0 {
        return Err(err(format!("a {} weight needs C*kh*kw = {k} to be a multiple of 32", storage.name())));
    }
    let x = cx.f32_input(0)?;
    let bias = if cx.inputs.len() > 2 { Some(cx.f32_input(2)?) } else { None };
    let w_vec4 = k % 4 == 0;
    let path = if kh == 1 && kw == 1 && stride == 1 && padding == [0; 4] && (ho * wo) % 4 == 0 && x.offset % 16 == 0 {
        XPath::Pointwise
    } else if kh == 3 && kw == 3 && stride == 1 && wo % 4 == 0 && storage == StorageType::F32 {
        XPath::Row3
    } else {
        XPath::Gather
    };
    let f16 = storage == StorageType::F16 && kb.has_f16();
    let tiled = kb.ctx.tiled_kernels();
    let f16_tiles = tiled && kb.ctx.fast_arithmetic().f16_tiles;
    let variant = format!("{}{}_{}", storage.name(), if f16 { "_native" } else { "" }, if w_vec4 { "vec4" } else { "scalar" });
    let key = if tiled { format!("conv2d_tiled_{}{variant}", if f16_tiles { "f16_" } else { "" }) } else { format!("conv2d_{variant}_{}", path.name()) };
    let forced_rows = kb.ctx.forced_tile_rows();
    // Pixels per workgroup: the tiled kernel's follow each pass's M (tiles.rs).
    let tile_pixels = |m: usize| if tiled { tile_rows(m, forced_rows) } else { TILE_PIXELS };
    let tile_channels = if tiled { 64 } else { TILE_CHANNELS };
    let dims = Dims { h, w, o, ho, wo, kh, kw, stride, padding };
    let has_bias = bias.is_some();
    let bias = bias.unwrap_or_else(|| kb.placeholder());
    let unsplit = fits(kb, &[&x, &cx.out]);
    let (max, align) = (kb.max_elems(), kb.offset_align());
    // The fast precision's int8 path (conv_tiled.rs) for unsplit Q8_0 convs.
    if unsplit && tiled && storage == StorageType::Q8_0 && kb.ctx.fast_arithmetic().int8_dot && chunks.len() == 1 {
        let (rows, values, scales) = &chunks[0];
        let pass = Pass { m, x: x.clone(), out: cx.out.clone(), channels: 0..c, rows: rows.clone(), out_row: rows.start, row_in_chunk: 0, has_bias };
        if int8_conv(kb, [&cx.out, &bias, &x, values], scales, &pass.params(&dims, k, rows.len().div_ceil(64)))? {
            return Ok(());
        }
    }
    let mut record = |pass: Pass, values: &Buf, scales: &Option<Buf>| {
        let mut bindings: Vec<Buf> = vec![pass.out.clone(), bias.clone(), pass.x.clone(), values.clone()];
        bindings.extend(scales.clone());
        let tiles_n = pass.rows.len().div_ceil(tile_channels);
        let tile_m = tile_pixels(pass.m);
        let workgroups = grid((tiles_n * pass.m.div_ceil(tile_m)) as u32);
        let params = pass.params(&dims, k, tiles_n);
        let body = || if tiled { tiled_source(storage, w_vec4, f16, f16_tiles, tile_m) } else { conv_source(storage, w_vec4, path, f16) };
        let key = if tiled { format!("{key}_m{tile_m}") } else { key.clone() };
        kb.dispatch(&key, body, bindings, &params, workgroups)
    };
    if unsplit {
        for (rows, values, scales) in &chunks {
            let pass = Pass { m, x: x.clone(), out: cx.out.clone(), channels: 0..c, rows: rows.clone(), out_row: rows.start, row_in_chunk: 0, has_bias };
            record(pass, values, scales)?;
        }
        return Ok(());
    }
    // Above the binding limit: per batch item, windows of output channels (within each
    // weight chunk) times windows of input channels, the latter accumulating. A window of
    // input channels keeps the weight columns it reads aligned to blocks / vec4s.
    let (plane_in, plane_out) = (h * w, ho * wo);
    let quantum = if storage.is_quantized() {
        32
    } else if w_vec4 {
        4
    } else {
        1
    };
    let step = quantum / gcd(kh * kw, quantum);
    for item in 0..b {
        let ins = spans(c, plane_in, item * c * plane_in, max, align, step).map_err(|m| limit_err(cx, m))?;
        for (rows, values, scales) in &chunks {
            let outs = spans(rows.len(), plane_out, (item * o + rows.start) * plane_out, max, align, 1).map_err(|m| limit_err(cx, m))?;
            for out_range in &outs {
                let first = rows.start + out_range.start;
                let out = cx.out.window((item * o + first) * plane_out, out_range.len() * plane_out);
                for channels in &ins {
                    let x = x.window((item * c + channels.start) * plane_in, channels.len() * plane_in);
                    let pass = Pass {
                        m: plane_out,
                        x,
                        out: out.clone(),
                        channels: channels.clone(),
                        rows: first..first + out_range.len(),
                        out_row: 0,
                        row_in_chunk: out_range.start,
                        has_bias: has_bias && channels.start == 0,
                    };
                    record(pass, values, scales)?;
                }
            }
        }
    }
    Ok(())
}

/// A conv's shape.
struct Dims {
    h: usize,
    w: usize,
    o: usize,
    ho: usize,
    wo: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: [usize; 4],
}

/// One dispatch: output rows (channels) `rows` from input channels `channels`, over `m`
/// pixels of the bound x and out.
struct Pass {
    m: usize,
    x: Buf,
    out: Buf,
    channels: std::ops::Range<usize>,
    /// Output channels (global indices: the bias is read at these).
    rows: std::ops::Range<usize>,
    /// Channel of the bound output where `rows` start.
    out_row: usize,
    /// Row of the weight chunk where `rows` start.
    row_in_chunk: usize,
    has_bias: bool,
}

impl Pass {
    fn params(&self, d: &Dims, row_len: usize, tiles_n: usize) -> Conv2d {
        let taps = d.kh * d.kw;
        let u = |v: usize| v as u32;
        Conv2d {
            m: u(self.m),
            k: u(self.channels.len() * taps),
            o: u(d.o),
            n_off: u(self.out_row),
            n_rows: u(self.rows.len()),
            has_bias: u(self.has_bias as usize),
            c: u(self.channels.len()),
            h: u(d.h),
            w: u(d.w),
            ho: u(d.ho),
            wo: u(d.wo),
            kh: u(d.kh),
            kw: u(d.kw),
            stride: u(d.stride),
            pad_top: u(d.padding[0]),
            pad_left: u(d.padding[2]),
            tiles_n: u(tiles_n),
            row_len: u(row_len),
            col_off: u(self.row_in_chunk * row_len + self.channels.start * taps),
            accumulate: u((self.channels.start > 0) as usize),
            bias_off: u(self.rows.start),
        }
    }
}

/// Every variant `conv2d` can make: (key, WGSL).
#[cfg(all(test, not(target_arch = "wasm32")))]
pub fn variants() -> Vec<(String, String)> {
    use super::kernel_source;
    let mut out = vec![];
    for storage in [StorageType::F32, StorageType::F16, StorageType::Q8_0, StorageType::Q4_0] {
        for path in [XPath::Gather, XPath::Pointwise, XPath::Row3] {
            for w_vec4 in [false, true] {
                for f16 in [false, true] {
                    if f16 && storage != StorageType::F16 {
                        continue;
                    }
                    out.push((format!("conv2d_{}_{}_{w_vec4}_{f16}", storage.name(), path.name()), kernel_source::<Conv2d>(&conv_source(storage, w_vec4, path, f16))));
                }
            }
        }
    }
    out.extend(super::conv_tiled::variants());
    out
}
