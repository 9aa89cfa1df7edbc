// The tiled GEMM of hardware GPUs (`KernelChoice::Tiled`): out[M, N] = A[M, K] B[N, K]^T in
// 64x64 output tiles, one per workgroup of 16x16 invocations that each accumulate a 4x4
// block. K advances 16 at a time through workgroup memory: every value the workgroup loads
// from storage serves 64 outputs, where the simple kernels load it once per invocation.
// Spliced per op (linear.rs, conv.rs):
// - BINDINGS, and LOADERS defining tile_a(m, k) and tile_b(n, k): values k..k+3 of row m
//   of A and row n of B, zero past K (rows past the end may read anything: never stored);
// - ORIGIN: tile_origin(wid, nwg) -> vec2(first row, first column) of this workgroup's tile;
// - EPILOGUE: finish(m, n, v) writes outputs n..n+3 of row m (bias, bounds, layout);
// - T: the tiles' element type and the products': f32, or f16 for the fast precision
//   (`Precision::Fast` on a device with `shader-f16`): each K step's 16 products are summed
//   in T, and those sums in f32, so f16 rounding grows with 16 terms, not with K.

//{{BINDINGS}}

//{{LOADERS}}

//{{ORIGIN}}

//{{EPILOGUE}}

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;

// K-major, so that an invocation's 4 rows (or columns) at one k are adjacent.
var<workgroup> a_tile: array<{{T}}, 1024>;
var<workgroup> b_tile: array<{{T}}, 1024>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let origin = tile_origin(wid, nwg);
    // Staging: invocation li loads values kq..kq+3 of tile row `row`, of A and of B.
    let row = li / 4u;
    let kq = (li % 4u) * 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // No early exit: every invocation takes part in every barrier.
    for (var k0 = 0u; k0 < params.k; k0 = k0 + TILE_K) {
        let a = tile_a(origin.x + row, k0 + kq);
        let b = tile_b(origin.y + row, k0 + kq);
        for (var j = 0u; j < 4u; j = j + 1u) {
            a_tile[(kq + j) * TILE + row] = {{T}}(a[j]);
            b_tile[(kq + j) * TILE + row] = {{T}}(b[j]);
        }
        workgroupBarrier();
        var p0 = vec4<{{T}}>(0.0);
        var p1 = vec4<{{T}}>(0.0);
        var p2 = vec4<{{T}}>(0.0);
        var p3 = vec4<{{T}}>(0.0);
        for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
            let ai = kk * TILE + lid.y * 4u;
            let bi = kk * TILE + lid.x * 4u;
            let av = vec4<{{T}}>(a_tile[ai], a_tile[ai + 1u], a_tile[ai + 2u], a_tile[ai + 3u]);
            let bv = vec4<{{T}}>(b_tile[bi], b_tile[bi + 1u], b_tile[bi + 2u], b_tile[bi + 3u]);
            p0 = p0 + av.x * bv;
            p1 = p1 + av.y * bv;
            p2 = p2 + av.z * bv;
            p3 = p3 + av.w * bv;
        }
        acc0 = acc0 + vec4<f32>(p0);
        acc1 = acc1 + vec4<f32>(p1);
        acc2 = acc2 + vec4<f32>(p2);
        acc3 = acc3 + vec4<f32>(p3);
        workgroupBarrier();
    }
    let m = origin.x + lid.y * 4u;
    let n = origin.y + lid.x * 4u;
    finish(m, n, acc0);
    finish(m + 1u, n, acc1);
    finish(m + 2u, n, acc2);
    finish(m + 3u, n, acc3);
}
