// Depthwise 2D convolution, stride 1, one invocation per output value of [B, C, OH, OW].
// params: [count, C, H, W, OH, OW, KH, KW, pad, has_bias].

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if (i >= pu(0u)) {
        return;
    }
    let C = pu(1u);
    let H = pu(2u);
    let W = pu(3u);
    let OH = pu(4u);
    let OW = pu(5u);
    let KH = pu(6u);
    let KW = pu(7u);
    let pad = i32(pu(8u));
    let ox = i32(i % OW);
    let oy = i32((i / OW) % OH);
    let plane = i / (OW * OH);
    let c = plane % C;
    var acc = 0.0;
    for (var ky = 0u; ky < KH; ky = ky + 1u) {
        let y = oy + i32(ky) - pad;
        if (y < 0 || y >= i32(H)) {
            continue;
        }
        for (var kx = 0u; kx < KW; kx = kx + 1u) {
            let xx = ox + i32(kx) - pad;
            if (xx < 0 || xx >= i32(W)) {
                continue;
            }
            acc = acc + w[(c * KH + ky) * KW + kx] * x[(plane * H + u32(y)) * W + u32(xx)];
        }
    }
    if (pu(9u) != 0u) {
        acc = acc + bias[c];
    }
    out[i] = acc;
}
