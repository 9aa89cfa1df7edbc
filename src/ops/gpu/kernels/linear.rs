//! Linear layers on f32, f16, Q8_0 and Q4_0 weights (dequantized in the kernel), split into one
//! dispatch per weight chunk when the weight exceeds a binding.

use super::loaders::{enable_f16, operand_bindings, tile_loader, OUT_BIAS_BINDINGS, Q8_UNPACK, W_AT_ROWS, W_F16, W_F16_NATIVE, W_F32_VEC4};
use super::params::{Linear, QuantizeQ8};
use super::split::{fits, row_spans, whole};
use super::tiles::tile_rows;
use super::{splice, NodeCx};
use crate::error::OpError;
use crate::ops::gpu::builder::{grid, Buf, KernelBuilder};
use crate::ops::quant::StorageType;

/// x loaders: vec4 when K is a multiple of 4 (x bound as vec4 array), else scalar with bounds.
/// Rows past the end are clamped rather than branched around (their results are never
/// stored): branch-free loads ran 2x faster on SwiftShader.
const X_VEC4: &str = r#"
fn load_x(m: u32, k: u32) -> vec4<f32> {
    return x[(min(m, params.m - 1u) * params.k + k) / 4u];
}"#;
const X_SCALAR: &str = r#"
fn load_x(m: u32, k: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (m >= params.m) { return v; }
    let K = params.k;
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (k + j < K) { v[j] = x[m * K + k + j]; }
    }
    return v;
}"#;

const W_F32_SCALAR: &str = r#"
fn load_w(n: u32, k: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (n >= params.n_rows) { return v; }
    let K = params.k;
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (k + j < K) { v[j] = w[n * K + k + j]; }
    }
    return v;
}"#;
/// Unscaled Q8_0 quants k..k+3 of chunk row n (the block scale is applied per block).
const Q_Q8_0: &str = r#"
fn load_q(n: u32, k: u32) -> vec4<f32> {
    return unpack_q8(w[(min(n, params.n_rows - 1u) * params.k + k) / 4u]);
}"#;
/// A block's sums of unscaled quants times x: 8 steps of 4 quants per column.
const SUMS: &str = r#"
        for (var j = 0u; j < 32u; j = j + 4u) {
            let k = kb * 32u + j;
            let q = mat4x4<f32>(load_q(c0, k), load_q(c0 + 1u, k), load_q(c0 + 2u, k), load_q(c0 + 3u, k));
            t0 = t0 + load_x(r0 + 0u, k) * q;
            t1 = t1 + load_x(r0 + 1u, k) * q;
            t2 = t2 + load_x(r0 + 2u, k) * q;
            t3 = t3 + load_x(r0 + 3u, k) * q;
            t4 = t4 + load_x(r0 + 4u, k) * q;
            t5 = t5 + load_x(r0 + 5u, k) * q;
            t6 = t6 + load_x(r0 + 6u, k) * q;
            t7 = t7 + load_x(r0 + 7u, k) * q;
        }"#;
/// Unscaled, re-centred Q4_0 quants (q - 8) k..k+3 of chunk row n: `quant::pack_for_gpu`
/// puts quants i..i+7 in word i/8, lowest nibble first, so they are one half-word.
const Q_Q4_0: &str = r#"
fn load_q(n: u32, k: u32) -> vec4<f32> {
    let i = min(n, params.n_rows - 1u) * params.k + k;
    let h = w[i / 8u] >> ((i % 8u) * 4u);
    return vec4<f32>(vec4<u32>(h, h >> 4u, h >> 8u, h >> 12u) & vec4<u32>(15u)) - 8.0;
}"#;

/// The f16 scale of block b (two to a word), and of block kb of chunk row n (rows past
/// the chunk clamp, not branch: their results are never stored, and branch-free loads
/// were 2x faster on SwiftShader).
const SCALES: &str = r#"
fn block_scale(b: u32) -> f32 {
    let pair = unpack2x16float(scales[b / 2u]);
    return select(pair.x, pair.y, (b & 1u) == 1u);
}

