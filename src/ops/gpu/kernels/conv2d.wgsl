// 2D convolution (NCHW) as an implicit GEMM: out[(b, oy, ox), o] = sum over k = (c, ky, kx)
// of x[b, c, oy*s - pt + ky, ox*s - pl + kx] (zero outside) * w[o, k], never building the
// im2col matrix. Each invocation computes 8 output channels x 4 output pixels (no shared
// memory) from two loaders spliced in per variant:
// - `load_w(n, k) -> vec4<f32>`: row n of this chunk's weights at k..k+3 (f32 vec4 /
//   scalar, or q8_0 / q4_0 dequantized in place); rows past the chunk read its last row;
// - `block(r0) -> Block` and `load_x(block, k, &kc) -> mat4x4<f32>`: column p holds the
//   inputs of pixel r0 + p at k..k+3 (a gather whose bounds checks stand in for the zero
//   padding, or for 1x1 convs one aligned vec4 of 4 pixels per input plane).
// A dispatch computes n_rows output channels, written from channel n_off of the bound
// output, with bias from index bias_off. Above the binding limit a conv becomes several
// dispatches over windows (one batch item, a range of output channels, a range of input
// channels): weight rows are row_len long and read from column col_off on, and every
// input-channel range after the first adds to the output (accumulate).
// params: params.rs `Conv2d` (tiles_n: tiles of output channels).

// Bindings: 0 out, 1 bias (x again when there is none), 2 x, 3 w, [4 scales], then params.
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> bias: array<f32>;
//{{BINDINGS}}

//{{LOADERS}}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let M = params.m;
    let K = params.k;
    let n_rows = params.n_rows;
    let tiles_n = params.tiles_n;
    let flat = flat_workgroup(wid, nwg);
    let c0 = ((flat % tiles_n) * 8u + lid.x) * 8u;
    let r0 = ((flat / tiles_n) * 8u + lid.y) * 4u;
    if (c0 >= n_rows || r0 >= M) {
        return;
    }
    let blk = block(r0);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // Channels c0 + 4..7: each gathered input serves 8 channels (the gathers cost most).
    var bcc0 = vec4<f32>(0.0);
    var bcc1 = vec4<f32>(0.0);
    var bcc2 = vec4<f32>(0.0);
    var bcc3 = vec4<f32>(0.0);
    // k in (c, ky, kx) form, advanced by the gather (which would otherwise divide).
    var kc = vec3<u32>(0u);
//{{K_LOOP}}
    var b = vec4<f32>(0.0);
    var b2 = vec4<f32>(0.0);
    if (params.has_bias != 0u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            b[j] = bias[params.bias_off + min(c0 + j, n_rows - 1u)];
            b2[j] = bias[params.bias_off + min(c0 + 4u + j, n_rows - 1u)];
        }
    }
    store_pixel(r0, c0, acc0 + b);
    store_pixel(r0 + 1u, c0, acc1 + b);
    store_pixel(r0 + 2u, c0, acc2 + b);
    store_pixel(r0 + 3u, c0, acc3 + b);
    store_pixel(r0, c0 + 4u, bcc0 + b2);
    store_pixel(r0 + 1u, c0 + 4u, bcc1 + b2);
    store_pixel(r0 + 2u, c0 + 4u, bcc2 + b2);
    store_pixel(r0 + 3u, c0 + 4u, bcc3 + b2);
}

//{{STORE_PIXEL}}
