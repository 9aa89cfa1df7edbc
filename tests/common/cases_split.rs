//! Activations above the binding limit: each case runs as on a device whose bindings hold
//! a few KiB, so its tensors (several times that) are bound in windows, one dispatch each.
//! The kernel builder rejects any binding above the limit, so a case that passes did split.
//! Shapes keep windows on 256-byte offsets (WebGPU's usual alignment): planes of 64 or 256
//! values.

use super::{Case, ELEMENTWISE_TOL, MATMUL_TOL};
use easel::ops::{BinaryOp, StorageType, UnaryOp};

const KIB: u64 = 1024;

fn elementwise() -> Vec<Case> {
    vec![
        // 3000 values at 1024 per binding: windows of 1024, 1024, 952.
        Case::new("split silu [3,1000] at 4 KiB", ELEMENTWISE_TOL, |g| {
            let x = g.input("x", &[3, 1000]);
            let y = g.unary(x, UnaryOp::Silu)?;
            g.output(y);
            Ok(())
        })
        .input("x", 3000, 3.0, 301)
        .bind_at(4 * KIB),
        // Both inputs too big: same-shape windows; a broadcast bias stays bound whole.
        Case::new("split add [2,4,16,16] + same, * [1,4,1,1] at 2 KiB", ELEMENTWISE_TOL, |g| {
            let a = g.input("a", &[2, 4, 16, 16]);
            let b = g.input("b", &[2, 4, 16, 16]);
            let s = g.input("s", &[1, 4, 1, 1]);
            let y = g.add(a, b)?;
            let y = g.binary(s, y, BinaryOp::Mul)?;
            g.output(y);
            Ok(())
        })
        .input("a", 2048, 1.0, 302)
        .input("b", 2048, 1.0, 303)
        .input("s", 4, 2.0, 304)
        .bind_at(2 * KIB),
        // Sets of 2 x 256 values, 2 per window: gamma/beta indexed from each window's set.
        Case::new("split group_norm+silu [2,8,16,16] g4 at 4 KiB", ELEMENTWISE_TOL, |g| {
            let x = g.input("x", &[2, 8, 16, 16]);
            let (gamma, beta) = (g.input("gamma", &[8]), g.input("beta", &[8]));
            let y = g.group_norm(x, gamma, beta, 4, 1e-6, true)?;
            g.output(y);
            Ok(())
        })
        .input("x", 4096, 2.0, 305)
        .input("gamma", 8, 1.0, 306)
        .input("beta", 8, 1.0, 307)
        .bind_at(4 * KIB),
        // Sets of 8192 values, one per window, each with its statistics in 2 parts.
        Case::new("split group_norm in parts [1,4,64,64] g2 at 32 KiB", ELEMENTWISE_TOL, |g| {
            let x = g.input("x", &[1, 4, 64, 64]);
            let (gamma, beta) = (g.input("gamma", &[4]), g.input("beta", &[4]));
            let y = g.group_norm(x, gamma, beta, 2, 1e-6, true)?;
            g.output(y);
            Ok(())
        })
        .input("x", 16384, 2.0, 309)
        .input("gamma", 4, 1.0, 310)
        .input("beta", 4, 1.0, 311)
        .bind_at(32 * KIB),
        // Output planes of 256 values, 2 per window; input planes of 64.
        Case::new("split upsample2x [2,4,8,8] at 2 KiB", ELEMENTWISE_TOL, |g| {
            let x = g.input("x", &[2, 4, 8, 8]);
            let y = g.upsample2x(x)?;
            g.output(y);
            Ok(())
        })
        .input("x", 512, 1.0, 308)
        .bind_at(2 * KIB),
    ]
}

fn conv(name: &str, x: [usize; 4], o: usize, k: usize, stride: usize, padding: [usize; 4], storage: StorageType) -> Case {
    let c = x[1];
    Case::new(name, MATMUL_TOL, move |g| {
        let xi = g.input("x", &x);
        let w = g.weight("conv.weight")?;
        let b = g.weight("conv.bias")?;
        let y = g.conv2d(xi, w, Some(b), stride, padding)?;
        g.output(y);
        Ok(())
    })
    .input("x", x.iter().product(), 1.0, 311)
    .weight("conv.weight", &[o, c, k, k], storage, 0.5, 312)
    .weight("conv.bias", &[o], StorageType::F32, 0.5, 313)
}

fn convs() -> Vec<Case> {
    use StorageType::{F32, Q4_0, Q8_0};
    let (p0, p1) = ([0; 4], [1; 4]);
    vec![
        // Input items of 2048 values at 1024 per binding: two windows of 4 channels, the
        // second accumulating; weight chunks of 14 and 6 rows, output windows of 4 channels.
        conv("split conv f32 3x3 [2,8,16,16] -> 20 at 4 KiB", [2, 8, 16, 16], 20, 3, 1, p1, F32).bind_at(4 * KIB),
        conv("split conv f32 3x3 s2 (0,1,0,1) [1,8,16,16] -> 8 at 4 KiB", [1, 8, 16, 16], 8, 3, 2, [0, 1, 0, 1], F32).bind_at(4 * KIB),
        // Input windows of 32 channels (block-aligned weight columns), chunks of 13 rows.
        conv("split conv q8_0 3x3 [1,64,8,8] -> 40 at 8 KiB", [1, 64, 8, 8], 40, 3, 1, p1, Q8_0).bind_at(8 * KIB),
        conv("split conv q4_0 1x1 [2,64,8,8] -> 24 at 8 KiB (vec4 pixels)", [2, 64, 8, 8], 24, 1, 1, p0, Q4_0).bind_at(8 * KIB),
    ]
}

