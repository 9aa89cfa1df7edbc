// GroupNorm's normalization, elementwise, from per-set moments (mean, sqrt(var + eps)),
// then the channel's affine and optional SiLU. An invocation takes 4 values of one channel
// (spatial % 4 == 0; x and out bound as vec4), which amortizes the index divisions that
// software adapters run lane by lane.
// params: params.rs `GroupNormApply`.
// (first_set: where the window's sets start in `moments`, when it holds every set's).

@group(0) @binding(0) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> moments: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if (i >= params.n4) {
        return;
    }
    // Channel of these values counted from the window's start, its set, its gamma index.
    let ch = (i * 4u) / params.spatial;
    let g = ch / params.channels_per_group;
    let c = (ch + params.first_channel) % params.channels;
    let m = 2u * (g + params.first_set);
    var y = (x[i] - moments[m]) / moments[m + 1u] * gamma[c] + beta[c];
    if (params.silu == 1u) {
        y = y / (1.0 + exp(-y));
    }
    out[i] = y;
}
