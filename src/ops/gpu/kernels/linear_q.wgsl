// Linear layer over block-quantized weights (Q8_0 / Q4_0), register-blocked like
// linear.wgsl, but walking K one 32-value block at a time: the four columns' scales are
// loaded once per block and applied to the block's partial sums, so the inner loop only
// unpacks quants (per-element scaling made this kernel 2.5x slower than f32 on SwiftShader).
// Each invocation covers 8 rows x 4 columns (linear.wgsl: 4 x 4), so each unpacked quant
// serves 8 rows. Spliced per format (linear.rs):
// - X_OPERAND: the x bindings (from 2; the quants are 3, their scales 4) and params;
// - LOAD_Q: the weight loaders (load_q(n, k), col_scale(n, kb)), used by BLOCK_SUMS;
// - SUM: the partial sums' type: vec4<f32>, or vec4<i32> for the fast precision's
//   int8 dot products (linear_q8dot in linear.rs);
// - BLOCK_SUMS: one block's partial sums t0..t7 of rows r0..r0+7 and columns c0..c0+3;
// - SCALED: fn scaled(t, s, m, kb), block kb's sums of row m with the columns' scales s.
// params: params.rs `Linear`. K is a multiple of 32.
// Bindings: 0 out, 1 bias (x again when there is none), then X_OPERAND's.

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> w: array<u32>;
@group(0) @binding(4) var<storage, read_write> scales: array<u32>;

//{{X_OPERAND}}

//{{SCALED}}

//{{LOAD_Q}}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let M = params.m;
    let K = params.k;
    let n_rows = params.n_rows;
    let c0 = gid.x * 4u;
    let r0 = gid.y * 8u;
    if (c0 >= n_rows || r0 >= M) {
        return;
    }
    // 8 rows x 4 columns per invocation: each unpacked quant serves 8 rows, which pays for
    // the unpacking (with 4 rows this kernel ran at 0.8-0.9x the f32 one on SwiftShader).
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    for (var kb = 0u; kb < K / 32u; kb = kb + 1u) {
        let s = vec4<f32>(col_scale(c0, kb), col_scale(c0 + 1u, kb), col_scale(c0 + 2u, kb), col_scale(c0 + 3u, kb));
        var t0 = {{SUM}}(0);
        var t1 = {{SUM}}(0);
        var t2 = {{SUM}}(0);
        var t3 = {{SUM}}(0);
        var t4 = {{SUM}}(0);
        var t5 = {{SUM}}(0);
        var t6 = {{SUM}}(0);
        var t7 = {{SUM}}(0);
//{{BLOCK_SUMS}}
        acc0 = acc0 + scaled(t0, s, r0 + 0u, kb);
        acc1 = acc1 + scaled(t1, s, r0 + 1u, kb);
        acc2 = acc2 + scaled(t2, s, r0 + 2u, kb);
        acc3 = acc3 + scaled(t3, s, r0 + 3u, kb);
        acc4 = acc4 + scaled(t4, s, r0 + 4u, kb);
        acc5 = acc5 + scaled(t5, s, r0 + 5u, kb);
        acc6 = acc6 + scaled(t6, s, r0 + 6u, kb);
        acc7 = acc7 + scaled(t7, s, r0 + 7u, kb);
    }
    var b = vec4<f32>(0.0);
    if (params.has_bias != 0u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            if (c0 + j < n_rows) {
                b[j] = bias[params.n_off + c0 + j];
            }
        }
    }
    store_row(r0 + 0u, c0, acc0 + b);
    store_row(r0 + 1u, c0, acc1 + b);
    store_row(r0 + 2u, c0, acc2 + b);
    store_row(r0 + 3u, c0, acc3 + b);
    store_row(r0 + 4u, c0, acc4 + b);
    store_row(r0 + 5u, c0, acc5 + b);
    store_row(r0 + 6u, c0, acc6 + b);
    store_row(r0 + 7u, c0, acc7 + b);
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
