// GroupNorm: one workgroup per (batch, group), whose (C / groups) x spatial values are
// contiguous, with two-pass statistics (moments.wgsl); optional SiLU on the result.
// params: params.rs `GroupNorm`. A dispatch normalizes sets first_set.. (all of them, or one window of a tensor above the
// binding limit, bound from its first set).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lanes: Lanes) {
    let lid = lanes.index;
    let bg = flat_workgroup(wid, nwg);
    if (bg >= params.sets) {
        return;
    }
    let n = params.group_len;
    let spatial = params.spatial;
    let base = bg * n;
    let c0 = ((bg + params.first_set) % params.groups) * params.channels_per_group;

    let m = slice_moments(base, n, lanes);
    let mean = m.x;
    let denom = sqrt(m.y / f32(n) + params.eps);

    let silu = params.silu == 1u;
    for (var i = lid; i < n; i = i + {{WG}}u) {
        let c = c0 + i / spatial;
        var y = (x[base + i] - mean) / denom * gamma[c] + beta[c];
        if (silu) {
            y = y / (1.0 + exp(-y));
        }
        out[base + i] = y;
    }
}
