// Linear layer over block-quantized weights (Q8_0 / Q4_0), register-blocked like
// linear.wgsl, but walking K one 32-value block at a time: the four columns' scales are
// loaded once per block and applied to the block's partial sums, so the inner loop only
// unpacks quants (per-element scaling made this kernel 2.5x slower than f32 on SwiftShader).
// LOAD_Q brings load_q(n, k), the unscaled quants, and col_scale(n, kb), block kb's scale.
// Each invocation covers 8 rows x 4 columns (linear.wgsl: 4 x 4), so each unpacked quant
// serves 8 rows; the per-block sums (`BLOCK_SUMS`) are spliced in per format.
// params: params.rs `Linear`. K is a multiple of 32.
// Bindings: 0 out, 1 bias (x again when there is none), 2 x (vec4), 3 quants, 4 scales, 5 params.

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> w: array<u32>;
@group(0) @binding(4) var<storage, read_write> scales: array<u32>;
@group(0) @binding(5) var<uniform> params: Params;

fn load_x(m: u32, k: u32) -> vec4<f32> {
    return x[(min(m, params.m - 1u) * params.k + k) / 4u];
}

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
        var t0 = vec4<f32>(0.0);
        var t1 = vec4<f32>(0.0);
        var t2 = vec4<f32>(0.0);
        var t3 = vec4<f32>(0.0);
        var t4 = vec4<f32>(0.0);
        var t5 = vec4<f32>(0.0);
        var t6 = vec4<f32>(0.0);
        var t7 = vec4<f32>(0.0);
//{{BLOCK_SUMS}}
        acc0 = acc0 + t0 * s;
        acc1 = acc1 + t1 * s;
        acc2 = acc2 + t2 * s;
        acc3 = acc3 + t3 * s;
        acc4 = acc4 + t4 * s;
        acc5 = acc5 + t5 * s;
        acc6 = acc6 + t6 * s;
        acc7 = acc7 + t7 * s;
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
