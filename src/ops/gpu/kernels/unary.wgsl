// out = f(x) elementwise. params: params.rs `Unary`; op 0 silu, 1 gelu (erf), 2 gelu (tanh),
// 3 quick_gelu, 4 affine (mul * x + add), 5 relu, 6 tanh.

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if (i >= params.n) {
        return;
    }
    let v = x[i];
    var r: f32;
    switch params.op {
        case 0u: { r = v * sigmoid(v); }
        case 1u: { r = gelu_erf(v); }
        case 2u: { r = gelu_tanh(v); }
        case 3u: { r = v * sigmoid(1.702 * v); }
        case 5u: { r = max(v, 0.0); }
        // Clamped like gelu_tanh: some drivers build tanh from exp, which overflows.
        case 6u: { r = tanh(clamp(v, -15.0, 15.0)); }
        default: { r = params.mul * v + params.add; }
    }
    out[i] = r;
}
