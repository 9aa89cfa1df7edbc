// The fast precision's int8 input of a convolution (`Precision::Fast`, tiled kernels): the
// implicit GEMM's A, M = B*Ho*Wo pixels by K = C*kh*kw taps, gathered and quantized per
// block of 32 taps as quantize_q8.wgsl does a linear's input (d = amax / 127, quants
// rounded to even, 4 to a word lowest byte first), so that linear_q8dot_tiled.wgsl
// multiplies it by the Q8_0 weight rows. One invocation per (pixel, block).
// params: params.rs `Conv2d` (the whole conv: no windows). GATHER brings tile_a(m, k),
// taps k..k+3 of pixel m (zero in the padding).

@group(0) @binding(0) var<storage, read_write> xq: array<u32>;
@group(0) @binding(1) var<storage, read_write> xd: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

//{{GATHER}}

fn pack_i8(q: vec4<f32>) -> u32 {
    let b = bitcast<vec4<u32>>(vec4<i32>(q)) & vec4<u32>(255u);
    return b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let blocks = params.k / 32u;
    let b = flat_workgroup(wid, nwg) * 64u + li;
    if (b >= params.m * blocks) {
        return;
    }
    let m = b / blocks;
    let k0 = (b % blocks) * 32u;
    var v: array<vec4<f32>, 8>;
    var amax = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i = i + 1u) {
        v[i] = tile_a(m, k0 + i * 4u);
        amax = max(amax, abs(v[i]));
    }
    let a = max(max(amax.x, amax.y), max(amax.z, amax.w));
    let inv = select(0.0, 127.0 / a, a > 0.0);
    xd[b] = a / 127.0;
    for (var i = 0u; i < 8u; i = i + 1u) {
        xq[b * 8u + i] = pack_i8(clamp(round(v[i] * inv), vec4<f32>(-127.0), vec4<f32>(127.0)));
    }
}
