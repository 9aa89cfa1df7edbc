// Self-test kernel: C[m][n] = sum_k A[m][k] * B[k][n] + bias[n], row-major, one invocation
// per output. Deliberately simple: it checks the device path, not speed.

struct Dims { m: u32, k: u32, n: u32, _pad: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> dims: Dims;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let row = id.y;
    let col = id.x;
    if (row >= dims.m || col >= dims.n) {
        return;
    }
    var acc = 0.0;
    for (var i = 0u; i < dims.k; i = i + 1u) {
        acc = acc + a[row * dims.k + i] * b[i * dims.n + col];
    }
    c[row * dims.n + col] = acc + bias[col];
}
