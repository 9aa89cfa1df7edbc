// Two-pass statistics of x[base .. base + n) over a workgroup of {{WG}}: the mean, then
// the sum of squared deviations from it (accurate for groups of millions of values).
// Needs reduce.wgsl (or reduce_subgroup.wgsl) and an `x: array<f32>` binding; every invocation must call it.

fn slice_moments(base: u32, n: u32, lanes: Lanes) -> vec2<f32> {
    let lid = lanes.index;
    var s = 0.0;
    for (var i = lid; i < n; i = i + {{WG}}u) {
        s = s + x[base + i];
    }
    let mean = reduce_sum(s, lanes) / f32(n);
    var s2 = 0.0;
    for (var i = lid; i < n; i = i + {{WG}}u) {
        let d = x[base + i] - mean;
        s2 = s2 + d * d;
    }
    return vec2<f32>(mean, reduce_sum(s2, lanes));
}