/// A VAE decoder's up block in miniature: norm, conv, upsample, conv, residual, all
/// above the limit, sharing the arena's (larger) buffers.
fn decoder_block() -> Case {
    Case::new("split decoder block [1,16,8,8] -> [1,8,16,16] at 4 KiB", MATMUL_TOL, |g| {
        let x = g.input("x", &[1, 16, 8, 8]);
        let (gamma, beta) = (g.weight("norm.weight")?, g.weight("norm.bias")?);
        let h = g.group_norm(x, gamma, beta, 4, 1e-6, true)?;
        let (w1, b1) = (g.weight("conv1.weight")?, g.weight("conv1.bias")?);
        let h = g.conv2d(h, w1, Some(b1), 1, [1; 4])?;
        let up = g.upsample2x(h)?;
        let (w2, b2) = (g.weight("conv2.weight")?, g.weight("conv2.bias")?);
        let y = g.conv2d(up, w2, Some(b2), 1, [1; 4])?;
        let (ws, bs) = (g.weight("shortcut.weight")?, g.weight("shortcut.bias")?);
        let skip = g.conv2d(up, ws, Some(bs), 1, [0; 4])?;
        let y = g.add(y, skip)?;
        g.output(y);
        Ok(())
    })
    .input("x", 1024, 1.0, 321)
    .weight("norm.weight", &[16], StorageType::F32, 1.0, 322)
    .weight("norm.bias", &[16], StorageType::F32, 1.0, 323)
    .weight("conv1.weight", &[16, 16, 3, 3], StorageType::F32, 0.3, 324)
    .weight("conv1.bias", &[16], StorageType::F32, 0.3, 325)
    .weight("conv2.weight", &[8, 16, 3, 3], StorageType::F32, 0.3, 326)
    .weight("conv2.bias", &[8], StorageType::F32, 0.3, 327)
    .weight("shortcut.weight", &[8, 16, 1, 1], StorageType::F32, 0.3, 328)
    .weight("shortcut.bias", &[8], StorageType::F32, 0.3, 329)
    .bind_at(4 * KIB)
}

/// Token rows over the limit (the UNet's GEGLU projection at 768 px): linear layers and
/// GEGLU in windows of rows aligned in both x and out.
fn rows() -> Vec<Case> {
    let linear = |name: &str, storage: StorageType| {
        Case::new(name, MATMUL_TOL, |g| {
            let x = g.input("x", &[2, 150, 64]);
            let (w, b) = (g.weight("proj.weight")?, g.weight("proj.bias")?);
            let h = g.linear(x, w, Some(b))?;
            let y = g.geglu(h)?;
            g.output(y);
            Ok(())
        })
        .input("x", 2 * 150 * 64, 1.0, 331)
        .weight("proj.weight", &[80, 64], storage, 0.3, 332)
        .weight("proj.bias", &[80], StorageType::F32, 0.3, 333)
        .bind_at(8 * KIB)
    };
    // x 75 KiB, the projection 94 KiB, GEGLU's output 47 KiB, at 8 KiB per binding.
    vec![linear("split linear f32 + geglu [2,150,64] -> 80 at 8 KiB", StorageType::F32), linear("split linear q8_0 + geglu [2,150,64] -> 80 at 8 KiB", StorageType::Q8_0)]
}

/// A map held as bands of rows (`models::vae_bands`): halo rows sliced from the
/// neighbours and concatenated, a conv per band, GroupNorm from all bands' statistics,
/// every tensor over the limit.
fn bands() -> Case {
    Case::new("split bands: slice, concat, conv, group_norm [1,8,24,16] at 4 KiB", MATMUL_TOL, |g| {
        let x = g.input("x", &[1, 8, 24, 16]);
        let parts: Vec<_> = (0..3).map(|i| g.slice(x, 2, 8 * i, 8)).collect::<Result<_, _>>()?;
        let (gamma, beta) = (g.weight("norm.weight")?, g.weight("norm.bias")?);
        let normed = g.group_norm_bands(&parts, gamma, beta, 4, 1e-6, true)?;
        let (w, b) = (g.weight("conv.weight")?, g.weight("conv.bias")?);
        // The middle band with a halo row from each neighbour, no zero padding between.
        let above = g.slice(normed[0], 2, 7, 1)?;
        let below = g.slice(normed[2], 2, 0, 1)?;
        let mid = g.concat(&[above, normed[1], below], 2)?;
        let y = g.conv2d(mid, w, Some(b), 1, [0, 0, 1, 1])?;
        g.output(y);
        Ok(())
    })
    .input("x", 8 * 24 * 16, 2.0, 341)
    .weight("norm.weight", &[8], StorageType::F32, 1.0, 342)
    .weight("norm.bias", &[8], StorageType::F32, 1.0, 343)
    .weight("conv.weight", &[8, 8, 3, 3], StorageType::F32, 0.3, 344)
    .weight("conv.bias", &[8], StorageType::F32, 0.3, 345)
    .bind_at(4 * KIB)
}

/// Every split case.
pub fn cases() -> Vec<Case> {
    [elementwise(), convs(), vec![decoder_block()], rows(), vec![bands()]].into_iter().flatten().collect()
}
