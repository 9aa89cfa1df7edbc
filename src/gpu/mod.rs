//! The GPU layer: one device per engine, on Vulkan natively and WebGPU in the browser.
//!
//! `context` requests the adapter and device, `report` describes them for the page and the
//! CLI, `readback` copies results to the host without blocking, `selftest` proves the whole
//! path works by checking a small matmul against the CPU backend.

mod context;
mod readback;
mod report;
mod selftest;
#[cfg(target_arch = "wasm32")]
mod web_info;

pub use context::{FastArithmetic, GpuContext, GpuOptions, KernelChoice, Precision};
pub use readback::{read_bytes, read_f32, wait_idle};
pub use report::{AdapterReport, LimitsReport};
pub use selftest::{compare, run_matmul_kernel, self_test, test_values, SelfTestReport, SELF_TEST_TOLERANCE};
