// Batched matmul of two activations: out[b] = A[b] @ B[b], A [M, K] row-major, B read
// through strides (b_sk, b_sn) so that B or B^T work alike. Each invocation computes a 4x4
// block; workgroups tile x over N, y over M, z over the batch.
// params: params.rs `Matmul`.

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

fn load_a(base: u32, m: u32, k: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    let K = params.k;
    if (m >= params.m) { return v; }
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (k + j < K) { v[j] = a[base + m * K + k + j]; }
    }
    return v;
}

fn load_b(base: u32, n: u32, k: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (n >= params.n) { return v; }
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (k + j < params.k) { v[j] = b[base + (k + j) * params.b_sk + n * params.b_sn]; }
    }
    return v;
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let M = params.m;
    let K = params.k;
    let N = params.n;
    let c0 = gid.x * 4u;
    let r0 = gid.y * 4u;
    if (c0 >= N || r0 >= M) {
        return;
    }
    let abase = gid.z * params.a_batch_stride;
    let bbase = gid.z * params.b_batch_stride;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k = 0u; k < K; k = k + 4u) {
        let b0 = load_b(bbase, c0, k);
        let b1 = load_b(bbase, c0 + 1u, k);
        let b2 = load_b(bbase, c0 + 2u, k);
        let b3 = load_b(bbase, c0 + 3u, k);
        let a0 = load_a(abase, r0, k);
        let a1 = load_a(abase, r0 + 1u, k);
        let a2 = load_a(abase, r0 + 2u, k);
        let a3 = load_a(abase, r0 + 3u, k);
        acc0 = acc0 + vec4<f32>(dot(a0, b0), dot(a0, b1), dot(a0, b2), dot(a0, b3));
        acc1 = acc1 + vec4<f32>(dot(a1, b0), dot(a1, b1), dot(a1, b2), dot(a1, b3));
        acc2 = acc2 + vec4<f32>(dot(a2, b0), dot(a2, b1), dot(a2, b2), dot(a2, b3));
        acc3 = acc3 + vec4<f32>(dot(a3, b0), dot(a3, b1), dot(a3, b2), dot(a3, b3));
    }
    let obase = gid.z * M * N;
    store_row(obase, r0, c0, acc0);
    store_row(obase, r0 + 1u, c0, acc1);
    store_row(obase, r0 + 2u, c0, acc2);
    store_row(obase, r0 + 3u, c0, acc3);
}

fn store_row(base: u32, m: u32, c0: u32, v: vec4<f32>) {
    if (m >= params.m) {
        return;
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (c0 + j < params.n) {
            out[base + m * params.n + c0 + j] = v[j];
        }
    }
}
