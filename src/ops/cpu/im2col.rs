//! Implicit im2col: packs the GEMM's B panels for a 2D convolution straight from the
//! image, so the `[C*kh*kw, Ho*Wo]` column matrix never exists in full.
//!
//! Row `p` of B is `(c, ky, kx)` in the weight's `[O, C, kh, kw]` order; column `j` is the
//! output pixel `(oy, ox)` row-major. Entry = `x[c, oy*s + ky - top, ox*s + kx - left]`,
//! zero outside the image.

use super::gemm::{PackB, NR};

/// One CHW image seen as the convolution's B matrix.
pub struct Im2col<'a> {
    /// `[C, H, W]`.
    pub x: &'a [f32],
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    /// Zero padding above and left of the image (padding below and right only sets the
    /// output size).
    pub top: usize,
    pub left: usize,
    /// Output width: B has `Ho * wo` columns.
    pub wo: usize,
}

impl Im2col<'_> {
    /// Writes B row `p` for columns `j0..j0 + line.len()`.
    fn fill_row(&self, p: usize, j0: usize, line: &mut [f32]) {
        let (c, tap) = (p / (self.kh * self.kw), p % (self.kh * self.kw));
        let (ky, kx) = (tap / self.kw, tap % self.kw);
        let plane = &self.x[c * self.h * self.w..][..self.h * self.w];
        let s = self.stride;
        // Output columns whose input column ox*s + kx - left lands inside [0, w).
        let ox_lo = (self.left.saturating_sub(kx)).div_ceil(s);
        let ox_hi = (self.w + self.left).saturating_sub(kx).div_ceil(s).min(self.wo);
        let mut j = j0;
        while j < j0 + line.len() {
            let done = j - j0;
            let (oy, ox0) = (j / self.wo, j % self.wo);
            let ox1 = self.wo.min(ox0 + line.len() - done);
            let seg = &mut line[done..done + ox1 - ox0];
            j += ox1 - ox0;
            let iy = (oy * s + ky).wrapping_sub(self.top);
            if iy >= self.h {
                seg.fill(0.0);
                continue;
            }
            let row = &plane[iy * self.w..][..self.w];
            let lo = ox_lo.clamp(ox0, ox1);
            let hi = ox_hi.clamp(lo, ox1);
            // Guarded: most segments have no padding, and each fill is a `memory.fill` call.
            if lo > ox0 {
                seg[..lo - ox0].fill(0.0);
            }
            if hi < ox1 {
                seg[hi - ox0..].fill(0.0);
            }
            if hi == lo {
                continue;
            }
            let inside = &mut seg[lo - ox0..hi - ox0];
            let ix0 = lo * s + kx - self.left;
            if s == 1 {
                inside.copy_from_slice(&row[ix0..ix0 + inside.len()]);
            } else {
                for (d, &v) in inside.iter_mut().zip(row[ix0..].iter().step_by(s)) {
                    *d = v;
                }
            }
        }
    }
}

impl PackB for Im2col<'_> {
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, out: &mut [f32]) {
        // One B row at a time into a line (zero tail past nc), then scattered into strips.
        let mut line = vec![0.0; nc.next_multiple_of(NR)];
        for p in 0..kc {
            self.fill_row(p0 + p, j0, &mut line[..nc]);
            for (strip, chunk) in out.chunks_exact_mut(kc * NR).zip(line.chunks_exact(NR)) {
                let dst: &mut [f32; NR] = (&mut strip[p * NR..][..NR]).try_into().unwrap();
                *dst = chunk.try_into().unwrap();
            }
        }
    }
}
