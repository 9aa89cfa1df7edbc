// Linear layer over f32 weights (block formats use linear_q.wgsl), register-blocked: each
// invocation computes a 4x4 block of out[M, N] = x[M, K] @ w^T + bias, for the rows
// [n_off, n_off + n_rows) of w held by this chunk. Both operands are read along K, so loads are contiguous; no shared memory (on
// software adapters shared-memory tiles were 3-7x slower than this shape).
// params: params.rs `Linear`.
// The weight loader `load_w(n, k) -> vec4<f32>` (4 values at k..k+3 of chunk row n) and the
// x loader `load_x(m, k)` are spliced in per variant (vec4 when K % 4 == 0, else scalar).

// Bindings: 0 out, 1 bias (x again when there is none), 2 x, 3 w, 4 params.
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> bias: array<f32>;
//{{BINDINGS}}

//{{LOADERS}}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let M = params.m;
    let K = params.k;
    let N = params.n;
    let n_off = params.n_off;
    let n_rows = params.n_rows;
    let c0 = gid.x * 4u;
    let r0 = gid.y * 4u;
    if (c0 >= n_rows || r0 >= M) {
        return;
    }
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k = 0u; k < K; k = k + 4u) {
        let w0 = load_w(c0, k);
        let w1 = load_w(c0 + 1u, k);
        let w2 = load_w(c0 + 2u, k);
        let w3 = load_w(c0 + 3u, k);
        let x0 = load_x(r0, k);
        let x1 = load_x(r0 + 1u, k);
        let x2 = load_x(r0 + 2u, k);
        let x3 = load_x(r0 + 3u, k);
        acc0 = acc0 + vec4<f32>(dot(x0, w0), dot(x0, w1), dot(x0, w2), dot(x0, w3));
        acc1 = acc1 + vec4<f32>(dot(x1, w0), dot(x1, w1), dot(x1, w2), dot(x1, w3));
        acc2 = acc2 + vec4<f32>(dot(x2, w0), dot(x2, w1), dot(x2, w2), dot(x2, w3));
        acc3 = acc3 + vec4<f32>(dot(x3, w0), dot(x3, w1), dot(x3, w2), dot(x3, w3));
    }
    var b = vec4<f32>(0.0);
    if (params.has_bias != 0u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            if (c0 + j < n_rows) {
                b[j] = bias[n_off + c0 + j];
            }
        }
    }
    store_row(r0, c0, acc0 + b);
    store_row(r0 + 1u, c0, acc1 + b);
    store_row(r0 + 2u, c0, acc2 + b);
    store_row(r0 + 3u, c0, acc3 + b);
}

fn store_row(m: u32, c0: u32, v: vec4<f32>) {
    if (m >= params.m) {
        return;
    }
    let base = m * params.n + params.n_off + c0;
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (c0 + j < params.n_rows) {
            out[base + j] = v[j];
        }
    }
}
