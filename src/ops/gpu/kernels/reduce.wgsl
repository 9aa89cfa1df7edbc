// Workgroup tree reductions over {{WG}} invocations (a power of two), shared by the norm
// kernels. They hold barriers, so every invocation of the workgroup must call them; each
// returns the result to all. `Lanes` is the kernel's entry argument: where an invocation
// sits (reduce_subgroup.wgsl's has its subgroup too).

struct Lanes {
    @builtin(local_invocation_index) index: u32,
}

var<workgroup> partial: array<f32, {{WG}}>;

fn reduce_sum(v: f32, lanes: Lanes) -> f32 {
    let lid = lanes.index;
    partial[lid] = v;
    workgroupBarrier();
    for (var s = {{WG}}u / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            partial[lid] = partial[lid] + partial[lid + s];
        }
        workgroupBarrier();
    }
    let r = partial[0];
    // Nobody may overwrite partial[0] with the next reduction before all have read it.
    workgroupBarrier();
    return r;
}

fn reduce_max(v: f32, lanes: Lanes) -> f32 {
    let lid = lanes.index;
    partial[lid] = v;
    workgroupBarrier();
    for (var s = {{WG}}u / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            partial[lid] = max(partial[lid], partial[lid + s]);
        }
        workgroupBarrier();
    }
    let r = partial[0];
    workgroupBarrier();
    return r;
}
