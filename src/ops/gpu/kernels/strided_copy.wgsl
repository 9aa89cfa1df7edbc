// Strided copy of 32-bit words (f32 or u32 alike): for each index of `shape`,
// dst[dst_base + sum(i_d * dst_stride_d)] = src[src_base + sum(i_d * src_stride_d)].
// Serves permute, slice and concat. params: [n, ndim, src_base, dst_base, shape[6] @4,
// src_strides[6] @10, dst_strides[6] @16].

@group(0) @binding(0) var<storage, read_write> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if (i >= pu(0u)) {
        return;
    }
    let ndim = pu(1u);
    var rem = i;
    var s = pu(2u);
    var d = pu(3u);
    for (var k = 0u; k < ndim; k = k + 1u) {
        let axis = ndim - 1u - k;
        let size = pu(4u + axis);
        let c = rem % size;
        rem = rem / size;
        s = s + c * pu(10u + axis);
        d = d + c * pu(16u + axis);
    }
    dst[d] = src[s];
}
