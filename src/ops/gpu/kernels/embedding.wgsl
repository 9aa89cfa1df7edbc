// Embedding lookup, one invocation per output value: out[n, c] = table[ids[n], c] for the ids
// that fall in this dispatch's chunk of table rows [row0, row0 + rows). Other ids are left to
// the dispatches of their chunks; ids past the table (>= V) get zeros from the first chunk's
// dispatch, so a bad token id yields a zero vector instead of reading out of bounds.
// params: [count (ids * D), D, row0, rows, V, zero_fill].

@group(0) @binding(0) var<storage, read_write> ids: array<u32>;
@group(0) @binding(1) var<storage, read_write> table: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if (i >= pu(0u)) {
        return;
    }
    let D = pu(1u);
    let id = ids[i / D];
    let row0 = pu(2u);
    if (id >= row0 && id - row0 < pu(3u)) {
        out[i] = table[(id - row0) * D + i % D];
    } else if (id >= pu(4u) && pu(5u) != 0u) {
        out[i] = 0.0;
    }
}
