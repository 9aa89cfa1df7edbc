// Nearest codebook row by squared Euclidean distance, first index on ties. One workgroup per
// ROWS rows of z, held in workgroup memory as one vec4 per component (the rows side by side).
// Invocations take groups of 4 consecutive codes, strided by 256 groups: every code value read
// serves 4 rows and every z vector read serves 4 codes. Each keeps its best code per row, then
// a tree reduction per row picks the winner. Distances are sum((z - c)^2), which rounds better
// than the CPU's |c|^2 - 2 z.c; the two agree wherever the nearest code is clearly nearest.
// A codebook split into chunks is searched one dispatch per chunk: K is the chunk's code
// count, code_off its first code; `best` carries each row's best distance between
// dispatches (the first chunk sets it, later ones replace only strictly nearer codes).
// params: params.rs `VqNearest`; D <= 512 (checked on the host).

@group(0) @binding(0) var<storage, read_write> z: array<f32>;
@group(0) @binding(1) var<storage, read_write> codes: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<storage, read_write> best: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

struct Cand { d: f32, i: u32 }

const ROWS: u32 = 4u;
const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;

// zs[d] = component d of the ROWS rows, d < 512 (VQ_MAX_D in misc.rs): 8 KiB, plus 2 KiB for
// the reduction.
var<workgroup> zs: array<vec4<f32>, 512>;
var<workgroup> red: array<Cand, 256>;

// Whether a is nearer than b (smaller distance, then smaller index; missing ranks last).
fn nearer(a: Cand, b: Cand) -> bool {
    if (a.i == NONE) {
        return false;
    }
    if (b.i == NONE) {
        return true;
    }
    return a.d < b.d || (a.d == b.d && a.i < b.i);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let N = params.n;
    let D = params.d;
    let K = params.k;
    let row0 = flat_workgroup(wid, nwg) * ROWS;
    if (row0 >= N) {
        return;
    }
    let rows = min(ROWS, N - row0);
    // Rows past N stay zero (workgroup memory starts zeroed); their results are not stored.
    for (var j = lid; j < rows * D; j = j + WG) {
        zs[j % D][j / D] = z[row0 * D + j];
    }
    workgroupBarrier();
    var best_d = vec4<f32>(0.0);
    var best_i = vec4<u32>(NONE);
    for (var c0 = lid * 4u; c0 < K; c0 = c0 + 4u * WG) {
        // Codes past K read the last code again and are never taken.
        let last = K - 1u;
        let b0 = c0 * D;
        let b1 = min(c0 + 1u, last) * D;
        let b2 = min(c0 + 2u, last) * D;
        let b3 = min(c0 + 3u, last) * D;
        var acc0 = vec4<f32>(0.0);
        var acc1 = vec4<f32>(0.0);
        var acc2 = vec4<f32>(0.0);
        var acc3 = vec4<f32>(0.0);
        for (var d = 0u; d < D; d = d + 1u) {
            let zd = zs[d];
            let e0 = zd - codes[b0 + d];
            let e1 = zd - codes[b1 + d];
            let e2 = zd - codes[b2 + d];
            let e3 = zd - codes[b3 + d];
            acc0 = acc0 + e0 * e0;
            acc1 = acc1 + e1 * e1;
            acc2 = acc2 + e2 * e2;
            acc3 = acc3 + e3 * e3;
        }
        // Codes come in increasing order, so strict < keeps the first on ties.
        var accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
        for (var j = 0u; j < 4u; j = j + 1u) {
            let closer = ((accs[j] < best_d) | (best_i == vec4<u32>(NONE))) & vec4<bool>(c0 + j < K);
            best_d = select(best_d, accs[j], closer);
            best_i = select(best_i, vec4<u32>(c0 + j), closer);
        }
    }
    for (var r = 0u; r < ROWS; r = r + 1u) {
        red[lid] = Cand(best_d[r], best_i[r]);
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s = s / 2u) {
            if (lid < s && nearer(red[lid + s], red[lid])) {
                red[lid] = red[lid + s];
            }
            workgroupBarrier();
        }
        if (lid == 0u && r < rows) {
            let row = row0 + r;
            if (params.first == 1u || red[0].d < best[row]) {
                out[row] = red[0].i + params.code_off;
                best[row] = red[0].d;
            }
        }
        workgroupBarrier();
    }
}
