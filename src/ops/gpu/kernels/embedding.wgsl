// Embedding lookup, one invocation per output value: out[n, c] = table[ids[n], c] for the ids
// that fall in this dispatch's chunk of table rows [row0, row0 + rows). Other ids are left to
// the dispatches of their chunks; ids past the table (>= vocab) get zeros from the first chunk's
// dispatch, so a bad token id yields a zero vector instead of reading out of bounds.
// params: [count (ids * D), D, row0, rows, V, zero_fill].

@group(0) @binding(0) var<storage, read_write> ids: array<u32>;
@group(0) @binding(1) var<storage, read_write> table: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if (i >= params.count) {
        return;
    }
    let D = params.d;
    let id = ids[i / D];
    let row0 = params.row0;
    if (id >= row0 && id - row0 < params.rows) {
        out[i] = table[(id - row0) * D + i % D];
    } else if (id >= params.vocab && params.zero_fill != 0u) {
        out[i] = 0.0;
    }
}
