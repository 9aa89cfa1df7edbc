// GroupNorm's normalization, elementwise, from per-set moments (mean, sqrt(var + eps)),
// then the channel's affine and optional SiLU.
// params: [n, group_len, spatial, channels_per_group, groups, silu, first_set]

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read> moments: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if (i >= pu(0u)) {
        return;
    }
    let g = i / pu(1u);
    let c = ((g + pu(6u)) % pu(4u)) * pu(3u) + (i % pu(1u)) / pu(2u);
    var y = (x[i] - moments[2u * g]) / moments[2u * g + 1u] * gamma[c] + beta[c];
    if (pu(5u) == 1u) {
        y = y / (1.0 + exp(-y));
    }
    out[i] = y;
}
