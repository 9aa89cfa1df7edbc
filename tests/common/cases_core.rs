//! GPU-vs-CPU cases for linear/matmul (f32, Q8_0, Q4_0, split weights), elementwise ops and
//! data movement. Shapes include sizes off the 4x4 / 32x32 tiles, batch > 1 and channel
//! counts not divisible by 4.

use super::{Case, ELEMENTWISE_TOL, MATMUL_TOL};
use easel::ops::{BinaryOp, StorageType, UnaryOp};

fn linear_case(name: &str, x_shape: &[usize], n: usize, storage: StorageType, bias: bool) -> Case {
    let k = *x_shape.last().unwrap();
    let xs = x_shape.to_vec();
    let mut c = Case::new(name, MATMUL_TOL, move |g| {
        let x = g.input("x", &xs);
        let w = g.weight("proj.weight")?;
        let b = if bias { Some(g.weight("proj.bias")?) } else { None };
        let y = g.linear(x, w, b)?;
        g.output(y);
        Ok(())
    })
    .input("x", x_shape.iter().product(), 1.0, 11)
    .weight("proj.weight", &[n, k], storage, 0.5, 12);
    if bias {
        c = c.weight("proj.bias", &[n], StorageType::F32, 0.5, 13);
    }
    c
}

fn linears() -> Vec<Case> {
    use StorageType::*;
    vec![
        linear_case("linear f32 1x8 -> 5", &[1, 8], 5, F32, true),
        linear_case("linear f32 37x19 -> 13 (K % 4 != 0)", &[37, 19], 13, F32, true),
        linear_case("linear f32 [2,7,64] -> 50", &[2, 7, 64], 50, F32, false),
        linear_case("linear f32 3x5120 -> 40", &[3, 5120], 40, F32, true),
        linear_case("linear q8_0 33x64 -> 70", &[33, 64], 70, Q8_0, true),
        // Cross-attention's 77 text tokens (tiled: three 32-row tiles, the last partial).
        linear_case("linear q8_0 77x96 -> 70", &[77, 96], 70, Q8_0, true),
        linear_case("linear q8_0 5x320 -> 33", &[5, 320], 33, Q8_0, false),
        linear_case("linear q8_0 2x5120 -> 17", &[2, 5120], 17, Q8_0, true),
        linear_case("linear q4_0 33x64 -> 70", &[33, 64], 70, Q4_0, true),
        linear_case("linear q4_0 [2,3,320] -> 45", &[2, 3, 320], 45, Q4_0, true),
        linear_case("linear q4_0 2x5120 -> 17", &[2, 5120], 17, Q4_0, false),
        // f16 weights stay f16 on the GPU (K % 4 == 0), else they are widened to f32.
        linear_case("linear f16 [2,7,64] -> 50", &[2, 7, 64], 50, F16, true),
        linear_case("linear f16 3x5120 -> 40", &[3, 5120], 40, F16, false),
        linear_case("linear f16 37x19 -> 13 (widened, K % 4 != 0)", &[37, 19], 13, F16, true),
        linear_case("linear f16 split 9x64 -> 300", &[9, 64], 300, F16, true).split_at(64 * 64 * 2),
        // Weights split into 64-row chunks (16 KiB bindings), one dispatch each.
        linear_case("linear f32 split 9x64 -> 300", &[9, 64], 300, F32, true).split_at(64 * 64 * 4),
        linear_case("linear q8_0 split 9x64 -> 300", &[9, 64], 300, Q8_0, true).split_at(64 * 68),
        linear_case("linear q4_0 split 9x64 -> 300", &[9, 64], 300, Q4_0, false).split_at(40 * 36),
    ]
}

fn matmuls() -> Vec<Case> {
    vec![
        Case::new("matmul [2,3,17,9] @ [2,3,9,11]", MATMUL_TOL, |g| {
            let a = g.input("a", &[2, 3, 17, 9]);
            let b = g.input("b", &[2, 3, 9, 11]);
            let y = g.matmul(a, b, false)?;
            g.output(y);
            Ok(())
        })
        .input("a", 2 * 3 * 17 * 9, 1.0, 1)
        .input("b", 2 * 3 * 9 * 11, 1.0, 2),
        Case::new("matmul [4,33,40] @ [4,21,40]^T", MATMUL_TOL, |g| {
            let a = g.input("a", &[4, 33, 40]);
            let b = g.input("b", &[4, 21, 40]);
            let y = g.matmul(a, b, true)?;
            g.output(y);
            Ok(())
        })
        .input("a", 4 * 33 * 40, 1.0, 3)
        .input("b", 4 * 21 * 40, 1.0, 4),
    ]
}

fn unary_case(name: &str, op: UnaryOp) -> Case {
    Case::new(name, ELEMENTWISE_TOL, move |g| {
        let x = g.input("x", &[3, 1001]);
        let y = g.unary(x, op)?;
        g.output(y);
        Ok(())
    })
    .input("x", 3 * 1001, 6.0, 21)
}

fn binary_case(name: &str, a: &[usize], b: &[usize], op: BinaryOp) -> Case {
    let (sa, sb) = (a.to_vec(), b.to_vec());
    Case::new(name, ELEMENTWISE_TOL, move |g| {
        let x = g.input("a", &sa);
        let y = g.input("b", &sb);
        let z = g.binary(x, y, op)?;
        g.output(z);
        Ok(())
    })
    .input("a", a.iter().product(), 1.0, 31)
    .input("b", b.iter().product(), 1.0, 32)
}

