// Strided copy of 32-bit words (f32 or u32 alike): for each index of `shape`,
// dst[dst_base + sum(i_d * dst_stride_d)] = src[src_base + sum(i_d * src_stride_d)].
// Serves permute, slice and concat. params: params.rs `StridedCopy`.

@group(0) @binding(0) var<storage, read_write> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if (i >= params.n) {
        return;
    }
    let ndim = params.ndim;
    var rem = i;
    var s = params.src_base;
    var d = params.dst_base;
    for (var k = 0u; k < ndim; k = k + 1u) {
        let axis = ndim - 1u - k;
        let size = params.shape[axis / 4u][axis % 4u];
        let c = rem % size;
        rem = rem / size;
        s = s + c * params.src_strides[axis / 4u][axis % 4u];
        d = d + c * params.dst_strides[axis / 4u][axis % 4u];
    }
    dst[d] = src[s];
}
