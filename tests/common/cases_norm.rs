//! GPU-vs-CPU cases for GroupNorm, LayerNorm, RmsNorm and softmax: groups and rows off the
//! 64/256 workgroup sizes, batch > 1, channel counts not divisible by 4, 3D input, both
//! workgroup-size variants (sets of <= 1024 and > 1024 values), few large groups (stats in
//! parts), affine parameters as f32 weights and as activations.

use super::{Case, ELEMENTWISE_TOL};
use easel::ops::{StorageType, UnaryOp};

/// GroupNorm on x with gamma/beta as f32 weights; `shift` is added to x first so the mean
/// is far from zero (the variance must be taken of x - mean to stay accurate).
fn group_norm_case(x_shape: &[usize], groups: usize, eps: f32, silu: bool, shift: f32, seed: u32) -> Case {
    let c = x_shape[1];
    let xs = x_shape.to_vec();
    let name = format!("group_norm {x_shape:?} {groups} groups eps {eps:e}{}{}", if silu { " silu" } else { "" }, if shift != 0.0 { format!(" x+{shift}") } else { String::new() });
    Case::new(&name, ELEMENTWISE_TOL, move |g| {
        let mut x = g.input("x", &xs);
        if shift != 0.0 {
            x = g.unary(x, UnaryOp::Affine { mul: 1.0, add: shift })?;
        }
        let (gamma, beta) = (g.weight("norm.weight")?, g.weight("norm.bias")?);
        let y = g.group_norm(x, gamma, beta, groups, eps, silu)?;
        g.output(y);
        Ok(())
    })
    .input("x", x_shape.iter().product(), 2.0, seed)
    .weight("norm.weight", &[c], StorageType::F32, 1.5, seed + 1)
    .weight("norm.bias", &[c], StorageType::F32, 0.5, seed + 2)
}

fn group_norms() -> Vec<Case> {
    vec![
        group_norm_case(&[2, 12, 5, 7], 4, 1e-5, false, 0.0, 1),
        group_norm_case(&[2, 12, 5, 7], 4, 1e-5, true, 0.0, 4),
        group_norm_case(&[1, 64, 8, 8], 32, 1e-6, false, 0.0, 7),
        group_norm_case(&[1, 64, 8, 8], 32, 1e-6, true, 0.0, 10),
        group_norm_case(&[2, 6, 9], 3, 1e-5, false, 0.0, 13),
        group_norm_case(&[2, 6, 9], 3, 1e-6, true, 0.0, 16),
        // 12800 values per group: the 256-wide variant, many values per invocation.
        group_norm_case(&[1, 32, 40, 40], 4, 1e-6, false, 0.0, 19),
        group_norm_case(&[1, 32, 40, 40], 4, 1e-5, true, 0.0, 22),
        group_norm_case(&[2, 10, 6, 6], 5, 1e-5, true, 8.0, 25),
        // Few groups of > 8192 values: statistics in parts, combined (Chan et al.), then an
        // elementwise pass; a mean far from zero, and 3 parts of unequal length.
        group_norm_case(&[1, 32, 40, 40], 4, 1e-6, true, 8.0, 31),
        group_norm_case(&[2, 4, 56, 56], 1, 1e-5, false, 0.0, 34),
        // Large groups whose planes are not a multiple of 4: one workgroup per group.
        group_norm_case(&[2, 6, 61, 67], 2, 1e-5, false, 0.0, 37),
        // gamma/beta as activations (e.g. computed by an earlier node).
        Case::new("group_norm [2,15,3,3] 5 groups, gamma/beta inputs", ELEMENTWISE_TOL, |g| {
            let x = g.input("x", &[2, 15, 3, 3]);
            let (gamma, beta) = (g.input("gamma", &[15]), g.input("beta", &[15]));
            let y = g.group_norm(x, gamma, beta, 5, 1e-5, true)?;
            g.output(y);
            Ok(())
        })
        .input("x", 2 * 15 * 9, 1.0, 28)
        .input("gamma", 15, 1.5, 29)
        .input("beta", 15, 0.5, 30),
    ]
}

