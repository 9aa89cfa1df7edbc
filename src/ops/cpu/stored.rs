//! A weight read straight from its stored bytes (q8_0, q4_0, f16 or f32) by the GEMM's
//! packing. The page keeps a model as stored; expanding each weight to f32 for every step
//! wrote 3.5 GB of f32 per SD-Turbo UNet step at q8_0, read again by the packing.

use super::gemm::{PackA, PackB, MR, NR};
use super::pack::pack_strips;
use crate::ops::quant::dequantize_range;
use crate::ops::weights::HostWeight;

/// A stored weight seen as rows of `row_len` values: a linear's `[N, K]` (the GEMM's B,
/// transposed) or a convolution's `[O, C*kh*kw]` (the GEMM's A).
#[derive(Clone, Copy)]
pub struct StoredRows<'a> {
    weight: &'a HostWeight,
    row_len: usize,
}

impl<'a> StoredRows<'a> {
    pub fn new(weight: &'a HostWeight) -> Self {
        Self { weight, row_len: weight.row_len() }
    }

    /// Values `p0..p0 + out.len()` of row `r`, as `HostWeight::to_f32` gives them.
    fn row(&self, r: usize, p0: usize, out: &mut [f32]) {
        dequantize_range(self.weight.storage, &self.weight.bytes, r * self.row_len + p0, out)
    }
}

impl PackA for StoredRows<'_> {
    fn pack(&self, i0: usize, mc: usize, p0: usize, kc: usize, out: &mut [f32]) {
        pack_strips::<MR>(mc, kc, out, |i, line| self.row(i0 + i, p0, line))
    }
}

impl PackB for StoredRows<'_> {
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, out: &mut [f32]) {
        pack_strips::<NR>(nc, kc, out, |j, line| self.row(j0 + j, p0, line))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ops::cpu::gemm::{ARows, BMatrix};
    use crate::ops::cpu::{CpuExecutor, HostTensor};
    use crate::ops::graph::Graph;
    use crate::ops::quant::{quantize, StorageType};
    use crate::ops::WeightStore;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    const TYPES: [StorageType; 4] = [StorageType::F32, StorageType::F16, StorageType::Q8_0, StorageType::Q4_0];

    #[test]
    fn stored_rows_pack_as_their_f32_expansion_does() {
        // 37 rows (not a multiple of MR or NR) of 416 (13 blocks, not a multiple of KC).
        let (rows, k) = (37, 416);
        for ty in TYPES {
            let w = HostWeight { shape: vec![rows, k], storage: ty, bytes: quantize(ty, &values(rows * k, 1)) };
            let dense = w.to_f32();
            let stored = StoredRows::new(&w);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            // As a linear's B: blocks that start and end inside quantization blocks.
            for (p0, kc, j0, nc) in [(0, 384, 0, 37usize), (32, 100, 5, 20), (13, 300, 16, 21)] {
                let len = kc * nc.next_multiple_of(NR);
                let (mut got, mut want) = (vec![f32::NAN; len], vec![f32::NAN; len]);
                PackB::pack(&stored, p0, kc, j0, nc, &mut got);
                BMatrix::NK { data: &dense, ld: k }.pack(p0, kc, j0, nc, &mut want);
                assert_eq!(bits(&got), bits(&want), "{ty:?} B block {p0}+{kc}, {j0}+{nc}");
            }
            // As a convolution's A.
            for (i0, mc, p0, kc) in [(0, 37usize, 0, 384), (6, 13, 33, 200)] {
                let len = kc * mc.next_multiple_of(MR);
                let (mut got, mut want) = (vec![f32::NAN; len], vec![f32::NAN; len]);
                PackA::pack(&stored, i0, mc, p0, kc, &mut got);
                ARows { data: &dense, ld: k }.pack(i0, mc, p0, kc, &mut want);
                assert_eq!(bits(&got), bits(&want), "{ty:?} A block {i0}+{mc}, {p0}+{kc}");
            }
        }
    }

    #[test]
    fn a_streaming_run_reads_linear_and_conv_weights_as_stored_with_the_same_bits() {
        for ty in TYPES {
            let mut store = WeightStore::new();
            store.insert("conv.weight", &[24, 32, 3, 3], ty, &values(24 * 32 * 9, 2)).unwrap();
            store.insert_f32("conv.bias", &[24], &values(24, 3)).unwrap();
            store.insert("proj.weight", &[64, 96], ty, &values(64 * 96, 4)).unwrap();
            // Read by a linear and by a matmul: it has to be expanded.
            store.insert("shared.weight", &[64, 64], ty, &values(64 * 64, 5)).unwrap();
            let mut g = Graph::new(&store);
            let img = g.input("img", &[1, 32, 10, 12]);
            let (cw, cb) = (g.weight("conv.weight").unwrap(), g.weight("conv.bias").unwrap());
            let y = g.conv2d(img, cw, Some(cb), 1, [1; 4]).unwrap();
            let x = g.reshape(y, &[10 * 12 * 24 / 96, 96]).unwrap();
            let pw = g.weight("proj.weight").unwrap();
            let x = g.linear(x, pw, None).unwrap();
            let sw = g.weight("shared.weight").unwrap();
            let x = g.linear(x, sw, None).unwrap();
            let x = g.matmul(x, sw, false).unwrap();
            g.output(x);
            let inputs = HashMap::from([("img".to_string(), HostTensor::F32(values(32 * 10 * 12, 6)))]);
            let want = CpuExecutor::new(&store).run(&g, &inputs).unwrap();
            let mut streaming = CpuExecutor::streaming(&store).profiled();
            let got = streaming.run(&g, &inputs).unwrap();
            assert_eq!(got, want, "{ty:?}");
            // Only the shared weight and the conv's bias were made f32 tensors.
            let expanded = streaming.take_profile().unwrap().kinds["weights (expand to f32)"].count;
            assert_eq!(expanded, 2, "{ty:?}: weights expanded");
        }
    }
}
