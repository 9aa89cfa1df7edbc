// GroupNorm statistics in parts, for few large groups (one workgroup per group would leave
// most of a GPU idle): one workgroup per (set, part) takes its slice's mean and sum of
// squared deviations from it (moments.wgsl).
// params: [sets * parts, group_len, parts, part_len, first]; stats[2 (first + id)] = mean,
// [2 (first + id) + 1] = M2 (`first`: the window's first set, for a map bound in windows).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let id = flat_workgroup(wid, nwg);
    if (id >= pu(0u)) {
        return;
    }
    let len = pu(1u);
    let start = (id % pu(2u)) * pu(3u);
    let n = min(start + pu(3u), len) - start;
    let base = (id / pu(2u)) * len + start;
    let m = slice_moments(base, n, lid);
    if (lid == 0u) {
        let o = pu(4u) + id;
        stats[2u * o] = m.x;
        stats[2u * o + 1u] = m.y;
    }
}
