// PyTorch's ConvTranspose2d as a gather, one invocation per output value of [B, O, OH, OW]:
// out[b, o, y, x] = bias[o] + sum over c, ky, kx of x[b, c, iy, ix] * w[c, o, ky, kx]
// where y = iy * stride - pad + ky (and the same for x): only taps whose (y + pad - ky) is
// a multiple of the stride inside the input contribute.
// params: params.rs `ConvTranspose2d`.

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
    let O = params.o;
    let OH = params.oh;
    let OW = params.ow;
    let KH = params.kh;
    let KW = params.kw;
    let stride = i32(params.stride);
    let pad = i32(params.pad);
    let ox = i32(i % OW);
    let oy = i32((i / OW) % OH);
    let o = (i / (OW * OH)) % O;
    let b = i / (OW * OH * O);
    var acc = 0.0;
    for (var ky = 0u; ky < KH; ky = ky + 1u) {
        let ty = oy + pad - i32(ky);
        if (ty < 0 || ty % stride != 0 || ty / stride >= i32(H)) {
            continue;
        }
        let iy = u32(ty / stride);
        for (var kx = 0u; kx < KW; kx = kx + 1u) {
            let tx = ox + pad - i32(kx);
            if (tx < 0 || tx % stride != 0 || tx / stride >= i32(W)) {
                continue;
            }
            let ix = u32(tx / stride);
            for (var c = 0u; c < C; c = c + 1u) {
                acc = acc + x[((b * C + c) * H + iy) * W + ix] * w[((c * O + o) * KH + ky) * KW + kx];
            }
        }
    }
    if (params.has_bias != 0u) {
        acc = acc + bias[o];
    }
    out[i] = acc;
}