fn col_scale(n: u32, kb: u32) -> f32 {
    return block_scale(min(n, params.n_rows - 1u) * (params.k / 32u) + kb);
}"#;

/// A block format's `load_q` (unscaled quants) and `col_scale`.
fn quant_loaders(storage: StorageType) -> String {
    match storage {
        StorageType::Q8_0 => format!("{SCALES}\n{Q8_UNPACK}\n{Q_Q8_0}"),
        _ => format!("{SCALES}\n{Q_Q4_0}"),
    }
}

/// Bindings 2.. (x, w, block scales, params) and the loaders of x and w (`load_x`, and
/// `load_w` or, for block formats, `load_q` + `col_scale`).
fn operands(x_vec4: bool, storage: StorageType, w_vec4: bool, f16: bool) -> (String, String) {
    let x_ty = if x_vec4 { "array<vec4<f32>>" } else { "array<f32>" };
    let (w_decl, loader) = match storage {
        StorageType::Q8_0 | StorageType::Q4_0 => ("array<u32>", quant_loaders(storage)),
        StorageType::F16 if f16 => ("array<vec4<f16>>", W_F16_NATIVE.to_string()),
        StorageType::F16 => ("array<vec2<u32>>", W_F16.to_string()),
        _ if w_vec4 => ("array<vec4<f32>>", W_F32_VEC4.to_string()),
        _ => ("array<f32>", W_F32_SCALAR.to_string()),
    };
    (operand_bindings(x_ty, w_decl, storage.is_quantized()), format!("{}\n{W_AT_ROWS}\n{loader}", if x_vec4 { X_VEC4 } else { X_SCALAR }))
}

/// `linear_q.wgsl`'s x in f32: bound as vec4 (K is a multiple of 32), sums scaled by the
/// columns' scales.
const X_F32_OPERAND: &str = r#"
@group(0) @binding(2) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> params: Params;

fn load_x(m: u32, k: u32) -> vec4<f32> {
    return x[(min(m, params.m - 1u) * params.k + k) / 4u];
}"#;
const SCALED_F32: &str = r#"
fn scaled(t: vec4<f32>, s: vec4<f32>, m: u32, kb: u32) -> vec4<f32> {
    return t * s;
}"#;

/// The fast precision's Q8_0 linear (`linear_q8dot`): x as int8 blocks (quantize_q8.wgsl,
/// bound at 2, their f32 scales at 5), each block's sums exact in i32 through
/// `dot4I8Packed`, then scaled by the weight's and the activation's scales.
const X_INT8_OPERAND: &str = r#"
@group(0) @binding(2) var<storage, read_write> xq: array<u32>;
@group(0) @binding(5) var<storage, read_write> xd: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

fn x_word(m: u32, i: u32) -> u32 {
    return xq[min(m, params.m - 1u) * (params.k / 4u) + i];
}"#;
const SCALED_INT8: &str = r#"
fn scaled(t: vec4<i32>, s: vec4<f32>, m: u32, kb: u32) -> vec4<f32> {
    return vec4<f32>(t) * s * xd[min(m, params.m - 1u) * (params.k / 32u) + kb];
}"#;
const Q8_WORDS: &str = r#"
fn w_word(n: u32, i: u32) -> u32 {
    return w[min(n, params.n_rows - 1u) * (params.k / 4u) + i];
}

