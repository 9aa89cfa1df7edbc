//! CPU backend on candle-core: the numerical reference for every GPU kernel, and the
//! fallback when WebGPU is missing or only a software adapter is offered.

mod attention;
mod conv_transpose;
mod elementwise;
mod exec;
mod f32x4;
pub mod gemm;
mod gemm_ops;
mod gemm_par;
mod im2col;
mod math;
mod nn;
mod pack;
pub mod profile;
mod resident;
mod stored;
pub mod threads;
mod wide;
pub mod winograd;

pub use attention::softmax_last_dim;
pub use exec::{gemm_conv, pack_session_linears, CpuExecutor, HostTensor};
pub use nn::{timestep_embedding, timestep_frequencies};
pub use resident::CpuTensors;

/// Whether attention on this backend makes each batch x heads x L x L scores tensor whole
/// (only with EASEL_CPU_ATTENTION=candle): the size check counts it then.
pub fn attention_makes_whole_scores() -> bool {
    !exec::blocked_attention()
}

/// The page's arithmetic asked of the native CPU backend: `EASEL_CPU_ARITHMETIC=page` (the
/// SIMD128 builds: no fused multiply-adds) or `=page-fused` (the relaxed-SIMD builds on a
/// CPU whose multiply-add fuses: x86-64 with FMA, as the native kernels need). The page
/// says which it ran (`#diag-simd`'s `data-fused`).
#[cfg(not(target_arch = "wasm32"))]
fn asked_arithmetic() -> Option<bool> {
    static ASKED: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();
    *ASKED.get_or_init(|| match std::env::var("EASEL_CPU_ARITHMETIC").as_deref() {
        Ok("page") => Some(false),
        Ok("page-fused") => Some(true),
        Ok(other) => {
            eprintln!("EASEL_CPU_ARITHMETIC={other}: expected page or page-fused; computing natively");
            None
        }
        Err(_) => None,
    })
}

/// Whether the native CPU backend computes as the page does, bit for bit (either of
/// `EASEL_CPU_ARITHMETIC=page` / `page-fused`): our GEMM for linear layers. Tests that hold
/// the CLI's images to the page's use it; by default linears whose weights a session did
/// not pack (`pack_session_linears`) use candle's matmul.
pub fn page_arithmetic() -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    return asked_arithmetic().is_some();
    #[cfg(target_arch = "wasm32")]
    true
}

/// Whether the native GEMM must round each multiply and add apart, as the page's SIMD128
/// builds do (`EASEL_CPU_ARITHMETIC=page`). Otherwise it fuses where the CPU can (about
/// twice the arithmetic per instruction), as the relaxed-SIMD builds do in the page.
#[cfg(not(target_arch = "wasm32"))]
pub fn unfused_gemm() -> bool {
    asked_arithmetic() == Some(false)
}

use candle_core::{Device, Tensor};

use crate::error::CpuError;

/// `a[m,k] @ b[k,n] + bias[n]`, row-major, on candle's CPU device.
pub fn matmul_bias(a: &[f32], b: &[f32], bias: &[f32], m: usize, k: usize, n: usize) -> Result<Vec<f32>, CpuError> {
    let dev = Device::Cpu;
    let a = Tensor::from_slice(a, (m, k), &dev)?;
    let b = Tensor::from_slice(b, (k, n), &dev)?;
    let bias = Tensor::from_slice(bias, (1, n), &dev)?;
    let c = a.matmul(&b)?.broadcast_add(&bias)?;
    Ok(c.flatten_all()?.to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_bias_matches_hand_computation() {
        // [[1,2],[3,4]] @ [[5,6],[7,8]] = [[19,22],[43,50]], plus bias [0.5,-1].
        let c = matmul_bias(&[1., 2., 3., 4.], &[5., 6., 7., 8.], &[0.5, -1.], 2, 2, 2).unwrap();
        assert_eq!(c, vec![19.5, 21., 43.5, 49.]);
    }
}
