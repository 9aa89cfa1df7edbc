//! Weight loaders shared by the linear and conv kernels: `load_w(n, k)` is elements
//! k..k+3 of row n of the bound weight chunk (rows past the chunk clamp to its last row;
//! their results are never stored). Each kernel defines `w_at(n, k)`, the element index of
//! (n, k) in the chunk (`W_AT_ROWS` for plain rows of K).

/// Rows of K elements (`params.k`; `params.n_rows` in the chunk), rows past the chunk clamped.
pub const W_AT_ROWS: &str = r#"
fn w_at(n: u32, k: u32) -> u32 {
    return min(n, params.n_rows - 1u) * params.k + k;
}"#;

/// f32, K a multiple of 4 (rows stay 16-byte aligned): one vec4 load.
pub const W_F32_VEC4: &str = r#"
fn load_w(n: u32, k: u32) -> vec4<f32> {
    return w[w_at(n, k) / 4u];
}"#;
/// f16 weights read as f16 vectors where the device has `shader-f16` (no unpacking); the
/// arithmetic stays f32: f16 products could not meet the 1e-4 bound against the CPU.
pub const W_F16_NATIVE: &str = r#"
fn load_w(n: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(w[w_at(n, k) / 4u]);
}"#;
/// f16 pairs (K a multiple of 4, as `keeps_f16` guarantees): one vec2<u32> load, two unpacks.
pub const W_F16: &str = r#"
fn load_w(n: u32, k: u32) -> vec4<f32> {
    let p = w[w_at(n, k) / 4u];
    return vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y));
}"#;
/// The four signed bytes of a Q8_0 word, lowest first, by shifts: each byte is moved to the
/// top and shifted back arithmetically. SwiftShader runs this much faster than four
/// `extractBits` calls, which it lowers to generic bit-field code.
pub const Q8_UNPACK: &str = r#"
fn unpack_q8(word: u32) -> vec4<f32> {
    let top = bitcast<vec4<i32>>(vec4<u32>(word << 24u, word << 16u, word << 8u, word));
    return vec4<f32>(top >> vec4<u32>(24u));
}"#;

/// Bindings 2.. of the linear and conv kernels: x, the weight values, the block scales
/// (block formats only), then the parameters.
pub fn operand_bindings(x_decl: &str, w_decl: &str, quantized: bool) -> String {
    let mut b = format!("@group(0) @binding(2) var<storage, read_write> x: {x_decl};\n@group(0) @binding(3) var<storage, read_write> w: {w_decl};\n");
    if quantized {
        b.push_str("@group(0) @binding(4) var<storage, read_write> scales: array<u32>;\n");
    }
    b + &format!("@group(0) @binding({}) var<uniform> params: Params;\n", if quantized { 5 } else { 4 })
}

/// Bindings 0 and 1 of the linear and conv kernels, for the templates that leave them to
/// the splice (`gemm_tiled.wgsl`).
pub const OUT_BIAS_BINDINGS: &str = "@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n@group(0) @binding(1) var<storage, read_write> bias: array<f32>;\n";

/// A `gemm_tiled.wgsl` staging loader: `fn name(row, k)` returning `value` (4 values at
/// k..k+3 of that row), or zeros from K on (a tile may pass the end of K).
pub fn tile_loader(name: &str, row: &str, value: &str) -> String {
    format!(
        "
fn {name}({row}: u32, k: u32) -> vec4<f32> {{
    if (k >= params.k) {{
        return vec4<f32>(0.0);
    }}
    return {value};
}}"
    )
}

/// `src` with the `enable f16;` directive in front when the kernel declares f16 types.
pub fn enable_f16(src: String, f16: bool) -> String {
    if f16 {
        format!("enable f16;\n{src}")
    } else {
        src
    }
}
