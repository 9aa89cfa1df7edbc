// Indices of the k largest values of each row, largest first (argmax is k = 1). One workgroup
// per row. Ranking: larger value first, then smaller index, so ties resolve to the first index
// like the CPU's argmax; NaN ranks arbitrarily.
// Each invocation keeps the best candidate among its strided share of the row that ranks after
// everything already taken; each round a tree reduction picks the best candidate, and only the
// invocation that owned it rescans its share. Cost: one pass over the row plus k rescans of
// n / 256 values, with no scratch beyond 2 KiB of workgroup memory.
// params: params.rs `TopK`.

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

struct Cand { v: f32, i: u32 }

const NONE: u32 = 0xffffffffu;
const WG: u32 = 256u;

var<workgroup> red: array<Cand, 256>;

// Whether a ranks before b; a missing candidate ranks after every real one.
fn before(a: Cand, b: Cand) -> bool {
    if (a.i == NONE) {
        return false;
    }
    if (b.i == NONE) {
        return true;
    }
    return a.v > b.v || (a.v == b.v && a.i < b.i);
}

// Best of this invocation's values that rank after `taken` (all of them when taken.i is NONE).
fn scan(base: u32, n: u32, lid: u32, taken: Cand) -> Cand {
    var best = Cand(0.0, NONE);
    for (var j = lid; j < n; j = j + WG) {
        let c = Cand(x[base + j], j);
        if ((taken.i == NONE || before(taken, c)) && before(c, best)) {
            best = c;
        }
    }
    return best;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wid, nwg);
    if (row >= params.rows) {
        return;
    }
    let n = params.n;
    let k = params.k;
    let base = row * n;
    var cand = scan(base, n, lid, Cand(0.0, NONE));
    for (var r = 0u; r < k; r = r + 1u) {
        red[lid] = cand;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s = s / 2u) {
            if (lid < s && before(red[lid + s], red[lid])) {
                red[lid] = red[lid + s];
            }
            workgroupBarrier();
        }
        let win = red[0];
        // Everyone has read the winner before the next round overwrites red.
        workgroupBarrier();
        if (lid == 0u) {
            out[row * k + r] = win.i;
        }
        if (cand.i != NONE && cand.i == win.i) {
            cand = scan(base, n, lid, win);
        }
    }
}
