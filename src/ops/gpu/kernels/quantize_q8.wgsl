// The fast precision's int8 input of a linear or conv (`Precision::Fast`): rows of K values
// (K a multiple of 32) as Q8_0 blocks of their own. Per block of 32 values d = amax / 127
// and the quants are round(x * 127 / amax), ties to even, packed 4 to a word lowest byte
// first as Q8_0 weights are (quant.rs `pack_for_gpu`), so that `dot4I8Packed` pairs them.
// `quant.rs` `quantize_activations_q8` is the same on the CPU; the tests hold the two
// together. One invocation per block. Spliced per input (linear.rs, conv_tiled.rs):
// - INPUT: binding 2 (x) and 3 (params), `fn blocks() -> u32` and `fn load(b, i)`, values
//   4i..4i+3 of block b (a linear's rows as they are; a conv's taps gathered).

@group(0) @binding(0) var<storage, read_write> xq: array<u32>;
@group(0) @binding(1) var<storage, read_write> xd: array<f32>;

//{{INPUT}}

fn pack_i8(q: vec4<f32>) -> u32 {
    let b = bitcast<vec4<u32>>(vec4<i32>(q)) & vec4<u32>(255u);
    return b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let b = flat_workgroup(wid, nwg) * 64u + li;
    if (b >= blocks()) {
        return;
    }
    var v: array<vec4<f32>, 8>;
    var amax = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i = i + 1u) {
        v[i] = load(b, i);
        amax = max(amax, abs(v[i]));
    }
    let a = max(max(amax.x, amax.y), max(amax.z, amax.w));
    let inv = select(0.0, 127.0 / a, a > 0.0);
    xd[b] = a / 127.0;
    for (var i = 0u; i < 8u; i = i + 1u) {
        xq[b * 8u + i] = pack_i8(clamp(round(v[i] * inv), vec4<f32>(-127.0), vec4<f32>(127.0)));
    }
}
