// out = a (op) b with NumPy broadcasting over up to 6 axes.
// params (params.rs `Binary`): op 0 add, 1 sub, 2 mul. Broadcast axes have stride 0. A
// dispatch covers output indices first..first+n-1 (one window of an output above the binding
// limit); a and b are bound from their indices a_first and b_first.

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if (i >= params.n) {
        return;
    }
    var rem = i + params.first;
    var ia = 0u;
    var ib = 0u;
    let ndim = params.ndim;
    for (var d = 0u; d < ndim; d = d + 1u) {
        let axis = ndim - 1u - d;
        let size = params.shape[axis / 4u][axis % 4u];
        let c = rem % size;
        rem = rem / size;
        ia = ia + c * params.a_strides[axis / 4u][axis % 4u];
        ib = ib + c * params.b_strides[axis / 4u][axis % 4u];
    }
    let x = a[ia - params.a_first];
    let y = b[ib - params.b_first];
    var r: f32;
    switch params.op {
        case 0u: { r = x + y; }
        case 1u: { r = x - y; }
        default: { r = x * y; }
    }
    out[i] = r;
}
