//! Every op on Chrome's WebGPU (SwiftShader headless) against the CPU backend in wasm.

#![cfg(target_arch = "wasm32")]

mod common;

use easel::gpu::{GpuContext, GpuOptions, KernelChoice};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn check_with(kernels: KernelChoice, cases: Vec<common::Case>) {
    // An empty list would pass having checked nothing.
    assert!(!cases.is_empty(), "no cases");
    let ctx = GpuContext::new(&GpuOptions { kernels, ..Default::default() }).await.expect("a WebGPU adapter (see webdriver.json)");
    assert_eq!(ctx.tiled_kernels(), kernels == KernelChoice::Tiled || (kernels == KernelChoice::Auto && !ctx.is_software()));
    let failures = common::run_all(&ctx, cases).await;
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
}

async fn check(cases: Vec<common::Case>) {
    check_with(KernelChoice::Auto, cases).await;
}

/// The tiled kernels (hardware GPUs' default), forced on SwiftShader, on every linear and
/// conv case (each weight format, edges, split bindings).
#[wasm_bindgen_test]
async fn tiled_linear_and_conv_kernels_match_cpu() {
    let cases = [common::cases_core::cases(), common::cases_conv::cases(), common::cases_split::cases()].into_iter().flatten().collect();
    check_with(KernelChoice::Tiled, cases).await;
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