fn dots(a: u32, q: vec4<u32>) -> vec4<i32> {
    return vec4<i32>(dot4I8Packed(a, q.x), dot4I8Packed(a, q.y), dot4I8Packed(a, q.z), dot4I8Packed(a, q.w));
}"#;
/// A block's integer sums: 8 words of 4 quants, each weight word serving 8 rows.
const SUMS_INT8: &str = r#"
        for (var j = 0u; j < 8u; j = j + 1u) {
            let i = kb * 8u + j;
            let q = vec4<u32>(w_word(c0, i), w_word(c0 + 1u, i), w_word(c0 + 2u, i), w_word(c0 + 3u, i));
            t0 = t0 + dots(x_word(r0 + 0u, i), q);
            t1 = t1 + dots(x_word(r0 + 1u, i), q);
            t2 = t2 + dots(x_word(r0 + 2u, i), q);
            t3 = t3 + dots(x_word(r0 + 3u, i), q);
            t4 = t4 + dots(x_word(r0 + 4u, i), q);
            t5 = t5 + dots(x_word(r0 + 5u, i), q);
            t6 = t6 + dots(x_word(r0 + 6u, i), q);
            t7 = t7 + dots(x_word(r0 + 7u, i), q);
        }"#;

/// `linear_q.wgsl` for a block format: f32 x, or (`int8`, Q8_0 only) the fast precision's
/// int8 x.
fn quant_source(storage: StorageType, int8: bool) -> String {
    let loaders = if int8 { format!("{SCALES}\n{Q8_WORDS}") } else { quant_loaders(storage) };
    let fills: [(&str, &str); 5] = if int8 {
        [("X_OPERAND", X_INT8_OPERAND), ("SCALED", SCALED_INT8), ("LOAD_Q", &loaders), ("SUM", "vec4<i32>"), ("BLOCK_SUMS", SUMS_INT8)]
    } else {
        [("X_OPERAND", X_F32_OPERAND), ("SCALED", SCALED_F32), ("LOAD_Q", &loaders), ("SUM", "vec4<f32>"), ("BLOCK_SUMS", SUMS)]
    };
    splice(include_str!("linear_q.wgsl"), &fills)
}

/// The simple kernel for a storage type: `linear_q.wgsl` for block formats (x as vec4),
/// else `linear.wgsl`.
fn source(x_vec4: bool, storage: StorageType, w_vec4: bool, f16: bool) -> String {
    if storage.is_quantized() {
        return quant_source(storage, false);
    }
    let (bindings, loaders) = operands(x_vec4, storage, w_vec4, f16);
    let src = splice(include_str!("linear.wgsl"), &[("BINDINGS", &bindings), ("LOADERS", &loaders)]);
    enable_f16(src, storage == StorageType::F16 && f16)
}

/// Tiles of TILE_M rows x 64 columns, x along y and weight rows along x.
const TILED_ORIGIN: &str = r#"
fn tile_origin(wid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    return vec2<u32>(wid.y * TILE_M, wid.x * TILE_N);
}"#;
/// Bias, then the chunk's columns of row m.
const TILED_EPILOGUE: &str = r#"
fn finish(m: u32, n: u32, v: vec4<f32>) {
    if (m >= params.m) {
        return;
    }
    let base = m * params.n + params.n_off;
    for (var j = 0u; j < 4u; j = j + 1u) {
        let c = n + j;
        if (c < params.n_rows) {
            var r = v[j];
            if (params.has_bias != 0u) {
                r = r + bias[params.n_off + c];
            }
            out[base + c] = r;
        }
    }
}"#;

/// The tiled kernel (`gemm_tiled.wgsl`) in tiles of `tile_rows` rows over the same
/// operands, block formats scaled as they are staged; `f16_tiles`: the fast precision's f16
/// tiles and products.
fn tiled_source(x_vec4: bool, storage: StorageType, w_vec4: bool, f16: bool, f16_tiles: bool, tile_rows: usize) -> String {
    let (bindings, loaders) = operands(x_vec4, storage, w_vec4, f16);
    let b = if storage.is_quantized() { "load_q(n, k) * col_scale(n, k / 32u)" } else { "load_w(n, k)" };
    let tiles = format!("{loaders}\n{}\n{}", tile_loader("tile_a", "m", "load_x(m, k)"), tile_loader("tile_b", "n", b));
    let bindings = format!("{OUT_BIAS_BINDINGS}{bindings}");
    let t = if f16_tiles { "f16" } else { "f32" };
    let rows = (tile_rows / 16).to_string();
    let src =
        splice(include_str!("gemm_tiled.wgsl"), &[("BINDINGS", &bindings), ("LOADERS", &tiles), ("ORIGIN", TILED_ORIGIN), ("EPILOGUE", TILED_EPILOGUE), ("ROWS", &rows), ("T", t)]);
    enable_f16(src, (storage == StorageType::F16 && f16) || f16_tiles)
}

