//! GPU-vs-CPU cases for multi-head attention: self- and cross-attention, causal masks (with
//! Lk > Lq too), head widths off the vec4 loads (scalar loaders), Dv != Dh, a single query,
//! and query counts that pick 1, 2 and 4 rows per invocation on software adapters (blocks
//! of 64 * rows queries) with partial last blocks.

use super::{Case, MATMUL_TOL};

/// Shapes of one attention case.
struct Attn {
    batch: usize,
    lq: usize,
    lk: usize,
    heads: usize,
    dh: usize,
    dv: usize,
    causal: bool,
    /// None: 1/sqrt(dh), as the models use.
    scale: Option<f32>,
    /// Inputs are uniform in [-amp, amp): larger values give peakier softmaxes, so the
    /// running max moves and the accumulator rescaling is exercised.
    amp: f32,
}

impl Attn {
    fn new(batch: usize, lq: usize, lk: usize, heads: usize, dh: usize) -> Self {
        Self { batch, lq, lk, heads, dh, dv: dh, causal: false, scale: None, amp: 2.0 }
    }

    fn case(self, name: &str, seed: u32) -> Case {
        let Attn { batch, lq, lk, heads, dh, dv, causal, scale, amp } = self;
        let scale = scale.unwrap_or(1.0 / (dh as f32).sqrt());
        let name = format!("attention {name}: B{batch} Lq{lq} Lk{lk} H{heads} Dh{dh} Dv{dv}");
        Case::new(&name, MATMUL_TOL, move |g| {
            let q = g.input("q", &[batch, lq, heads * dh]);
            let k = g.input("k", &[batch, lk, heads * dh]);
            let v = g.input("v", &[batch, lk, heads * dv]);
            let y = g.attention(q, k, v, heads, scale, causal)?;
            g.output(y);
            Ok(())
        })
        .input("q", batch * lq * heads * dh, amp, seed)
        .input("k", batch * lk * heads * dh, amp, seed + 1)
        .input("v", batch * lk * heads * dv, 1.0, seed + 2)
    }
}

/// Every attention case.
pub fn cases() -> Vec<Case> {
    vec![
        Attn::new(2, 37, 37, 2, 40).case("self", 101),
        Attn::new(1, 64, 77, 5, 64).case("cross (text tokens)", 111),
        Attn::new(1, 100, 130, 3, 24).case("cross", 121),
        Attn { causal: true, ..Attn::new(2, 77, 77, 4, 16) }.case("causal (CLIP)", 131),
        Attn::new(1, 20, 24, 2, 160).case("wide heads", 141),
        Attn { dv: 36, ..Attn::new(2, 1, 50, 3, 32) }.case("one query", 151),
        Attn { scale: Some(0.9), amp: 1.5, ..Attn::new(1, 45, 33, 2, 64) }.case("scale 0.9", 161),
        Attn { dv: 13, causal: true, ..Attn::new(2, 20, 29, 3, 18) }.case("causal Lk > Lq, odd widths", 171),
        Attn { causal: true, ..Attn::new(1, 150, 150, 2, 20) }.case("causal, 2 rows", 181),
        Attn::new(1, 300, 40, 2, 16).case("4 rows", 191),
        // Wider than the fused kernel: explicit scores (the VAE's single 512-wide head).
        Attn::new(1, 64, 64, 1, 512).case("VAE mid-block: one 512-wide head", 201),
        Attn::new(2, 9, 11, 2, 320).case("two 320-wide heads", 211),
    ]
}
