// GroupNorm statistics in parts, for few large groups (one workgroup per group would leave
// most of a GPU idle): one workgroup per (set, part) takes its slice's mean and sum of
// squared deviations from it (moments.wgsl).
// params: params.rs `GroupNormStats`; stats[2 (first + id)] = mean,
// [2 (first + id) + 1] = M2 (`first`: the window's first set, for a map bound in windows).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lanes: Lanes) {
    let lid = lanes.index;
    let id = flat_workgroup(wid, nwg);
    if (id >= params.count) {
        return;
    }
    let len = params.group_len;
    let start = (id % params.parts) * params.part_len;
    let n = min(start + params.part_len, len) - start;
    let base = (id / params.parts) * len + start;
    let m = slice_moments(base, n, lanes);
    if (lid == 0u) {
        let o = params.first + id;
        stats[2u * o] = m.x;
        stats[2u * o + 1u] = m.y;
    }
}
