//! Four f32 lanes: WebAssembly SIMD128 on wasm32 built with `+simd128` (with the crate's
//! `relaxed-simd` feature, the multiply-add fuses where the CPU can), a plain array elsewhere
//! (which LLVM vectorizes natively). The GEMM micro-kernel is written once on top
//! of it, so native tests run the same kernel code the browser does.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use core::arch::wasm32::{f32x4_add, f32x4_splat, i32x4_shuffle, v128, v128_load, v128_store};

    /// Four f32 lanes in one `v128`.
    #[derive(Clone, Copy)]
    pub struct F32x4(v128);

    impl F32x4 {
        /// All lanes zero.
        #[inline(always)]
        pub fn zero() -> Self {
            Self(f32x4_splat(0.0))
        }

        /// All lanes `x`.
        #[inline(always)]
        pub fn splat(x: f32) -> Self {
            Self(f32x4_splat(x))
        }

        /// Loads four consecutive values.
        #[inline(always)]
        pub fn load(src: &[f32; 4]) -> Self {
            // SAFETY: `src` is 16 readable bytes; v128.load has no alignment requirement.
            Self(unsafe { v128_load(src.as_ptr().cast()) })
        }

        /// Stores the lanes into four consecutive values.
        #[inline(always)]
        pub fn store(self, dst: &mut [f32; 4]) {
            // SAFETY: `dst` is 16 writable bytes; v128.store has no alignment requirement.
            unsafe { v128_store(dst.as_mut_ptr().cast(), self.0) }
        }

        /// `self + a * b`, rounded twice (SIMD128 has no fused multiply-add).
        #[cfg(not(feature = "relaxed-simd"))]
        #[inline(always)]
        pub fn mul_add(self, a: Self, b: Self) -> Self {
            Self(f32x4_add(self.0, core::arch::wasm32::f32x4_mul(a.0, b.0)))
        }

        /// `self + a * b`: relaxed SIMD's multiply-add, fused where the CPU has FMA. Only
        /// functions compiled with the `relaxed-simd` target feature (the GEMM's
        /// `micro_kernel`) may inline it: elsewhere it would stay a call.
        #[cfg(feature = "relaxed-simd")]
        #[inline(always)]
        pub fn mul_add(self, a: Self, b: Self) -> Self {
            Self(core::arch::wasm32::f32x4_relaxed_madd(a.0, b.0, self.0))
        }

        /// Lane-wise sum.
        #[inline(always)]
        pub fn add(self, other: Self) -> Self {
            Self(f32x4_add(self.0, other.0))
        }

        /// The 4 x 4 block with rows `r` as its columns (lane j of result i is lane i of
        /// `r[j]`): eight shuffles where scalar code moves sixteen values one by one.
        #[inline(always)]
        pub fn transpose(r: [Self; 4]) -> [Self; 4] {
            let (a, b) = (i32x4_shuffle::<0, 4, 1, 5>(r[0].0, r[1].0), i32x4_shuffle::<2, 6, 3, 7>(r[0].0, r[1].0));
            let (c, d) = (i32x4_shuffle::<0, 4, 1, 5>(r[2].0, r[3].0), i32x4_shuffle::<2, 6, 3, 7>(r[2].0, r[3].0));
            [Self(i32x4_shuffle::<0, 1, 4, 5>(a, c)), Self(i32x4_shuffle::<2, 3, 6, 7>(a, c)), Self(i32x4_shuffle::<0, 1, 4, 5>(b, d)), Self(i32x4_shuffle::<2, 3, 6, 7>(b, d))]
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod imp {
    /// Four f32 lanes in an array.
    #[derive(Clone, Copy)]
    pub struct F32x4([f32; 4]);

    impl F32x4 {
        /// All lanes zero.
        #[inline(always)]
        pub fn zero() -> Self {
            Self([0.0; 4])
        }

        /// All lanes `x`.
        #[inline(always)]
        pub fn splat(x: f32) -> Self {
            Self([x; 4])
        }

        /// Loads four consecutive values.
        #[inline(always)]
        pub fn load(src: &[f32; 4]) -> Self {
            Self(*src)
        }

        /// Stores the lanes into four consecutive values.
        #[inline(always)]
        pub fn store(self, dst: &mut [f32; 4]) {
            *dst = self.0;
        }

        /// `self + a * b`, rounded twice like the SIMD128 version.
        #[inline(always)]
        pub fn mul_add(self, a: Self, b: Self) -> Self {
            Self(std::array::from_fn(|i| self.0[i] + a.0[i] * b.0[i]))
        }

        /// Lane-wise sum.
        #[inline(always)]
        pub fn add(self, other: Self) -> Self {
            Self(std::array::from_fn(|i| self.0[i] + other.0[i]))
        }

        /// The 4 x 4 block with rows `r` as its columns (lane j of result i is lane i of
        /// `r[j]`).
        #[inline(always)]
        pub fn transpose(r: [Self; 4]) -> [Self; 4] {
            std::array::from_fn(|i| Self(std::array::from_fn(|j| r[j].0[i])))
        }
    }
}

pub use imp::F32x4;

#[cfg(test)]
mod tests {
    use super::F32x4;

    #[test]
    fn transpose_swaps_rows_and_columns() {
        let rows: [F32x4; 4] = std::array::from_fn(|i| F32x4::load(&std::array::from_fn(|j| (10 * i + j) as f32)));
        let cols = F32x4::transpose(rows);
        for (i, c) in cols.iter().enumerate() {
            let mut got = [0.0; 4];
            c.store(&mut got);
            assert_eq!(got, std::array::from_fn(|j| (10 * j + i) as f32), "column {i}");
        }
    }
}
