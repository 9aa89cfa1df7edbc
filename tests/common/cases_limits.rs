//! Tensors over WebGPU's default 128 MiB binding, for a device opened with that default
//! (`DEFAULT_BINDING`): a weight split into chunks (one dispatch each), and an activation
//! bound in windows. Shared by the native and browser suites.

use super::{Case, MATMUL_TOL};
use easel::ops::{StorageType, UnaryOp};

/// WebGPU's default maxStorageBufferBindingSize.
pub const DEFAULT_BINDING: u64 = 128 << 20;

/// `lm_head`-like linear: [8200, 4096] f32 is 134.3 MB, two chunks at 128 MiB.
pub fn big_weight() -> Case {
    let (n, k, m) = (8200, 4096, 3);
    Case::new("linear [3, 4096] x [8200, 4096]^T (134 MB weight)", MATMUL_TOL, move |g| {
        let x = g.input("x", &[m, k]);
        let w = g.weight("lm_head.weight")?;
        let y = g.linear(x, w, None)?;
        g.output(y);
        Ok(())
    })
    .input("x", m * k, 1.0, 8)
    .weight("lm_head.weight", &[n, k], StorageType::F32, 1.0, 7)
}

/// A VAE-decoder-sized activation: [1, 136, 512, 512] f32 is 136 MiB, through SiLU, a
/// residual add and a 1x1 conv (windows of input channels, accumulated).
pub fn big_activation() -> Case {
    let (c, side, o) = (136, 512, 4);
    Case::new("silu, add, 1x1 conv on [1, 136, 512, 512] (136 MiB)", MATMUL_TOL, move |g| {
        let x = g.input("x", &[1, c, side, side]);
        let h = g.unary(x, UnaryOp::Silu)?;
        let h = g.add(h, x)?;
        let (w, b) = (g.weight("conv.weight")?, g.weight("conv.bias")?);
        let y = g.conv2d(h, w, Some(b), 1, [0; 4])?;
        g.output(y);
        Ok(())
    })
    .input("x", c * side * side, 1.0, 15)
    .weight("conv.weight", &[o, c, 1, 1], StorageType::F32, 0.2, 13)
    .weight("conv.bias", &[o], StorageType::F32, 0.2, 14)
}

/// Both.
pub fn cases() -> Vec<Case> {
    vec![big_weight(), big_activation()]
}
