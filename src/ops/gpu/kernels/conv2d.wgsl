// 2D convolution (NCHW) as an implicit GEMM: out[(b, oy, ox), o] = sum over k = (c, ky, kx)
// of x[b, c, oy*s - pt + ky, ox*s - pl + kx] (zero outside) * w[o, k], never building the
// im2col matrix. Each invocation computes 4 output channels x 4 output pixels, like
// linear.wgsl: weights are read 4 consecutive k at a time through `load_w` (spliced in per
// variant: f32 vec4 / scalar, q8_0, q4_0), the input is gathered tap by tap with bounds
// checks standing in for the zero padding. A weight chunk holds channels
// [n_off, n_off + n_rows).
// params: [M = B*Ho*Wo, K = C*kh*kw, O, n_off, n_rows, has_bias, C, H, W, Ho, Wo, kh, kw,
// stride, pad_top, pad_left, channel tiles].

// Bindings: 0 out, 1 bias (x again when there is none), 2 x, 3 w, [4 scales], then params.
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
//{{BINDINGS}}

//{{LOADERS}}

// An output pixel: its input window's top-left corner (may lie in the padding) and the
// index of that corner in x, relative to which every tap is an offset.
struct Pixel {
    base: i32,
    iy: i32,
    ix: i32,
    live: bool,
}

// One k = (c, ky, kx): its offset in x from a pixel's corner.
struct Tap {
    off: i32,
    ky: i32,
    kx: i32,
    live: bool,
}

fn pixel(m: u32) -> Pixel {
    let wo = pu(10u);
    let plane = pu(9u) * wo;
    let r = m % plane;
    let iy = i32((r / wo) * pu(13u)) - i32(pu(14u));
    let ix = i32((r % wo) * pu(13u)) - i32(pu(15u));
    let base = i32((m / plane) * pu(6u) * pu(7u) * pu(8u)) + iy * i32(pu(8u)) + ix;
    return Pixel(base, iy, ix, m < pu(0u));
}

// The tap of k = (c, ky, kx); taps past K are dead (their weights load as zero, and the
// input must not be read as a stray Inf or NaN).
fn tap(k: vec3<u32>) -> Tap {
    let w = pu(8u);
    let off = i32((k.x * pu(7u) + k.y) * w + k.z);
    return Tap(off, i32(k.y), i32(k.z), k.x < pu(6u));
}

// k + 1 in (c, ky, kx) form.
fn next(k: vec3<u32>) -> vec3<u32> {
    var n = vec3<u32>(k.x, k.y, k.z + 1u);
    if (n.z == pu(12u)) {
        n.z = 0u;
        n.y = n.y + 1u;
        if (n.y == pu(11u)) {
            n.y = 0u;
            n.x = n.x + 1u;
        }
    }
    return n;
}

fn gather(p: Pixel, t: Tap) -> f32 {
    let row = u32(p.iy + t.ky);
    let col = u32(p.ix + t.kx);
    if (p.live && t.live && row < pu(7u) && col < pu(8u)) {
        return x[u32(p.base + t.off)];
    }
    return 0.0;
}

fn load_x(p: Pixel, t0: Tap, t1: Tap, t2: Tap, t3: Tap) -> vec4<f32> {
    return vec4<f32>(gather(p, t0), gather(p, t1), gather(p, t2), gather(p, t3));
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let M = pu(0u);
    let K = pu(1u);
    let n_rows = pu(4u);
    let tiles_n = pu(16u);
    let flat = flat_workgroup(wid, nwg);
    let c0 = ((flat % tiles_n) * 8u + lid.x) * 4u;
    let r0 = ((flat / tiles_n) * 8u + lid.y) * 4u;
    if (c0 >= n_rows || r0 >= M) {
        return;
    }
    let p0 = pixel(r0);
    let p1 = pixel(r0 + 1u);
    let p2 = pixel(r0 + 2u);
    let p3 = pixel(r0 + 3u);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var kc = vec3<u32>(0u);
    for (var k = 0u; k < K; k = k + 4u) {
        let t0 = tap(kc);
        kc = next(kc);
        let t1 = tap(kc);
        kc = next(kc);
        let t2 = tap(kc);
        kc = next(kc);
        let t3 = tap(kc);
        kc = next(kc);
        let w0 = load_w(c0, k);
        let w1 = load_w(c0 + 1u, k);
        let w2 = load_w(c0 + 2u, k);
        let w3 = load_w(c0 + 3u, k);
        let x0 = load_x(p0, t0, t1, t2, t3);
        let x1 = load_x(p1, t0, t1, t2, t3);
        let x2 = load_x(p2, t0, t1, t2, t3);
        let x3 = load_x(p3, t0, t1, t2, t3);
        acc0 = acc0 + vec4<f32>(dot(x0, w0), dot(x0, w1), dot(x0, w2), dot(x0, w3));
        acc1 = acc1 + vec4<f32>(dot(x1, w0), dot(x1, w1), dot(x1, w2), dot(x1, w3));
        acc2 = acc2 + vec4<f32>(dot(x2, w0), dot(x2, w1), dot(x2, w2), dot(x2, w3));
        acc3 = acc3 + vec4<f32>(dot(x3, w0), dot(x3, w1), dot(x3, w2), dot(x3, w3));
    }
    var b = vec4<f32>(0.0);
    if (pu(5u) != 0u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            if (c0 + j < n_rows) {
                b[j] = bias[pu(3u) + c0 + j];
            }
        }
    }
    store_pixel(r0, c0, acc0 + b);
    store_pixel(r0 + 1u, c0, acc1 + b);
    store_pixel(r0 + 2u, c0, acc2 + b);
    store_pixel(r0 + 3u, c0, acc3 + b);
}

// Writes channels c0..c0+3 (chunk-local) of output pixel m.
fn store_pixel(m: u32, c0: u32, v: vec4<f32>) {
    if (m >= pu(0u)) {
        return;
    }
    let plane = pu(9u) * pu(10u);
    let base = (m / plane) * pu(2u) * plane + (pu(3u) + c0) * plane + m % plane;
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (c0 + j < pu(4u)) {
            out[base + j * plane] = v[j];
        }
    }
}