/// The fast precision's tiled Q8_0 kernel (`linear_q8dot_tiled.wgsl`) in tiles of
/// `tile_rows` rows.
fn int8_tiled_source(tile_rows: usize) -> String {
    splice(include_str!("linear_q8dot_tiled.wgsl"), &[("EPILOGUE", TILED_EPILOGUE), ("ROWS", &(tile_rows / 16).to_string())])
}

/// `x [.., K] @ w^T (+ bias)` for w [N, K] in any storage, one dispatch per chunk.
pub fn linear(kb: &mut KernelBuilder, cx: &NodeCx) -> Result<(), OpError> {
    let k = cx.in_shapes[1][1];
    let n = cx.in_shapes[1][0];
    let m = cx.node.numel() / n;
    let (storage, chunks) = cx.weight_chunks(1);
    let x = cx.f32_input(0)?;
    let bias = if cx.inputs.len() > 2 { Some(cx.f32_input(2)?) } else { None };
    let x_vec4 = k.is_multiple_of(4);
    let f16 = storage == StorageType::F16 && kb.has_f16();
    let fast = kb.ctx.fast_arithmetic();
    let int8 = fast.int8_dot && storage == StorageType::Q8_0;
    let tiled = kb.ctx.tiled_kernels();
    let f16_tiles = tiled && fast.f16_tiles && !int8;
    let key = if int8 {
        format!("linear_q8dot{}", if tiled { "_tiled" } else { "" })
    } else {
        let tiles = if f16_tiles {
            "tiled_f16_"
        } else if tiled {
            "tiled_"
        } else {
            ""
        };
        format!("linear_{tiles}{}{}_{}", storage.name(), if f16 { "_native" } else { "" }, if x_vec4 { "vec4" } else { "scalar" })
    };
    // Over the binding limit (the UNet's GEGLU projection at 768 px): windows of rows.
    let windows = if fits(kb, &[&x, &cx.out]) { whole(m) } else { row_spans(kb, cx, m, &[k, n])? };
    let bias_or_placeholder = bias.clone().unwrap_or_else(|| kb.placeholder());
    for w in windows {
        let (xw, ow) = (x.window(w.start * k, w.len() * k), cx.out.window(w.start * n, w.len() * n));
        let m = w.len();
        // The fast precision's int8 x: quantized once per window, read by every chunk.
        let x_int8 = if int8 { Some(quantize_rows(kb, &xw, m * k)?) } else { None };
        // The tiled kernels' height follows M (tiles.rs).
        let tile_m = tile_rows(m, kb.ctx.forced_tile_rows());
        let key = if tiled { format!("{key}_m{tile_m}") } else { key.clone() };
        for (rows, values, scales) in &chunks {
            let mut b: Vec<Buf> = vec![ow.clone(), bias_or_placeholder.clone(), x_int8.as_ref().map_or(xw.clone(), |q| q.0.clone()), values.clone()];
            if let Some(s) = scales {
                b.push(s.clone());
            }
            if let Some((_, xd)) = &x_int8 {
                b.push(xd.clone());
            }
            let params = Linear { m: m as u32, k: k as u32, n: n as u32, n_off: rows.start as u32, n_rows: rows.len() as u32, has_bias: bias.is_some() as u32 };
            // Tiles: tile_m x 64; linear_q.wgsl covers 8 rows per invocation, linear.wgsl 4
            // (8x8 invocations of 4 columns).
            let (rows_per_group, cols_per_group) = match (tiled, storage.is_quantized()) {
                (true, _) => (tile_m as u32, 64),
                (false, true) => (64, 32),
                (false, false) => (32, 32),
            };
            let groups = [(rows.len() as u32).div_ceil(cols_per_group), (m as u32).div_ceil(rows_per_group), 1];
            if groups[1] > 65535 || groups[0] > 65535 {
                return Err(OpError::Limits { node: cx.node.label.clone(), message: format!("{m}x{n} output needs more than 65535 workgroups per axis") });
            }
            let body = || match (int8, tiled) {
                (true, true) => int8_tiled_source(tile_m),
                (true, false) => quant_source(storage, true),
                (false, true) => tiled_source(x_vec4, storage, x_vec4, f16, f16_tiles, tile_m),
                (false, false) => source(x_vec4, storage, x_vec4, f16),
            };
            kb.dispatch(&key, body, b, &params, groups)?;
        }
    }
    Ok(())
}

