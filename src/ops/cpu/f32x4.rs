//! Four f32 lanes: WebAssembly SIMD128 on wasm32 built with `+simd128`, a plain array
//! elsewhere (which LLVM vectorizes natively). The GEMM micro-kernel is written once on top
//! of it, so native tests run the same kernel code the browser does.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use core::arch::wasm32::{f32x4_add, f32x4_mul, f32x4_splat, v128, v128_load, v128_store};

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
        #[inline(always)]
        pub fn mul_add(self, a: Self, b: Self) -> Self {
            Self(f32x4_add(self.0, f32x4_mul(a.0, b.0)))
        }

        /// Lane-wise sum.
        #[inline(always)]
        pub fn add(self, other: Self) -> Self {
            Self(f32x4_add(self.0, other.0))
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
    }
}

pub use imp::F32x4;
