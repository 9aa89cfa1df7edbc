// The fast precision's Q8_0 linear with workgroup-memory tiles (`KernelChoice::Tiled`):
// out[M, N] = x[M, K] w[N, K]^T with x as int8 blocks (quantize_q8.wgsl) and w as Q8_0,
// in TILE_M x 64 output tiles (TILE_M = 64, 32 or 16 as M calls for, tiles.rs), one per
// workgroup of 16x16 invocations that each accumulate ROWS rows x 4 columns. K advances
// one block of 32 at a time: the tile's rows of x and 64 rows of w are staged as 8 words
// of 4 quants each, with their scales, so every word loaded from storage serves TILE_M or
// 64 dot4I8Packed products. A block's sums are exact in i32, then scaled by both scales
// into f32 accumulators, as linear_q.wgsl's int8 fill does.
// params: params.rs `Linear`. K is a multiple of 32.
// Bindings: 0 out, 1 bias (x again when there is none), 2 x quants, 3 w quants,
// 4 w scales (f16 pairs), 5 x scales (f32), 6 params. EPILOGUE brings finish(m, n, v).

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> xq: array<u32>;
@group(0) @binding(3) var<storage, read_write> w: array<u32>;
@group(0) @binding(4) var<storage, read_write> scales: array<u32>;
@group(0) @binding(5) var<storage, read_write> xd: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

//{{EPILOGUE}}

const ROWS: u32 = {{ROWS}}u;
const TILE_M: u32 = 16u * ROWS;
const TILE_N: u32 = 64u;

// Word-major, so that an invocation's rows (or 4 columns) at one word are adjacent.
var<workgroup> a_tile: array<u32, TILE_M * 8u>;
var<workgroup> b_tile: array<u32, TILE_N * 8u>;
var<workgroup> a_scale: array<f32, TILE_M>;
var<workgroup> b_scale: array<f32, TILE_N>;

fn w_scale(n: u32, kb: u32) -> f32 {
    let b = min(n, params.n_rows - 1u) * (params.k / 32u) + kb;
    let pair = unpack2x16float(scales[b / 2u]);
    return select(pair.x, pair.y, (b & 1u) == 1u);
}

fn dots(a: u32, q: vec4<u32>) -> vec4<i32> {
    return vec4<i32>(dot4I8Packed(a, q.x), dot4I8Packed(a, q.y), dot4I8Packed(a, q.z), dot4I8Packed(a, q.w));
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    // Rows of x along y, weight rows along x (as the f32 tiled linear).
    let m0 = wid.y * TILE_M;
    let n0 = wid.x * TILE_N;
    let words = params.k / 4u;
    // Staging: invocation li loads words j and j + 4 of tile row `row`: of w always, of x
    // when the tile has that row.
    let row = li / 4u;
    let j = li % 4u;
    let xm = min(m0 + row, params.m - 1u);
    let wn = min(n0 + row, params.n_rows - 1u);
    // Zeroed by explicit stores, as in gemm_tiled.wgsl (SwiftShader in Chrome 156 kept a
    // loop body's zero-initialized array across iterations).
    var acc: array<vec4<f32>, ROWS>;
    for (var r = 0u; r < ROWS; r = r + 1u) {
        acc[r] = vec4<f32>(0.0);
    }
    // No early exit: every invocation takes part in every barrier.
    for (var kb = 0u; kb < params.k / 32u; kb = kb + 1u) {
        let w0 = kb * 8u;
        if (row < TILE_M) {
            a_tile[j * TILE_M + row] = xq[xm * words + w0 + j];
            a_tile[(j + 4u) * TILE_M + row] = xq[xm * words + w0 + j + 4u];
            if (j == 0u) {
                a_scale[row] = xd[xm * (params.k / 32u) + kb];
            }
        }
        b_tile[j * TILE_N + row] = w[wn * words + w0 + j];
        b_tile[(j + 4u) * TILE_N + row] = w[wn * words + w0 + j + 4u];
        if (j == 0u) {
            b_scale[row] = w_scale(n0 + row, kb);
        }
        workgroupBarrier();
        var t: array<vec4<i32>, ROWS>;
        for (var r = 0u; r < ROWS; r = r + 1u) {
            t[r] = vec4<i32>(0);
        }
        for (var i = 0u; i < 8u; i = i + 1u) {
            let ai = i * TILE_M + lid.y * ROWS;
            let bi = i * TILE_N + lid.x * 4u;
            let q = vec4<u32>(b_tile[bi], b_tile[bi + 1u], b_tile[bi + 2u], b_tile[bi + 3u]);
            for (var r = 0u; r < ROWS; r = r + 1u) {
                t[r] = t[r] + dots(a_tile[ai + r], q);
            }
        }
        let r0 = lid.y * ROWS;
        let c = lid.x * 4u;
        let s = vec4<f32>(b_scale[c], b_scale[c + 1u], b_scale[c + 2u], b_scale[c + 3u]);
        for (var r = 0u; r < ROWS; r = r + 1u) {
            acc[r] = acc[r] + vec4<f32>(t[r]) * s * a_scale[r0 + r];
        }
        workgroupBarrier();
    }
    let m = m0 + lid.y * ROWS;
    let n = n0 + lid.x * 4u;
    for (var r = 0u; r < ROWS; r = r + 1u) {
        finish(m + r, n, acc[r]);
    }
}