/// A linear's input rows (x bound as vec4) as `quantize_q8.wgsl` reads them.
const QUANTIZE_ROWS: &str = r#"
@group(0) @binding(2) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> params: Params;

fn blocks() -> u32 {
    return params.blocks;
}

fn load(b: u32, i: u32) -> vec4<f32> {
    return x[b * 8u + i];
}"#;

fn quantize_source() -> String {
    splice(include_str!("quantize_q8.wgsl"), &[("INPUT", QUANTIZE_ROWS)])
}

/// `len` values of x (whole blocks of 32) as the fast precision's int8 blocks, in scratch
/// shared by every linear of the program: (quants, 4 to a word; their f32 scales).
fn quantize_rows(kb: &mut KernelBuilder, x: &Buf, len: usize) -> Result<(Buf, Buf), OpError> {
    let blocks = len / 32;
    let xq = kb.shared_scratch("int8 activations", len as u64);
    let xd = kb.shared_scratch("int8 activation scales", blocks as u64 * 4);
    let params = QuantizeQ8 { blocks: blocks as u32 };
    kb.dispatch("quantize_q8", quantize_source, vec![xq.clone(), xd.clone(), x.clone()], &params, grid((blocks as u32).div_ceil(64)))?;
    Ok((xq, xd))
}

/// Every variant `linear` can make: (key, WGSL).
#[cfg(all(test, not(target_arch = "wasm32")))]
pub fn variants() -> Vec<(String, String)> {
    use super::kernel_source;
    use super::tiles::TILE_HEIGHTS;
    let mut out = vec![];
    for storage in [StorageType::F32, StorageType::F16, StorageType::Q8_0, StorageType::Q4_0] {
        for x_vec4 in [false, true] {
            for f16 in [false, true] {
                if f16 && storage != StorageType::F16 {
                    continue;
                }
                let name = format!("{}{}_{x_vec4}", storage.name(), if f16 { "_native" } else { "" });
                out.push((format!("linear_{name}"), kernel_source::<Linear>(&source(x_vec4, storage, x_vec4, f16))));
                for rows in TILE_HEIGHTS {
                    out.push((format!("linear_tiled_{name}_m{rows}"), kernel_source::<Linear>(&tiled_source(x_vec4, storage, x_vec4, f16, false, rows))));
                    out.push((format!("linear_tiled_f16_{name}_m{rows}"), kernel_source::<Linear>(&tiled_source(x_vec4, storage, x_vec4, f16, true, rows))));
                }
            }
        }
    }
    out.push(("linear_q8dot".into(), kernel_source::<Linear>(&quant_source(StorageType::Q8_0, true))));
    for rows in TILE_HEIGHTS {
        out.push((format!("linear_q8dot_tiled_m{rows}"), kernel_source::<Linear>(&int8_tiled_source(rows))));
    }
    out.push(("quantize_q8".into(), kernel_source::<QuantizeQ8>(&quantize_source())));
    out
}
