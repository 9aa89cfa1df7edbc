//! Browser tests, run by `wasm-pack test --headless --chrome` (flags in webdriver.json give
//! headless Chrome a SwiftShader WebGPU adapter): the GPU path and the CPU backend inside
//! a real browser.

#![cfg(target_arch = "wasm32")]

use easel::gpu::{self, GpuContext, GpuOptions};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn context() -> GpuContext {
    GpuContext::new(&GpuOptions::default()).await.expect("a WebGPU adapter (see webdriver.json flags)")
}

#[wasm_bindgen_test]
async fn webgpu_device_reports_adapter_and_limits() {
    let ctx = context().await;
    let r = &ctx.report;
    assert_eq!(r.backend, "webgpu");
    assert!(!r.vendor.is_empty() || !r.architecture.is_empty(), "no vendor/architecture: {r:?}");
    assert_eq!(r.limits.max_buffer_size, ctx.adapter.limits().max_buffer_size);
    assert_eq!(r.limits.max_storage_buffer_binding_size, ctx.adapter.limits().max_storage_buffer_binding_size);
    assert!(r.limits.max_storage_buffer_binding_size >= 128 << 20);
}

#[wasm_bindgen_test]
async fn kernel_output_equals_hand_computed_values() {
    let ctx = context().await;
    let out = gpu::run_matmul_kernel(&ctx, include_str!("../src/gpu/selftest.wgsl"), [2, 3, 2], &[1., 2., 3., 4., 5., 6.], &[1., 0., 0., 1., 1., 1.], &[10., 20.]).await.unwrap();
    assert_eq!(out, vec![14., 25., 20., 31.]);
}

#[wasm_bindgen_test]
async fn self_test_matmul_matches_cpu_backend() {
    let ctx = context().await;
    let report = gpu::self_test(&ctx).await.expect("self-test");
    assert!(report.relative_error <= gpu::SELF_TEST_TOLERANCE, "relative error {}", report.relative_error);
}

#[wasm_bindgen_test]
async fn a_wrong_kernel_is_caught() {
    let ctx = context().await;
    let broken = include_str!("../src/gpu/selftest.wgsl").replace("a[row * dims.k + i]", "a[row * (dims.k - 1u) + i]");
    let [m, k, n] = [37, 19, 23];
    let (a, b, bias) = (gpu::test_values(m * k, 1), gpu::test_values(k * n, 2), gpu::test_values(n, 3));
    let out = gpu::run_matmul_kernel(&ctx, &broken, [m, k, n], &a, &b, &bias).await.unwrap();
    let reference = easel::ops::cpu::matmul_bias(&a, &b, &bias, m, k, n).unwrap();
    let (rel, _) = gpu::compare(&out, &reference);
    assert!(rel > 0.1, "broken kernel went unnoticed: relative error {rel}");
}

#[wasm_bindgen_test]
fn candle_matmul_runs_in_the_browser() {
    let c = easel::ops::cpu::matmul_bias(&[1., 2., 3., 4.], &[5., 6., 7., 8.], &[0.5, -1.], 2, 2, 2).unwrap();
    assert_eq!(c, vec![19.5, 21., 43.5, 49.]);
}

/// The engine's softmax (its own exp and a fixed-order sum) on hand values in the browser.
#[wasm_bindgen_test]
fn softmax_runs_in_the_browser() {
    use candle_core::{Device, Tensor};
    let x = Tensor::new(&[[0f32, std::f32::consts::LN_2], [1., 1.]], &Device::Cpu).unwrap();
    let y = easel::ops::cpu::softmax_last_dim(&x).unwrap().to_vec2::<f32>().unwrap();
    // exp(0) : exp(ln 2) = 1 : 2 -> [1/3, 2/3]; equal logits -> [1/2, 1/2].
    let expect = [[1. / 3., 2. / 3.], [0.5, 0.5]];
    for (row, want) in y.iter().zip(expect) {
        for (v, w) in row.iter().zip(want) {
            assert!((v - w).abs() < 1e-6, "{v} vs {w}");
        }
    }
}

#[wasm_bindgen_test]
fn clip_tokenizer_matches_transformers_in_the_browser() {
    // The wasm build of `tokenizers` uses a different regex engine: check every case here too.
    use easel::text::{ClipTokenizer, PadToken};
    let cases: serde_json::Value = serde_json::from_str(include_str!("fixtures/tokenizer/cases.json")).unwrap();
    for (pad, key) in [(PadToken::EndOfText, "fast_ids_sd1_77"), (PadToken::Exclamation, "fast_ids_sd2_77")] {
        let tok = ClipTokenizer::from_json(include_bytes!("fixtures/tokenizer/tokenizer.json"), pad).unwrap();
        for c in cases["cases"].as_array().unwrap() {
            let want: Vec<u32> = c[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            assert_eq!(tok.encode(c["text"].as_str().unwrap()).unwrap().ids, want, "case {} {key}", c["index"]);
        }
    }
}

#[wasm_bindgen_test]
fn simd_gemm_matches_f64_reference() {
    use easel::ops::cpu::gemm::{gemm, BMatrix};
    // Odd shapes straddle the micro-tile and block edges; K = 5120 is SD's widest.
    for (m, n, k) in [(1, 1, 1), (5, 9, 3), (37, 23, 19), (133, 41, 300), (6, 17, 5120)] {
        let a = gpu::test_values(m * k, 1);
        let b = gpu::test_values(k * n, 2); // [K, N]
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect(); // [N, K]
        let want: Vec<f64> = (0..m * n).map(|ij| (0..k).map(|p| a[ij / n * k + p] as f64 * b[p * n + ij % n] as f64).sum()).collect();
        let scale = want.iter().fold(1e-30f64, |s, x| s.max(x.abs()));
        for (layout, bm) in [("KN", BMatrix::KN { data: &b, ld: n }), ("NK", BMatrix::NK { data: &bt, ld: k })] {
            let mut c = vec![0.0; m * n];
            gemm(m, n, k, &a, k, &bm, &mut c, n);
            let err = c.iter().zip(&want).fold(0f64, |e, (&x, &y)| e.max((x as f64 - y).abs())) / scale;
            assert!(err < 1e-5, "{layout} {m}x{n}x{k}: relative error {err:e}");
        }
    }
}
