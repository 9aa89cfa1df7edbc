//! GPU-vs-CPU cases for the conv kernels: 3x3 and 1x1 convs (f32, Q8_0, Q4_0), stride 2
//! with symmetric and taming's asymmetric padding, odd sizes off the 4x4 / 32x32 tiles,
//! channel counts not divisible by 4, batch 2, weights split into chunks, a 5184-long
//! inner dimension, 1x1 convs on both input paths (gather, vec4 pixels), and nearest 2x
//! upsampling; depthwise and transposed convs.

use super::{Case, ELEMENTWISE_TOL, MATMUL_TOL};
use easel::ops::StorageType;

/// One conv layer's shape: x [B, C, H, W], O output channels, a k x k kernel.
struct Conv {
    x: [usize; 4],
    o: usize,
    k: usize,
    stride: usize,
    padding: [usize; 4],
}

fn conv_case(name: &str, s: Conv, storage: StorageType, bias: bool) -> Case {
    let Conv { x, o, k, stride, padding } = s;
    let c = x[1];
    let mut case = Case::new(name, MATMUL_TOL, move |g| {
        let xi = g.input("x", &x);
        let w = g.weight("conv.weight")?;
        let b = if bias { Some(g.weight("conv.bias")?) } else { None };
        let y = g.conv2d(xi, w, b, stride, padding)?;
        g.output(y);
        Ok(())
    })
    .input("x", x.iter().product(), 1.0, 61)
    .weight("conv.weight", &[o, c, k, k], storage, 0.5, 62);
    if bias {
        case = case.weight("conv.bias", &[o], StorageType::F32, 0.5, 63);
    }
    case
}

fn f32_convs() -> Vec<Case> {
    use StorageType::F32;
    let p1 = [1; 4];
    vec![
        conv_case("conv f32 3x3 s1 p1 [1,8,6,6] -> 8", Conv { x: [1, 8, 6, 6], o: 8, k: 3, stride: 1, padding: p1 }, F32, true),
        conv_case("conv f32 3x3 s1 p1 [2,3,7,5] -> 5", Conv { x: [2, 3, 7, 5], o: 5, k: 3, stride: 1, padding: p1 }, F32, true),
        // 1x1 convs over Ho*Wo % 4 != 0 take the gather, the others the vec4 pixel loads.
        conv_case("conv f32 1x1 [2,6,5,7] -> 9 (gather)", Conv { x: [2, 6, 5, 7], o: 9, k: 1, stride: 1, padding: [0; 4] }, F32, false),
        conv_case("conv f32 1x1 [1,5,3,3] -> 3 (gather, K % 4 != 0)", Conv { x: [1, 5, 3, 3], o: 3, k: 1, stride: 1, padding: [0; 4] }, F32, true),
        conv_case("conv f32 1x1 [2,6,4,5] -> 9 (vec4 pixels)", Conv { x: [2, 6, 4, 5], o: 9, k: 1, stride: 1, padding: [0; 4] }, F32, true),
        conv_case("conv f32 1x1 [2,5,4,3] -> 3 (vec4 pixels, K % 4 != 0)", Conv { x: [2, 5, 4, 3], o: 3, k: 1, stride: 1, padding: [0; 4] }, F32, false),
        conv_case("conv f32 3x3 s2 (0,1,0,1) [2,7,9,8] -> 6", Conv { x: [2, 7, 9, 8], o: 6, k: 3, stride: 2, padding: [0, 1, 0, 1] }, F32, true),
        conv_case("conv f32 3x3 s2 p1 [1,4,7,5] -> 11", Conv { x: [1, 4, 7, 5], o: 11, k: 3, stride: 2, padding: p1 }, F32, false),
        conv_case("conv f32 3x3 s1 p0 [1,3,10,12] -> 36", Conv { x: [1, 3, 10, 12], o: 36, k: 3, stride: 1, padding: [0; 4] }, F32, true),
        conv_case("conv f32 3x3 s1 p1 [1,576,3,2] -> 6 (K 5184)", Conv { x: [1, 576, 3, 2], o: 6, k: 3, stride: 1, padding: p1 }, F32, true),
        // 3x3 stride 1 with Wo % 4 == 0: the row-of-4-pixels loop.
        conv_case("conv f32 3x3 s1 p1 [2,5,7,8] -> 11 (row3)", Conv { x: [2, 5, 7, 8], o: 11, k: 3, stride: 1, padding: p1 }, F32, true),
        conv_case("conv f32 3x3 s1 p0 [1,6,6,10] -> 9 (row3)", Conv { x: [1, 6, 6, 10], o: 9, k: 3, stride: 1, padding: [0; 4] }, F32, false),
        conv_case("conv f32 3x3 s1 (0,1,0,1) [1,4,6,9] -> 6 (row3)", Conv { x: [1, 4, 6, 9], o: 6, k: 3, stride: 1, padding: [0, 1, 0, 1] }, F32, true),
        conv_case("conv f32 3x3 s1 p1 [1,320,4,4] -> 16 (row3, K 2880)", Conv { x: [1, 320, 4, 4], o: 16, k: 3, stride: 1, padding: p1 }, F32, true),
    ]
}

