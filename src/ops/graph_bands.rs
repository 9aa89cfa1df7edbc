//! GroupNorm over a feature map held as several tensors (bands of rows): the statistics of
//! each band, combined exactly (Chan et al.'s update) into the whole map's, then applied to
//! each band. A map too large for one GPU buffer (the VAE decoder's last blocks at 768 px)
//! is normalized this way without ever existing in one piece.

use super::graph::{DType, Graph, Op, TensorId};
use crate::error::OpError;

type R = Result<TensorId, OpError>;

impl Graph<'_> {
    /// [B, G, 2]: per (batch, group) of x [B, C, ..], the mean and the sum of squared
    /// deviations from it.
    pub fn group_moments(&mut self, x: TensorId, groups: usize) -> R {
        let xs = self.shape(x).to_vec();
        if xs.len() < 2 || groups == 0 || !xs[1].is_multiple_of(groups) || self.node(x).dtype != DType::F32 {
            return Err(self.err("group_moments", format!("x {xs:?} with {groups} groups")));
        }
        Ok(self.push(Op::GroupMoments { groups }, vec![x], vec![xs[0], groups, 2], DType::F32, "group_moments"))
    }

    /// The whole sets' (mean, sqrt(var + eps)) from parts [B, G, P, 2] of (mean, M2): every
    /// part holds `part_len` of a set's `len` values but the last, which holds the rest.
    pub fn moments_combine(&mut self, parts: TensorId, len: usize, part_len: usize, eps: f32) -> R {
        let s = self.shape(parts).to_vec();
        let ok = s.len() == 4 && s[3] == 2 && part_len > 0 && s[2] == len.div_ceil(part_len);
        if !ok {
            return Err(self.err("moments_combine", format!("parts {s:?} for sets of {len} values in parts of {part_len}")));
        }
        Ok(self.push(Op::MomentsCombine { len, part_len, eps }, vec![parts], vec![s[0], s[1], 2], DType::F32, "moments_combine"))
    }

    /// GroupNorm of x [B, C, ..] with the given per-(batch, group) moments [B, G, 2] of
    /// (mean, sqrt(var + eps)), then the channels' affine and optional SiLU.
    pub fn group_norm_apply(&mut self, x: TensorId, gamma: TensorId, beta: TensorId, moments: TensorId, groups: usize, silu: bool) -> R {
        let xs = self.shape(x).to_vec();
        let ok = xs.len() >= 2 && groups > 0 && xs[1].is_multiple_of(groups) && self.shape(gamma) == [xs[1]] && self.shape(beta) == [xs[1]];
        if !ok || self.shape(moments) != [xs[0], groups, 2] {
            return Err(self.err("group_norm_apply", format!("x {xs:?} with {groups} groups, gamma {:?}, moments {:?}", self.shape(gamma), self.shape(moments))));
        }
        Ok(self.push(Op::GroupNormApply { groups, silu }, vec![x, gamma, beta, moments], xs, DType::F32, "group_norm"))
    }

    /// GroupNorm (+ SiLU) of a map [B, C, H, W] held as bands of rows (axis 2), all of one
    /// height but the last, which may be shorter: the same values as `group_norm` on the
    /// concatenated map, band by band.
    pub fn group_norm_bands(&mut self, bands: &[TensorId], gamma: TensorId, beta: TensorId, groups: usize, eps: f32, silu: bool) -> Result<Vec<TensorId>, OpError> {
        let moments = self.band_moments(bands, groups, eps)?;
        bands.iter().map(|&b| self.group_norm_apply(b, gamma, beta, moments, groups, silu)).collect()
    }

    /// The whole map's per-(batch, group) (mean, sqrt(var + eps)) [B, G, 2] from its bands of
    /// rows (one height, the last no taller): what `group_norm_apply` takes, so that a band
    /// (or rows of one) can be normalized just before it is used.
    pub fn band_moments(&mut self, bands: &[TensorId], groups: usize, eps: f32) -> R {
        let first = self.shape(bands[0]).to_vec();
        let rows: Vec<usize> = bands.iter().map(|&b| self.shape(b)[2]).collect();
        let height: usize = rows.iter().sum();
        let uniform = rows[..rows.len() - 1].iter().all(|&r| r == rows[0]) && rows[rows.len() - 1] <= rows[0];
        if first.len() != 4 || !uniform || !first[1].is_multiple_of(groups.max(1)) {
            return Err(self.err("group_norm", format!("bands of {rows:?} rows of {first:?} (want one height, the last no taller)")));
        }
        let per_row = first[1] / groups * first[3];
        let stats = bands.iter().map(|&b| self.group_moments(b, groups).and_then(|m| self.reshape(m, &[first[0], groups, 1, 2]))).collect::<Result<Vec<_>, _>>()?;
        let stats = if stats.len() == 1 { stats[0] } else { self.concat(&stats, 2)? };
        self.moments_combine(stats, per_row * height, per_row * rows[0], eps)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::ops::cpu::{CpuExecutor, HostTensor};
    use crate::ops::{Graph, WeightStore};

    #[test]
    fn group_norm_over_bands_equals_group_norm_of_the_whole_map() {
        let store = WeightStore::new();
        let mut g = Graph::new(&store);
        let x = g.input("x", &[2, 6, 7, 4]);
        let (gamma, beta) = (g.input("gamma", &[6]), g.input("beta", &[6]));
        let whole = g.group_norm(x, gamma, beta, 3, 1e-6, true).unwrap();
        // Bands of 3, 3 and 1 rows.
        let bands = [(0, 3), (3, 3), (6, 1)].map(|(s, n)| g.slice(x, 2, s, n).unwrap());
        let normed = g.group_norm_bands(&bands, gamma, beta, 3, 1e-6, true).unwrap();
        let joined = g.concat(&normed, 2).unwrap();
        g.output(whole);
        g.output(joined);
        // Values with a mean well off zero, as activations have.
        let n = 2 * 6 * 7 * 4;
        let xs: Vec<f32> = (0..n).map(|i| 3.0 + ((i * 37 % 11) as f32 - 5.0) * 0.1).collect();
        let inputs = HashMap::from([
            ("x".to_string(), HostTensor::F32(xs)),
            ("gamma".to_string(), HostTensor::F32(vec![1.0, 0.5, 2.0, -1.0, 1.5, 0.7])),
            ("beta".to_string(), HostTensor::F32(vec![0.1, 0.0, -0.2, 0.3, 0.0, 1.0])),
        ]);
        let out = CpuExecutor::new(&store).run(&g, &inputs).unwrap();
        let (HostTensor::F32(a), HostTensor::F32(b)) = (&out[&whole], &out[&joined]) else { panic!("f32 outputs") };
        let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        let scale = a.iter().map(|x| x.abs()).fold(0.0, f32::max);
        assert!(scale > 1.0 && diff < 1e-5 * scale, "max diff {diff} (values up to {scale})");
    }
}