/// One tensor as both operands, an input and an activation: every binding is writable, so
/// the GPU binds the second from a copy (WebGPU refuses overlapping writable bindings).
fn same_tensor_twice_case() -> Case {
    Case::new("x * x and silu(x) + silu(x), one tensor bound twice", ELEMENTWISE_TOL, |g| {
        let x = g.input("a", &[3, 70]);
        let sq = g.mul(x, x)?;
        let s = g.unary(x, UnaryOp::Silu)?;
        let twice = g.add(s, s)?;
        g.output(sq);
        g.output(twice);
        Ok(())
    })
    .input("a", 210, 1.0, 33)
}

fn elementwise() -> Vec<Case> {
    vec![
        same_tensor_twice_case(),
        unary_case("silu", UnaryOp::Silu),
        unary_case("gelu (erf)", UnaryOp::Gelu),
        unary_case("gelu (tanh)", UnaryOp::GeluTanh),
        unary_case("quick_gelu", UnaryOp::QuickGelu),
        unary_case("relu", UnaryOp::Relu),
        unary_case("tanh", UnaryOp::Tanh),
        unary_case("affine 0.18215 x - 1", UnaryOp::Affine { mul: 0.18215, add: -1.0 }),
        binary_case("add [2,3,5,7] + [3,1,7]", &[2, 3, 5, 7], &[3, 1, 7], BinaryOp::Add),
        binary_case("mul [4,1] * [1,6]", &[4, 1], &[1, 6], BinaryOp::Mul),
        binary_case("sub [5,9] - [5,9]", &[5, 9], &[5, 9], BinaryOp::Sub),
        binary_case("add [2,35,6,6] + [2,35,1,1]", &[2, 35, 6, 6], &[2, 35, 1, 1], BinaryOp::Add),
        Case::new("geglu [2,5,74] -> [2,5,37]", ELEMENTWISE_TOL, |g| {
            let x = g.input("x", &[2, 5, 74]);
            let y = g.geglu(x)?;
            g.output(y);
            Ok(())
        })
        .input("x", 2 * 5 * 74, 3.0, 41),
    ]
}

/// A weight moved as data (aMUSEd's transpose-conv weight is permuted into linear rows):
/// f16 and block formats are widened on the GPU first; the CPU dequantizes the same way.
fn permuted_weight(storage: StorageType) -> Case {
    Case::new(&format!("permute {} weight [8,16,2,2] -> (1,2,3,0)", storage.name()), ELEMENTWISE_TOL, |g| {
        let w = g.weight("up.weight")?;
        let y = g.permute(w, &[1, 2, 3, 0])?;
        g.output(y);
        Ok(())
    })
    .weight("up.weight", &[8, 16, 2, 2], storage, 1.0, 59)
}

fn data_movement() -> Vec<Case> {
    vec![
        permuted_weight(StorageType::F16),
        permuted_weight(StorageType::Q8_0),
        permuted_weight(StorageType::Q4_0),
        Case::new("permute [2,3,4,5] -> (0,2,3,1)", ELEMENTWISE_TOL, |g| {
            let x = g.input("x", &[2, 3, 4, 5]);
            let y = g.permute(x, &[0, 2, 3, 1])?;
            g.output(y);
            Ok(())
        })
        .input("x", 120, 1.0, 51),
        Case::new("slice [2,10,7] axis 1 [3,8)", ELEMENTWISE_TOL, |g| {
            let x = g.input("x", &[2, 10, 7]);
            let y = g.slice(x, 1, 3, 5)?;
            g.output(y);
            Ok(())
        })
        .input("x", 140, 1.0, 52),
        Case::new("concat [2,3,4,4] ++ [2,5,4,4] axis 1", ELEMENTWISE_TOL, |g| {
            let a = g.input("a", &[2, 3, 4, 4]);
            let b = g.input("b", &[2, 5, 4, 4]);
            let y = g.concat(&[a, b], 1)?;
            g.output(y);
            Ok(())
        })
        .input("a", 96, 1.0, 53)
        .input("b", 160, 1.0, 54),
        // NCHW -> N(HW)C through reshape (no copy) and permute, as UNet transformer blocks do,
        // followed by a linear layer and an add: buffers are reused across the chain.
        Case::new("chain reshape/permute/linear/add", MATMUL_TOL, |g| {
            let x = g.input("x", &[2, 12, 3, 5]);
            let r = g.reshape(x, &[2, 12, 15])?;
            let t = g.permute(r, &[0, 2, 1])?;
            let w = g.weight("w")?;
            let y = g.linear(t, w, None)?;
            let z = g.add(y, t)?;
            let s = g.unary(z, UnaryOp::Silu)?;
            g.output(s);
            g.output(y);
            Ok(())
        })
        .input("x", 360, 1.0, 55)
        .weight("w", &[12, 12], StorageType::F32, 0.5, 56),
    ]
}

/// Every core case.
pub fn cases() -> Vec<Case> {
    [linears(), matmuls(), elementwise(), data_movement()].into_iter().flatten().collect()
}
