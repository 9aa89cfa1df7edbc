//! Convolution's tiled kernel (`gemm_tiled.wgsl`, `KernelChoice::Tiled`): the same
//! implicit GEMM as conv.rs, with the weight loaders, store and dispatch plan of the simple
//! kernel; only how x is gathered and the tile's corners are its own.

use super::conv::{weight_loader, STORE_PIXEL, W_AT_CONV};
use super::loaders::{enable_f16, operand_bindings, tile_loader, OUT_BIAS_BINDINGS};
use super::params::Conv2d;
use super::splice;
use super::tiles::tile_rows;
use crate::error::OpError;
use crate::ops::gpu::builder::{grid, Buf, KernelBuilder};
use crate::ops::quant::StorageType;

/// The tiled kernel's A: taps k..k+3 of output pixel m, gathered (zero in the padding and
/// past K). Divisions, not the simple kernel's incremental taps: a hardware GPU has the
/// ALU to spare, and the 4 taps are staged once for 64 channels.
const TILED_GATHER: &str = r#"
fn tile_a(m: u32, k: u32) -> vec4<f32> {
    let plane = params.ho * params.wo;
    let mm = min(m, params.m - 1u);
    let r = mm % plane;
    let iy0 = i32((r / params.wo) * params.stride) - i32(params.pad_top);
    let ix0 = i32((r % params.wo) * params.stride) - i32(params.pad_left);
    let base = (mm / plane) * params.c * params.h * params.w;
    let taps = params.kh * params.kw;
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j = j + 1u) {
        let kk = k + j;
        let t = kk % taps;
        let iy = iy0 + i32(t / params.kw);
        let ix = ix0 + i32(t % params.kw);
        if (kk < params.k && u32(iy) < params.h && u32(ix) < params.w) {
            v[j] = x[base + ((kk / taps) * params.h + u32(iy)) * params.w + u32(ix)];
        }
    }
    return v;
}"#;
/// Tiles of TILE_M pixels x 64 channels over a flat grid, channel tiles fastest.
const TILED_ORIGIN: &str = r#"
fn tile_origin(wid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    let flat = flat_workgroup(wid, nwg);
    return vec2<u32>((flat / params.tiles_n) * TILE_M, (flat % params.tiles_n) * TILE_N);
}"#;
const TILED_EPILOGUE: &str = r#"
fn finish(m: u32, c0: u32, v: vec4<f32>) {
    var b = vec4<f32>(0.0);
    if (params.has_bias != 0u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            b[j] = bias[params.bias_off + min(c0 + j, params.n_rows - 1u)];
        }
    }
    store_pixel(m, c0, v + b);
}"#;

/// The tiled kernel (`gemm_tiled.wgsl`) in tiles of `tile_rows` pixels: A gathered from x
/// (bound as f32), B the weight rows through the simple kernel's loaders, block formats
/// scaled as they are staged; `f16_tiles`: the fast precision's f16 tiles and products.
pub(super) fn tiled_source(storage: StorageType, w_vec4: bool, f16: bool, f16_tiles: bool, tile_rows: usize) -> String {
    let (w_decl, w_loader) = weight_loader(storage, w_vec4, f16);
    let bindings = format!("{OUT_BIAS_BINDINGS}{}", operand_bindings("array<f32>", w_decl, storage.is_quantized()));
    let b = if storage.is_quantized() { "load_w(n, k) * col_scale(n, k / 32u)" } else { "load_w(n, k)" };
    let loaders = format!("{W_AT_CONV}\n{w_loader}\n{TILED_GATHER}\n{}", tile_loader("tile_b", "n", b));
    let epilogue = format!("{STORE_PIXEL}\n{TILED_EPILOGUE}");
    let rows = (tile_rows / 16).to_string();
    let src = splice(
        include_str!("gemm_tiled.wgsl"),
        &[("BINDINGS", &bindings), ("LOADERS", &loaders), ("ORIGIN", TILED_ORIGIN), ("EPILOGUE", &epilogue), ("ROWS", &rows), ("T", if f16_tiles { "f16" } else { "f32" })],
    );
    enable_f16(src, (storage == StorageType::F16 && f16) || f16_tiles)
}

/// A conv's taps, pixel by pixel, as `quantize_q8.wgsl` reads them: gathered (zero in the
/// padding) by the tiled kernel's `tile_a`.
const QUANTIZE_TAPS: &str = r#"
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