fn layer_norm_case(x_shape: &[usize], seed: u32) -> Case {
    let d = *x_shape.last().unwrap();
    let xs = x_shape.to_vec();
    Case::new(&format!("layer_norm {x_shape:?}"), ELEMENTWISE_TOL, move |g| {
        let x = g.input("x", &xs);
        let (gamma, beta) = (g.weight("ln.weight")?, g.weight("ln.bias")?);
        let y = g.layer_norm(x, gamma, beta, 1e-5)?;
        g.output(y);
        Ok(())
    })
    .input("x", x_shape.iter().product(), 3.0, seed)
    .weight("ln.weight", &[d], StorageType::F32, 1.5, seed + 1)
    .weight("ln.bias", &[d], StorageType::F32, 0.5, seed + 2)
}

fn rms_norm_case(x_shape: &[usize], seed: u32) -> Case {
    let d = *x_shape.last().unwrap();
    let xs = x_shape.to_vec();
    Case::new(&format!("rms_norm {x_shape:?}"), ELEMENTWISE_TOL, move |g| {
        let x = g.input("x", &xs);
        let gamma = g.weight("rms.weight")?;
        let y = g.rms_norm(x, gamma, 1e-6)?;
        g.output(y);
        Ok(())
    })
    .input("x", x_shape.iter().product(), 3.0, seed)
    .weight("rms.weight", &[d], StorageType::F32, 1.5, seed + 1)
}

fn row_norms() -> Vec<Case> {
    vec![
        layer_norm_case(&[3, 5, 37], 41),
        layer_norm_case(&[2, 768], 44),
        layer_norm_case(&[1, 4, 1280], 47),
        Case::new("layer_norm [3,70], gamma/beta inputs", ELEMENTWISE_TOL, |g| {
            let x = g.input("x", &[3, 70]);
            let (gamma, beta) = (g.input("gamma", &[70]), g.input("beta", &[70]));
            let y = g.layer_norm(x, gamma, beta, 1e-6)?;
            g.output(y);
            Ok(())
        })
        .input("x", 3 * 70, 1.0, 50)
        .input("gamma", 70, 1.5, 51)
        .input("beta", 70, 0.5, 52),
        rms_norm_case(&[4, 33], 53),
        rms_norm_case(&[2, 3, 64], 55),
        rms_norm_case(&[2, 1100], 57),
        plain_norm_case(&[3, 5, 40], false, 58),
        plain_norm_case(&[2, 1100], true, 59),
    ]
}

/// RMSNorm / LayerNorm with no weight (checkpoints made with elementwise_affine=False).
fn plain_norm_case(x_shape: &[usize], layer: bool, seed: u32) -> Case {
    let shape = x_shape.to_vec();
    let what = if layer { "layer_norm" } else { "rms_norm" };
    Case::new(&format!("{what} without weight {x_shape:?}"), ELEMENTWISE_TOL, move |g| {
        let x = g.input("x", &shape);
        let y = g.norm_plain(x, 1e-6, layer)?;
        g.output(y);
        Ok(())
    })
    .input("x", x_shape.iter().product(), 2.0, seed)
}

/// Softmax on inputs in [-20, 20): without the row max subtracted, exp would lose the
/// small entries against the large ones, and at +-100 overflow.
fn softmax_case(x_shape: &[usize], seed: u32) -> Case {
    let xs = x_shape.to_vec();
    Case::new(&format!("softmax {x_shape:?}"), ELEMENTWISE_TOL, move |g| {
        let x = g.input("x", &xs);
        let y = g.softmax(x)?;
        g.output(y);
        Ok(())
    })
    .input("x", x_shape.iter().product(), 20.0, seed)
}

fn softmaxes() -> Vec<Case> {
    vec![softmax_case(&[3, 7], 61), softmax_case(&[2, 4, 77], 62), softmax_case(&[1, 8193], 63), softmax_case(&[5, 1030], 64), softmax_case(&[65600, 3], 65)]
}

/// GlobalResponseNorm's scale: channels below and above one workgroup (256), one position.
fn response_norms() -> Vec<Case> {
    let case = |s: [usize; 3], seed: u32| {
        Case::new(&format!("response_norm {s:?}"), ELEMENTWISE_TOL, move |g| {
            let x = g.input("x", &s);
            let y = g.response_norm(x, 1e-6)?;
            g.output(y);
            Ok(())
        })
        .input("x", s.iter().product(), 1.0, seed)
    };
    vec![case([2, 16, 64], 81), case([1, 49, 300], 82), case([3, 1, 7], 83), case([1, 1024, 3072], 84)]
}

/// Every norm case.
pub fn cases() -> Vec<Case> {
    [group_norms(), row_norms(), softmaxes(), response_norms()].into_iter().flatten().collect()
}
