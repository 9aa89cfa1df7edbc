// The fast precision's Q8_0 linear with workgroup-memory tiles (`KernelChoice::Tiled`):
// out[M, N] = x[M, K] w[N, K]^T with x as int8 blocks (quantize_q8.wgsl) and w as Q8_0,
// in 64x64 output tiles, one per workgroup of 16x16 invocations that each accumulate a 4x4
// block. K advances one block of 32 at a time: the tile's 64 rows of x and 64 rows of w
// are staged as 8 words of 4 quants each, with their scales, so every word loaded from
// storage serves 64 dot4I8Packed products. A block's sums are exact in i32, then scaled by
// both scales into f32 accumulators, as linear_q.wgsl's int8 fill does.
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

const TILE: u32 = 64u;

// Word-major, so that an invocation's 4 rows (or columns) at one word are adjacent.
var<workgroup> a_tile: array<u32, 512>;
var<workgroup> b_tile: array<u32, 512>;
var<workgroup> a_scale: array<f32, 64>;
var<workgroup> b_scale: array<f32, 64>;

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
    let m0 = wid.y * TILE;
    let n0 = wid.x * TILE;
    let words = params.k / 4u;
    // Staging: invocation li loads words j and j + 4 of tile row `row`, of x and of w.
    let row = li / 4u;
    let j = li % 4u;
    let xm = min(m0 + row, params.m - 1u);
    let wn = min(n0 + row, params.n_rows - 1u);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // No early exit: every invocation takes part in every barrier.
    for (var kb = 0u; kb < params.k / 32u; kb = kb + 1u) {
        let w0 = kb * 8u;
        a_tile[j * TILE + row] = xq[xm * words + w0 + j];
        a_tile[(j + 4u) * TILE + row] = xq[xm * words + w0 + j + 4u];
        b_tile[j * TILE + row] = w[wn * words + w0 + j];
        b_tile[(j + 4u) * TILE + row] = w[wn * words + w0 + j + 4u];
        if (j == 0u) {
            a_scale[row] = xd[xm * (params.k / 32u) + kb];
            b_scale[row] = w_scale(n0 + row, kb);
        }
        workgroupBarrier();
        var t0 = vec4<i32>(0);
        var t1 = vec4<i32>(0);
        var t2 = vec4<i32>(0);
        var t3 = vec4<i32>(0);
        for (var i = 0u; i < 8u; i = i + 1u) {
            let ai = i * TILE + lid.y * 4u;
            let bi = i * TILE + lid.x * 4u;
            let q = vec4<u32>(b_tile[bi], b_tile[bi + 1u], b_tile[bi + 2u], b_tile[bi + 3u]);
            t0 = t0 + dots(a_tile[ai], q);
            t1 = t1 + dots(a_tile[ai + 1u], q);
            t2 = t2 + dots(a_tile[ai + 2u], q);
            t3 = t3 + dots(a_tile[ai + 3u], q);
        }
        let r = lid.y * 4u;
        let c = lid.x * 4u;
        let s = vec4<f32>(b_scale[c], b_scale[c + 1u], b_scale[c + 2u], b_scale[c + 3u]);
        acc0 = acc0 + vec4<f32>(t0) * s * a_scale[r];
        acc1 = acc1 + vec4<f32>(t1) * s * a_scale[r + 1u];
        acc2 = acc2 + vec4<f32>(t2) * s * a_scale[r + 2u];
        acc3 = acc3 + vec4<f32>(t3) * s * a_scale[r + 3u];
        workgroupBarrier();
    }
    let m = m0 + lid.y * 4u;
    let n = n0 + lid.x * 4u;
    finish(m, n, acc0);
    finish(m + 1u, n, acc1);
    finish(m + 2u, n, acc2);
    finish(m + 3u, n, acc3);
}
