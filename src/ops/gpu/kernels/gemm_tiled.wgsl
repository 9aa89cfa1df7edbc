// The tiled GEMM of hardware GPUs (`KernelChoice::Tiled`): out[M, N] = A[M, K] B[N, K]^T in
// TILE_M x 64 output tiles, one per workgroup of 16x16 invocations that each accumulate
// ROWS rows x 4 columns. K advances 16 at a time through workgroup memory: every value the
// workgroup loads from storage serves TILE_M or 64 outputs, where the simple kernels load
// it once per invocation. ROWS is 4 (64-row tiles), or 2 / 1 where M is small (tiles.rs):
// the UNet's deepest level at 256 px has 16 positions and cross-attention 77 tokens, and a
// 64-row tile would compute 64 rows for them regardless.
// Spliced per op (linear.rs, conv.rs):
// - BINDINGS, and LOADERS defining tile_a(m, k) and tile_b(n, k): values k..k+3 of row m
//   of A and row n of B, zero past K (rows past the end may read anything: never stored);
// - ORIGIN: tile_origin(wid, nwg) -> vec2(first row, first column) of this workgroup's tile;
// - EPILOGUE: finish(m, n, v) writes outputs n..n+3 of row m (bias, bounds, layout);
// - ROWS: rows per invocation (1, 2 or 4);
// - T: the tiles' element type and the products': f32, or f16 for the fast precision
//   (`Precision::Fast` on a device with `shader-f16`): each K step's 16 products are summed
//   in T, and those sums in f32, so f16 rounding grows with 16 terms, not with K.

//{{BINDINGS}}

//{{LOADERS}}

//{{ORIGIN}}

//{{EPILOGUE}}

const ROWS: u32 = {{ROWS}}u;
const TILE_M: u32 = 16u * ROWS;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

// K-major, so that an invocation's rows (or 4 columns) at one k are adjacent.
var<workgroup> a_tile: array<{{T}}, TILE_M * TILE_K>;
var<workgroup> b_tile: array<{{T}}, TILE_N * TILE_K>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let origin = tile_origin(wid, nwg);
    // Staging: invocation li loads values kq..kq+3 of tile row `row`: of B always, of A
    // when the tile has that row (all 256 invocations for 64-row tiles).
    let row = li / 4u;
    let kq = (li % 4u) * 4u;
    // Zeroed by explicit stores, here and per K step: in Chrome 156 on SwiftShader a
    // zero-initialized array declared in the loop body kept the previous iteration's sums.
    var acc: array<vec4<f32>, ROWS>;
    for (var r = 0u; r < ROWS; r = r + 1u) {
        acc[r] = vec4<f32>(0.0);
    }
    // No early exit: every invocation takes part in every barrier.
    for (var k0 = 0u; k0 < params.k; k0 = k0 + TILE_K) {
        if (row < TILE_M) {
            let a = tile_a(origin.x + row, k0 + kq);
            for (var j = 0u; j < 4u; j = j + 1u) {
                a_tile[(kq + j) * TILE_M + row] = {{T}}(a[j]);
            }
        }
        let b = tile_b(origin.y + row, k0 + kq);
        for (var j = 0u; j < 4u; j = j + 1u) {
            b_tile[(kq + j) * TILE_N + row] = {{T}}(b[j]);
        }
        workgroupBarrier();
        var p: array<vec4<{{T}}>, ROWS>;
        for (var r = 0u; r < ROWS; r = r + 1u) {
            p[r] = vec4<{{T}}>(0.0);
        }
        for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
            let ai = kk * TILE_M + lid.y * ROWS;
            let bi = kk * TILE_N + lid.x * 4u;
            let bv = vec4<{{T}}>(b_tile[bi], b_tile[bi + 1u], b_tile[bi + 2u], b_tile[bi + 3u]);
            for (var r = 0u; r < ROWS; r = r + 1u) {
                p[r] = p[r] + a_tile[ai + r] * bv;
            }
        }
        for (var r = 0u; r < ROWS; r = r + 1u) {
            acc[r] = acc[r] + vec4<f32>(p[r]);
        }
        workgroupBarrier();
    }
    let m = origin.x + lid.y * ROWS;
    let n = origin.y + lid.x * 4u;
    for (var r = 0u; r < ROWS; r = r + 1u) {
        finish(m + r, n, acc[r]);
    }
}
