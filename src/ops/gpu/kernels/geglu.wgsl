// GEGLU: out[r, j] = x[r, j] * gelu(x[r, d + j]) for x [rows, 2d]. params: params.rs `Geglu` (n = rows * d).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if (i >= params.n) {
        return;
    }
    let d = params.d;
    let r = i / d;
    let j = i % d;
    out[i] = x[r * 2u * d + j] * gelu_erf(x[r * 2u * d + d + j]);
}