fn quantized_convs() -> Vec<Case> {
    use StorageType::{Q4_0, Q8_0};
    let p1 = [1; 4];
    vec![
        conv_case("conv q8_0 3x3 s1 p1 [2,32,5,6] -> 10", Conv { x: [2, 32, 5, 6], o: 10, k: 3, stride: 1, padding: p1 }, Q8_0, true),
        conv_case("conv q8_0 1x1 [1,64,7,5] -> 7 (gather)", Conv { x: [1, 64, 7, 5], o: 7, k: 1, stride: 1, padding: [0; 4] }, Q8_0, true),
        conv_case("conv q8_0 1x1 [2,64,4,6] -> 7 (vec4 pixels)", Conv { x: [2, 64, 4, 6], o: 7, k: 1, stride: 1, padding: [0; 4] }, Q8_0, false),
        conv_case("conv q8_0 3x3 s2 (0,1,0,1) [1,32,8,8] -> 6", Conv { x: [1, 32, 8, 8], o: 6, k: 3, stride: 2, padding: [0, 1, 0, 1] }, Q8_0, false),
        conv_case("conv q4_0 3x3 s1 p1 [2,32,5,6] -> 10", Conv { x: [2, 32, 5, 6], o: 10, k: 3, stride: 1, padding: p1 }, Q4_0, true),
        conv_case("conv q4_0 1x1 [2,64,3,5] -> 9 (gather)", Conv { x: [2, 64, 3, 5], o: 9, k: 1, stride: 1, padding: [0; 4] }, Q4_0, true),
        conv_case("conv q4_0 1x1 [1,64,6,6] -> 9 (vec4 pixels)", Conv { x: [1, 64, 6, 6], o: 9, k: 1, stride: 1, padding: [0; 4] }, Q4_0, true),
        conv_case("conv q4_0 3x3 s2 p1 [1,32,7,7] -> 5", Conv { x: [1, 32, 7, 7], o: 5, k: 3, stride: 2, padding: p1 }, Q4_0, false),
        conv_case("conv f16 3x3 s1 p1 [1,8,6,6] -> 8", Conv { x: [1, 8, 6, 6], o: 8, k: 3, stride: 1, padding: p1 }, StorageType::F16, true),
        conv_case("conv f16 1x1 [2,8,4,5] -> 9 (vec4 pixels)", Conv { x: [2, 8, 4, 5], o: 9, k: 1, stride: 1, padding: [0; 4] }, StorageType::F16, false),
        conv_case("conv f16 3x3 s2 (0,1,0,1) [2,4,9,8] -> 6", Conv { x: [2, 4, 9, 8], o: 6, k: 3, stride: 2, padding: [0, 1, 0, 1] }, StorageType::F16, true),
    ]
}

fn split_convs() -> Vec<Case> {
    use StorageType::{F32, Q4_0, Q8_0};
    let p1 = [1; 4];
    // Bindings of 6 output channels (f32 row: 8*9*4 bytes; Q8_0 row: 9 blocks of 34 bytes;
    // Q4_0 row: 9 blocks of 18 bytes) -> chunks of 6, 6, 6, 2 channels, one dispatch each.
    vec![
        conv_case("conv f32 split 3x3 [2,8,5,7] -> 20", Conv { x: [2, 8, 5, 7], o: 20, k: 3, stride: 1, padding: p1 }, F32, true).split_at(6 * 8 * 9 * 4),
        conv_case("conv f16 split 3x3 [2,8,5,7] -> 20", Conv { x: [2, 8, 5, 7], o: 20, k: 3, stride: 1, padding: p1 }, StorageType::F16, true).split_at(6 * 8 * 9 * 2),
        conv_case("conv q8_0 split 3x3 [1,32,6,5] -> 20", Conv { x: [1, 32, 6, 5], o: 20, k: 3, stride: 1, padding: p1 }, Q8_0, true).split_at(6 * 9 * 34),
        conv_case("conv q4_0 split 3x3 [2,32,4,5] -> 20", Conv { x: [2, 32, 4, 5], o: 20, k: 3, stride: 1, padding: p1 }, Q4_0, false).split_at(6 * 9 * 18),
    ]
}

