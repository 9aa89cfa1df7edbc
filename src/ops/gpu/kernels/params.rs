//! Every kernel's parameters, one named struct each: a single definition gives the Rust
//! struct a dispatch fills and the WGSL `struct Params` its kernel reads (`params.k`, never
//! a word position), so the two sides cannot drift apart.
//!
//! Fields are `u32`, `f32` (carried as bits) or arrays of 4-word vectors (`[vec4u; N]`,
//! `[vec4f; N]`, for values a kernel indexes at run time: uniform arrays need 16-byte
//! elements). `words()` lays them out as WGSL does (vector arrays 16-byte aligned); a
//! CPU-only test holds every struct's offsets to naga's.

/// A kernel's parameter block.
pub trait KernelParams {
    /// `struct Params { .. }` in WGSL, fields in the same order.
    const WGSL: &'static str;
    /// The uniform block's 32-bit words and, per field, its name and first word.
    fn layout(&self) -> (Vec<u32>, Vec<(&'static str, usize)>);

    /// The uniform block's 32-bit words.
    fn words(&self) -> Vec<u32> {
        self.layout().0
    }
}

/// A field type: how it is written into the words, and its alignment in words.
pub trait ParamField {
    const ALIGN: usize;
    fn push(&self, words: &mut Vec<u32>);
}

impl ParamField for u32 {
    const ALIGN: usize = 1;
    fn push(&self, words: &mut Vec<u32>) {
        words.push(*self);
    }
}

impl ParamField for f32 {
    const ALIGN: usize = 1;
    fn push(&self, words: &mut Vec<u32>) {
        words.push(self.to_bits());
    }
}

impl<const N: usize> ParamField for [[u32; 4]; N] {
    const ALIGN: usize = 4;
    fn push(&self, words: &mut Vec<u32>) {
        words.extend(self.iter().flatten());
    }
}

impl<const N: usize> ParamField for [[f32; 4]; N] {
    const ALIGN: usize = 4;
    fn push(&self, words: &mut Vec<u32>) {
        words.extend(self.iter().flatten().map(|v| v.to_bits()));
    }
}

/// `values` (at most 4 * N of them) as the vector array of a `[vec4u; N]` field, zero past the end.
pub fn vec4s<const N: usize>(values: &[usize]) -> [[u32; 4]; N] {
    let mut out = [[0; 4]; N];
    for (i, &v) in values.iter().enumerate() {
        out[i / 4][i % 4] = v as u32;
    }
    out
}

macro_rules! kernel_params {
    ($($(#[$meta:meta])* $name:ident { $($field:ident : $ty:tt),* $(,)? })*) => {
        $(
            $(#[$meta])*
            #[derive(Clone, Copy, Debug, Default)]
            pub struct $name { $(pub $field: kernel_params!(@rust $ty)),* }

            impl KernelParams for $name {
                const WGSL: &'static str = concat!("struct Params {\n", $("    ", stringify!($field), ": ", kernel_params!(@wgsl $ty), ",\n",)* "}\n");
                fn layout(&self) -> (Vec<u32>, Vec<(&'static str, usize)>) {
                    let (mut words, mut at) = (Vec::new(), Vec::new());
                    $(
                        let align = <kernel_params!(@rust $ty) as ParamField>::ALIGN;
                        words.resize(words.len().div_ceil(align) * align, 0);
                        at.push((stringify!($field), words.len()));
                        ParamField::push(&self.$field, &mut words);
                    )*
                    (words, at)
                }
            }
        )*

        /// Every struct's WGSL and layout, for the test against naga.
        #[cfg(all(test, not(target_arch = "wasm32")))]
        pub fn every() -> Vec<(&'static str, &'static str, Vec<(&'static str, usize)>, usize)> {
            vec![$({
                let (words, at) = $name::default().layout();
                (stringify!($name), $name::WGSL, at, words.len())
            }),*]
        }
    };
    (@rust u32) => { u32 };
    (@rust f32) => { f32 };
    (@rust [vec4u; $n:literal]) => { [[u32; 4]; $n] };
    (@rust [vec4f; $n:literal]) => { [[f32; 4]; $n] };
    (@wgsl u32) => { "u32" };
    (@wgsl f32) => { "f32" };
    (@wgsl [vec4u; $n:literal]) => { concat!("array<vec4<u32>, ", $n, ">") };
    (@wgsl [vec4f; $n:literal]) => { concat!("array<vec4<f32>, ", $n, ">") };
}

/// Frequencies one timestep-embedding dispatch carries (the rest of the 64-word block).
pub const TIMESTEP_FREQS: usize = 56;

kernel_params! {
    /// copy_words.wgsl: a private copy of a binding read twice (builder.rs `unalias`).
    CopyWords { len: u32 }
    /// matmul.wgsl: out[b] = A[b] @ B[b], B read through strides (b_sk, b_sn).
    Matmul { m: u32, k: u32, n: u32, a_batch_stride: u32, b_batch_stride: u32, b_sk: u32, b_sn: u32 }
    /// linear.wgsl and linear_q.wgsl: out[M, N] = x[M, K] @ w^T + bias, for the weight rows
    /// n_off..n_off + n_rows this chunk holds.
    Linear { m: u32, k: u32, n: u32, n_off: u32, n_rows: u32, has_bias: u32 }
    /// conv2d.wgsl: an implicit GEMM of M = B*Ho*Wo pixels by K = C*kh*kw taps for n_rows
    /// output channels, written from channel n_off of the bound output. Weight chunk rows are
    /// row_len long; this dispatch reads their columns from col_off (its input channels,
    /// and its first row in the chunk); accumulate adds to the output (a later window of
    /// input channels); the bias is read from bias_off.
    Conv2d {
        m: u32, k: u32, o: u32, n_off: u32, n_rows: u32, has_bias: u32, c: u32, h: u32, w: u32,
        ho: u32, wo: u32, kh: u32, kw: u32, stride: u32, pad_top: u32, pad_left: u32,
        tiles_n: u32, row_len: u32, col_off: u32, accumulate: u32, bias_off: u32,
    }
    /// upsample_nearest.wgsl: n = B*C*OH*OW outputs.
    UpsampleNearest { n: u32, h: u32, w: u32, oh: u32, ow: u32 }
    /// unary.wgsl: op 0 silu, 1 gelu (erf), 2 gelu (tanh), 3 quick gelu, 4 affine (mul, add),
    /// 5 relu, 6 tanh.
    Unary { n: u32, op: u32, mul: f32, add: f32 }
    /// binary.wgsl: op 0 add, 1 sub, 2 mul, broadcast over ndim <= 6 axes (stride 0); output
    /// indices first..first + n, a and b bound from their indices a_first and b_first.
    Binary { n: u32, op: u32, ndim: u32, first: u32, shape: [vec4u; 2], a_strides: [vec4u; 2], b_strides: [vec4u; 2], a_first: u32, b_first: u32 }
    /// geglu.wgsl: n = rows * d outputs.
    Geglu { n: u32, d: u32 }
    /// group_norm.wgsl: one workgroup per (batch, group) set, sets first_set.. of the tensor.
    GroupNorm { sets: u32, group_len: u32, spatial: u32, channels_per_group: u32, groups: u32, eps: f32, silu: u32, first_set: u32 }
    /// group_norm_stats.wgsl: (mean, M2) of each of `count` parts (parts per set), written
    /// from part `first`.
    GroupNormStats { count: u32, group_len: u32, parts: u32, part_len: u32, first: u32 }
    /// group_norm_combine.wgsl: parts -> (mean, sqrt(var + eps)) per set.
    GroupNormCombine { sets: u32, group_len: u32, parts: u32, part_len: u32, eps: f32 }
    /// group_norm_apply.wgsl: n4 = values / 4; the window starts at first_channel / first_set.
    GroupNormApply { n4: u32, spatial: u32, channels_per_group: u32, channels: u32, silu: u32, first_channel: u32, first_set: u32 }
    /// layer_norm.wgsl (LayerNorm and RmsNorm): rows of d.
    RowNorm { rows: u32, d: u32, eps: f32 }
    /// softmax.wgsl: rows of d.
    Softmax { rows: u32, d: u32 }
    /// strided_copy.wgsl: n words over ndim <= 6 axes.
    StridedCopy { n: u32, ndim: u32, src_base: u32, dst_base: u32, shape: [vec4u; 2], src_strides: [vec4u; 2], dst_strides: [vec4u; 2] }
    /// dequantize.wgsl: n values of one weight chunk.
    Dequantize { n: u32 }
    /// quantize_q8.wgsl: the fast precision's int8 activations, `blocks` blocks of 32.
    QuantizeQ8 { blocks: u32 }
    /// embedding.wgsl: count = ids * d outputs from table rows row0..row0 + rows of vocab;
    /// zero_fill writes zeros for ids past the vocabulary.
    Embedding { count: u32, d: u32, row0: u32, rows: u32, vocab: u32, zero_fill: u32 }
    /// timestep_embedding.wgsl: frequencies f0..f0 + nf (freqs[i] is f_{f0+i}).
    TimestepEmbedding { batch: u32, dim: u32, half: u32, f0: u32, nf: u32, flip: u32, freqs: [vec4f; 14] }
    /// top_k.wgsl: the k largest of each row of n.
    TopK { rows: u32, n: u32, k: u32 }
    /// vq_nearest.wgsl: N vectors of D against K codes from code_off; `first` starts the
    /// running minima.
    VqNearest { n: u32, d: u32, k: u32, code_off: u32, first: u32 }
    /// depthwise_conv2d.wgsl.
    DepthwiseConv2d { count: u32, c: u32, h: u32, w: u32, oh: u32, ow: u32, kh: u32, kw: u32, pad: u32, has_bias: u32 }
    /// conv_transpose2d.wgsl.
    ConvTranspose2d { count: u32, c: u32, h: u32, w: u32, o: u32, oh: u32, ow: u32, kh: u32, kw: u32, stride: u32, pad: u32, has_bias: u32 }
    /// response_norm.wgsl: N positions of C channels.
    ResponseNorm { n: u32, c: u32, eps: f32 }
    /// attention.wgsl: query blocks of 64 * rows per (batch, head); keys masked past the
    /// diagonal when causal.
    Attention { lq: u32, lk: u32, heads: u32, qblocks: u32, causal: u32, scale: f32, workgroups: u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_aligns_vector_arrays_and_carries_f32_as_bits() {
        let p = Binary { n: 7, op: 2, ndim: 3, first: 1, shape: vec4s(&[2, 3, 4]), a_first: 9, ..Default::default() };
        let (words, at) = p.layout();
        assert_eq!(&words[..8], &[7, 2, 3, 1, 2, 3, 4, 0]);
        assert_eq!(at.iter().find(|(f, _)| *f == "a_first"), Some(&("a_first", 28)));
        assert_eq!(words.len(), 30);
        let t = TimestepEmbedding { nf: 1, freqs: [[0.5, 0.0, 0.0, 0.0]; 14], ..Default::default() };
        let (words, at) = t.layout();
        // Six u32 words, padded to 8 before the vector array.
        assert_eq!(at.last(), Some(&("freqs", 8)));
        assert_eq!((words[8], words.len()), (0.5f32.to_bits(), 8 + TIMESTEP_FREQS));
    }

    /// naga (wgpu's shader compiler) lays out each struct as the GPU will: every field's
    /// offset must be the word our layout writes it to, and the struct must fit the 64
    /// words a dispatch's parameter slot holds.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn every_struct_matches_the_wgsl_layout() {
        let all = every();
        assert!(all.len() >= 24, "{} structs", all.len());
        for (name, wgsl, at, len) in all {
            let module = naga::front::wgsl::parse_str(wgsl).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(wgsl)));
            let (_, ty) = module.types.iter().find(|(_, t)| t.name.as_deref() == Some("Params")).expect("struct Params");
            let naga::TypeInner::Struct { members, span } = &ty.inner else { panic!("{name}: Params is not a struct") };
            let naga_at: Vec<(&str, usize)> = members.iter().map(|m| (m.name.as_deref().unwrap_or(""), m.offset as usize / 4)).collect();
            assert_eq!(naga_at, at, "{name}: field offsets (words)");
            assert!(len <= crate::ops::gpu::builder::PARAM_WORDS && *span as usize <= crate::ops::gpu::builder::PARAM_WORDS * 4, "{name}: {span} bytes");
        }
    }
}
