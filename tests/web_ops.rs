//! Every op on Chrome's WebGPU (SwiftShader headless) against the CPU backend in wasm.

#![cfg(target_arch = "wasm32")]

mod common;

use easel::gpu::{GpuContext, GpuOptions, KernelChoice, Precision};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn context_with(kernels: KernelChoice) -> GpuContext {
    let ctx = GpuContext::new(&GpuOptions { kernels, ..Default::default() }).await.expect("a WebGPU adapter (see webdriver.json)");
    assert_eq!(ctx.tiled_kernels(), kernels == KernelChoice::Tiled || (kernels == KernelChoice::Auto && !ctx.is_software()));
    // wgpu's web backend cannot request `subgroups`: the norms reduce in workgroup-memory
    // trees here (natively, lavapipe checks the subgroup reductions).
    assert!(!ctx.subgroups() && !ctx.report.subgroups, "{}", ctx.report.summary());
    ctx
}

async fn check_on(ctx: &GpuContext, cases: Vec<common::Case>) {
    // An empty list would pass having checked nothing.
    assert!(!cases.is_empty(), "no cases");
    let failures = common::run_all(ctx, cases).await;
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
}

async fn check(cases: Vec<common::Case>) {
    check_on(&context_with(KernelChoice::Auto).await, cases).await;
}

/// The tiled kernels (hardware GPUs' default), forced on SwiftShader, on every linear and
/// conv case (each weight format, edges, split bindings): in 64-row tiles, then in the
/// tiles each case's M calls for (16 or 32 rows for most: the cases are small).
#[wasm_bindgen_test]
async fn tiled_linear_and_conv_kernels_match_cpu() {
    let ctx = context_with(KernelChoice::Tiled).await;
    for rows in [Some(64), None] {
        let cases = [common::cases_core::cases(), common::cases_conv::cases(), common::cases_split::cases()].into_iter().flatten().collect();
        check_on(&ctx.with_tile_rows(rows), cases).await;
    }
}

/// The fast precision in Chrome: Q8_0 linears on `dot4I8Packed` (Chrome's WGSL has
/// `packed_4x8_integer_dot_product`) with both kernel sets, and Q8_0 convs with the tiled
/// ones, against the same int8 arithmetic on the CPU; f16 tiles where the adapter has `shader-f16` (SwiftShader has
/// not: then the report must say the fast precision runs without them).
#[wasm_bindgen_test]
async fn fast_precision_matches_its_cpu_references() {
    for kernels in [KernelChoice::Simple, KernelChoice::Tiled] {
        let ctx = GpuContext::new(&GpuOptions { kernels, precision: Precision::Fast, ..Default::default() }).await.expect("a WebGPU adapter (see webdriver.json)");
        assert!(ctx.fast_arithmetic().int8_dot, "Chrome's WGSL has packed_4x8_integer_dot_product: {}", ctx.report.summary());
        let failures = common::cases_fast::run_int8_cases(&ctx).await;
        assert!(failures.is_empty(), "{kernels:?}: {} failed:\n{}", failures.len(), failures.join("\n"));
        if kernels == KernelChoice::Tiled {
            // By M above (mostly 16-row tiles here); 64-row tiles too.
            let tall = ctx.with_tile_rows(Some(64));
            let failures = common::cases_fast::run_int8_cases(&tall).await;
            assert!(failures.is_empty(), "64-row tiles: {} failed:\n{}", failures.len(), failures.join("\n"));
            for c in [&ctx, &tall] {
                let failures = common::cases_fast::run_int8_conv_cases(c).await;
                assert!(failures.is_empty(), "int8 convs, tile rows {:?}: {} failed:\n{}", c.forced_tile_rows(), failures.len(), failures.join("\n"));
            }
            assert_eq!(ctx.fast_arithmetic().f16_tiles, ctx.report.shader_f16, "{}", ctx.report.summary());
            if ctx.report.shader_f16 {
                let failures = common::run_all(&ctx, common::cases_fast::f16_tile_cases()).await;
                assert!(failures.is_empty(), "f16 tiles: {} failed:\n{}", failures.len(), failures.join("\n"));
            } else {
                assert_eq!(ctx.report.precision, "fast (int8 dot)");
                common::log("f16 tiles not checked here: this adapter has no shader-f16 (natively, lavapipe checks them)");
            }
        }
    }
}

#[wasm_bindgen_test]
async fn core_ops_match_cpu() {
    check(common::cases_core::cases()).await;
}

#[wasm_bindgen_test]
async fn conv_ops_match_cpu() {
    check(common::cases_conv::cases()).await;
}

#[wasm_bindgen_test]
async fn norm_ops_match_cpu() {
    check(common::cases_norm::cases()).await;
}

#[wasm_bindgen_test]
async fn attention_matches_cpu() {
    check(common::cases_attention::cases()).await;
}

#[wasm_bindgen_test]
async fn misc_ops_match_cpu() {
    check(common::cases_misc::cases()).await;
}

#[wasm_bindgen_test]
async fn activations_above_the_binding_limit_match_cpu() {
    check(common::cases_split::cases()).await;
}