fn blocks() -> u32 {
    return params.m * (params.k / 32u);
}

fn load(b: u32, i: u32) -> vec4<f32> {
    let per_pixel = params.k / 32u;
    return tile_a(b / per_pixel, (b % per_pixel) * 32u + i * 4u);
}"#;

/// The fast precision's int8 conv (Q8_0 weights, tiled kernels): the taps gathered and
/// quantized per block of 32 (`quantize_q8.wgsl`), then multiplied by the weight rows on
/// `dot4I8Packed` by the linear's tiled int8 kernel with the conv's bias and NCHW store.
/// Both take the `Conv2d` parameters; the GEMM's tiles have `tile_rows` pixels.
/// (quantizer, GEMM)
pub(super) fn int8_sources(tile_rows: usize) -> (String, String) {
    let im2col = splice(include_str!("quantize_q8.wgsl"), &[("INPUT", &format!("{QUANTIZE_TAPS}\n{TILED_GATHER}"))]);
    let rows = (tile_rows / 16).to_string();
    let gemm = splice(include_str!("linear_q8dot_tiled.wgsl"), &[("EPILOGUE", &format!("{STORE_PIXEL}\n{TILED_EPILOGUE}")), ("ROWS", &rows)]);
    (im2col, gemm)
}

/// The largest int8 input (pixels x taps, one byte each) the fast precision gathers for a
/// conv; larger ones (the VAE's full-resolution convs) keep the f32 path rather than hold
/// hundreds of MB of scratch.
const INT8_IM2COL_BYTES: u64 = 64 << 20;

/// Records the int8 conv (`int8_sources`) of a whole, unsplit conv with `params`, bound to
/// [out, bias, x, weight quants] and the weight's scales; false (nothing recorded) when its
/// gathered input would be too large and the f32 path should run instead.
pub(super) fn int8_conv(kb: &mut KernelBuilder, [out, bias, x, values]: [&Buf; 4], scales: &Option<Buf>, params: &Conv2d) -> Result<bool, OpError> {
    let (m, k) = (params.m as u64, params.k as u64);
    let tile_m = tile_rows(m as usize, kb.ctx.forced_tile_rows());
    let (tiles_m, tiles_n) = (m.div_ceil(tile_m as u64), (params.n_rows as u64).div_ceil(64));
    if m * k > INT8_IM2COL_BYTES.min(kb.max_binding) || tiles_m > 65535 || tiles_n > 65535 {
        return Ok(false);
    }
    let xq = kb.shared_scratch("int8 activations", m * k);
    let xd = kb.shared_scratch("int8 activation scales", m * k / 32 * 4);
    let blocks = (m * k / 32) as u32;
    kb.dispatch("im2col_q8", || int8_sources(tile_m).0, vec![xq.clone(), xd.clone(), x.clone()], params, grid(blocks.div_ceil(64)))?;
    let mut bindings = vec![out.clone(), bias.clone(), xq, values.clone()];
    bindings.extend(scales.clone());
    bindings.push(xd);
    kb.dispatch(&format!("conv2d_q8dot_tiled_m{tile_m}"), || int8_sources(tile_m).1, bindings, params, [tiles_n as u32, tiles_m as u32, 1])?;
    Ok(true)
}

/// Every tiled conv variant: (key, WGSL).
#[cfg(all(test, not(target_arch = "wasm32")))]
pub fn variants() -> Vec<(String, String)> {
    let mut out = vec![("im2col_q8".to_string(), super::kernel_source::<super::params::Conv2d>(&int8_sources(64).0))];
    for rows in super::tiles::TILE_HEIGHTS {
        out.push((format!("conv2d_q8dot_tiled_m{rows}"), super::kernel_source::<super::params::Conv2d>(&int8_sources(rows).1)));
    }
    for storage in [StorageType::F32, StorageType::F16, StorageType::Q8_0, StorageType::Q4_0] {
        for w_vec4 in [false, true] {
            for f16 in [false, true] {
                for f16_tiles in [false, true] {
                    for rows in super::tiles::TILE_HEIGHTS {
                        if !(f16 && storage != StorageType::F16) {
                            let src = tiled_source(storage, w_vec4, f16, f16_tiles, rows);
                            out.push((format!("conv2d_tiled_{}_{w_vec4}_{f16}_{f16_tiles}_m{rows}", storage.name()), super::kernel_source::<super::params::Conv2d>(&src)));
                        }
                    }
                }
            }
        }
    }
    out
}
