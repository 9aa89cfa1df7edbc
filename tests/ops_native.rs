//! Every op on the GPU (Vulkan; lavapipe on CI) against the CPU backend, natively.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use easel::gpu::{GpuContext, GpuOptions};

fn context() -> GpuContext {
    pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter (install mesa-vulkan-drivers)")
}

fn check(cases: Vec<common::Case>) {
    assert!(!cases.is_empty(), "no cases");
    let ctx = context();
    let failures = pollster::block_on(common::run_all(&ctx, cases));
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn core_ops_match_cpu() {
    check(common::cases_core::cases());
}

#[test]
fn conv_ops_match_cpu() {
    let cases = common::cases_conv::cases();
    if !cases.is_empty() {
        check(cases);
    }
}

#[test]
fn norm_ops_match_cpu() {
    let cases = common::cases_norm::cases();
    if !cases.is_empty() {
        check(cases);
    }
}

#[test]
fn attention_matches_cpu() {
    let cases = common::cases_attention::cases();
    if !cases.is_empty() {
        check(cases);
    }
}

#[test]
fn misc_ops_match_cpu() {
    let cases = common::cases_misc::cases();
    if !cases.is_empty() {
        check(cases);
    }
}
