// reduce.wgsl on a device with `subgroups` (natively: naga takes subgroup built-ins
// without WGSL's `enable subgroups;`, which it refuses as not implemented yet): each subgroup reduces in registers
// (subgroupAdd / subgroupMax), its first invocation writes the result to workgroup memory,
// and every invocation adds up those few values: 2 barriers where the tree takes
// log2({{WG}}) + 2. Subgroups are found by subgroup_id (no assumption on how invocation
// indices map to them, nor on their size).

struct Lanes {
    @builtin(local_invocation_index) index: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
}

// One slot per subgroup; subgroups have at least one invocation.
var<workgroup> partial: array<f32, {{WG}}>;

fn reduce_sum(v: f32, lanes: Lanes) -> f32 {
    let s = subgroupAdd(v);
    if (lanes.lane == 0u) {
        partial[lanes.subgroup] = s;
    }
    workgroupBarrier();
    var r = 0.0;
    for (var i = 0u; i < lanes.subgroups; i = i + 1u) {
        r = r + partial[i];
    }
    // Nobody may overwrite partial with the next reduction before all have read it.
    workgroupBarrier();
    return r;
}

fn reduce_max(v: f32, lanes: Lanes) -> f32 {
    let s = subgroupMax(v);
    if (lanes.lane == 0u) {
        partial[lanes.subgroup] = s;
    }
    workgroupBarrier();
    var r = partial[0];
    for (var i = 1u; i < lanes.subgroups; i = i + 1u) {
        r = max(r, partial[i]);
    }
    workgroupBarrier();
    return r;
}
