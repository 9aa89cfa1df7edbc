// Depthwise 2D convolution, stride 1, one invocation per output value of [B, C, OH, OW].
// params: params.rs `DepthwiseConv2d`.

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if (i >= params.count) {
        return;
    }
    let C = params.c;
    let H = params.h;
    let W = params.w;
    let OH = params.oh;
    let OW = params.ow;
    let KH = params.kh;
    let KW = params.kw;
    let pad = i32(params.pad);
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
    if (params.has_bias != 0u) {
        acc = acc + bias[c];
    }
    out[i] = acc;
}