fn upsamples() -> Vec<Case> {
    vec![
        Case::new("upsample2x [2,3,5,4]", ELEMENTWISE_TOL, |g| {
            let x = g.input("x", &[2, 3, 5, 4]);
            let y = g.upsample2x(x)?;
            g.output(y);
            Ok(())
        })
        .input("x", 2 * 3 * 5 * 4, 1.0, 64),
        // The UNet's odd sizes: a 3x2 map upsampled to the 5x3 skip it joins.
        Case::new("upsample nearest [2,3,3,2] -> 5x3", ELEMENTWISE_TOL, |g| {
            let x = g.input("x", &[2, 3, 3, 2]);
            let y = g.upsample_nearest(x, 5, 3)?;
            g.output(y);
            Ok(())
        })
        .input("x", 2 * 3 * 3 * 2, 1.0, 65),
    ]
}

/// Every conv case.
/// ConvNeXt's depthwise conv (aMUSEd): 3x3 padded with and without bias, an odd 5x3 kernel.
fn depthwise_convs() -> Vec<Case> {
    let case = |name: &str, x: [usize; 4], k: [usize; 2], pad: usize, bias: bool| {
        let c = x[1];
        let mut case = Case::new(name, ELEMENTWISE_TOL, move |g| {
            let xi = g.input("x", &x);
            let w = g.weight("depthwise.weight")?;
            let b = if bias { Some(g.weight("depthwise.bias")?) } else { None };
            let y = g.depthwise_conv2d(xi, w, b, pad)?;
            g.output(y);
            Ok(())
        })
        .input("x", x.iter().product(), 1.0, 71)
        .weight("depthwise.weight", &[c, 1, k[0], k[1]], StorageType::F32, 0.5, 72);
        if bias {
            case = case.weight("depthwise.bias", &[c], StorageType::F32, 0.5, 73);
        }
        case
    };
    vec![
        case("depthwise 3x3 pad 1 [2,16,8,8]", [2, 16, 8, 8], [3, 3], 1, false),
        case("depthwise 3x3 pad 1 bias [1,5,7,3]", [1, 5, 7, 3], [3, 3], 1, true),
        case("depthwise 5x3 pad 2 [1,3,6,9]", [1, 3, 6, 9], [5, 3], 2, true),
    ]
}

/// The DCGAN generator's transposed convs: the 1x1 -> 4x4 first layer (stride 1, no
/// padding), 4x4 stride 2 padding 1 doublings with odd sizes and batch 2, a 3x3 stride 3
/// kernel (taps that never overlap), and weights stored f16, Q8_0 and Q4_0 (widened first).
fn transposed_convs() -> Vec<Case> {
    use StorageType::{F16, F32, Q4_0, Q8_0};
    let case = |name: &str, x: [usize; 4], o: usize, k: usize, stride: usize, pad: usize, storage: StorageType, bias: bool| {
        let c = x[1];
        let mut case = Case::new(name, MATMUL_TOL, move |g| {
            let xi = g.input("x", &x);
            let w = g.weight("deconv.weight")?;
            let b = if bias { Some(g.weight("deconv.bias")?) } else { None };
            let y = g.conv_transpose2d(xi, w, b, stride, pad)?;
            g.output(y);
            Ok(())
        })
        .input("x", x.iter().product(), 1.0, 81)
        .weight("deconv.weight", &[c, o, k, k], storage, 0.5, 82);
        if bias {
            case = case.weight("deconv.bias", &[o], F32, 0.5, 83);
        }
        case
    };
    vec![
        case("conv_transpose f32 4x4 s1 p0 [2,24,1,1] -> 8", [2, 24, 1, 1], 8, 4, 1, 0, F32, true),
        case("conv_transpose f32 4x4 s2 p1 [2,5,3,4] -> 6", [2, 5, 3, 4], 6, 4, 2, 1, F32, true),
        case("conv_transpose f32 4x4 s2 p1 [1,16,4,4] -> 3 (no bias)", [1, 16, 4, 4], 3, 4, 2, 1, F32, false),
        case("conv_transpose f32 3x3 s3 p0 [1,2,3,2] -> 4", [1, 2, 3, 2], 4, 3, 3, 0, F32, true),
        case("conv_transpose f16 4x4 s2 p1 [1,8,3,3] -> 4", [1, 8, 3, 3], 4, 4, 2, 1, F16, true),
        case("conv_transpose q8_0 4x4 s2 p1 [2,6,4,3] -> 4", [2, 6, 4, 3], 4, 4, 2, 1, Q8_0, true),
        case("conv_transpose q4_0 4x4 s1 p0 [1,10,1,1] -> 8", [1, 10, 1, 1], 8, 4, 1, 0, Q4_0, false),
    ]
}

pub fn cases() -> Vec<Case> {
    [f32_convs(), quantized_convs(), split_convs(), upsamples(), depthwise_convs(), transposed_convs()].into_iter().flatten().collect()
}
