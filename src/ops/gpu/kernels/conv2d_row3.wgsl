// K loop of 3x3 stride-1 convs over f32 weights, spliced into conv2d.wgsl when an
// invocation's 4 pixels lie in one output row (Wo % 4 == 0): per input channel and kernel
// row, the 4 pixels' 3 taps read 6 consecutive inputs, instead of 12 gathers each with
// its own tap arithmetic. `w` is bound as scalars (tap offsets c*9 + ky*3 are not
// 4-aligned).

// Where 4 channels' rows start (computed once per invocation, outside the K loop).
fn rows4(n: u32) -> vec4<u32> {
    return vec4<u32>(w_at(n, 0u), w_at(n + 1u, 0u), w_at(n + 2u, 0u), w_at(n + 3u, 0u));
}

// Weights at column k of the rows starting at `r`.
fn w4(r: vec4<u32>, k: u32) -> vec4<f32> {
    return vec4<f32>(w[r.x + k], w[r.y + k], w[r.z + k], w[r.w + k]);
}

// x at column `col` of a row starting at `row` (zero outside the row or the image).
fn x_at(row: i32, col: i32, row_ok: bool) -> f32 {
    let inside = row_ok & (u32(col) < params.w);
    return select(0.0, x[select(0u, u32(row + col), inside)], inside);
}

//{{ROW3_LOOP}}
    let H = params.h;
    let W = params.w;
    let p = blk.p0;
    // p.base is the corner's index, p.ix its column: the row of input channel c, kernel
    // row ky starts at p.base - p.ix + (c * H + ky) * W.
    let first = p.base - p.ix;
    let ra = rows4(c0);
    let rb = rows4(c0 + 4u);
    for (var c = 0u; c < params.c; c = c + 1u) {
        for (var ky = 0u; ky < 3u; ky = ky + 1u) {
            let row_ok = u32(p.iy + i32(ky)) < H;
            let row = first + i32((c * H + ky) * W);
            let x0 = x_at(row, p.ix, row_ok);
            let x1 = x_at(row, p.ix + 1, row_ok);
            let x2 = x_at(row, p.ix + 2, row_ok);
            let x3 = x_at(row, p.ix + 3, row_ok);
            let x4 = x_at(row, p.ix + 4, row_ok);
            let x5 = x_at(row, p.ix + 5, row_ok);
            let k = c * 9u + ky * 3u;
            let a0 = w4(ra, k);
            let a1 = w4(ra, k + 1u);
            let a2 = w4(ra, k + 2u);
            let b0 = w4(rb, k);
            let b1 = w4(rb, k + 1u);
            let b2 = w4(rb, k + 2u);
            acc0 = acc0 + x0 * a0 + x1 * a1 + x2 * a2;
            acc1 = acc1 + x1 * a0 + x2 * a1 + x3 * a2;
            acc2 = acc2 + x2 * a0 + x3 * a1 + x4 * a2;
            acc3 = acc3 + x3 * a0 + x4 * a1 + x5 * a2;
            bcc0 = bcc0 + x0 * b0 + x1 * b1 + x2 * b2;
            bcc1 = bcc1 + x1 * b0 + x2 * b1 + x3 * b2;
            bcc2 = bcc2 + x2 * b0 + x3 * b1 + x4 * b2;
            bcc3 = bcc3 + x3 * b0 + x4 * b1 + x5 * b2;
        }
    }
