//! Graph builders that only move data: concat, nearest upsampling, reshape, permute and
//! slice (split from graph.rs to keep it readable).

use super::graph::{DType, Graph, Op, TensorId};
use crate::error::OpError;

type R = Result<TensorId, OpError>;

impl Graph<'_> {
    /// Concatenation along `axis`.
    pub fn concat(&mut self, parts: &[TensorId], axis: usize) -> R {
        let first = self.shape(parts[0]).to_vec();
        let mut shape = first.clone();
        shape[axis] = 0;
        for &p in parts {
            let s = self.shape(p);
            let fits = s.len() == first.len() && s.iter().enumerate().all(|(i, &d)| i == axis || d == first[i]);
            if !fits {
                return Err(self.err("concat", format!("{s:?} does not fit {first:?} along axis {axis}")));
            }
            shape[axis] += s[axis];
        }
        Ok(self.push(Op::Concat { axis }, parts.to_vec(), shape, DType::F32, "concat"))
    }

    /// Nearest 2x upsampling of NCHW.
    pub fn upsample2x(&mut self, x: TensorId) -> R {
        let s = self.shape(x).to_vec();
        let (h, w) = (s.get(2).copied().unwrap_or(0), s.get(3).copied().unwrap_or(0));
        self.upsample_nearest(x, 2 * h, 2 * w)
    }

    /// Nearest upsampling of NCHW to `height` x `width` (the UNet's odd-size path, where
    /// a skip connection is 2H-1 wide).
    pub fn upsample_nearest(&mut self, x: TensorId, height: usize, width: usize) -> R {
        let mut s = self.shape(x).to_vec();
        if s.len() != 4 || height < s[2] || width < s[3] {
            return Err(self.err("upsample", format!("want [B, C, H, W] no larger than {height}x{width}, got {s:?}")));
        }
        s[2] = height;
        s[3] = width;
        Ok(self.push(Op::UpsampleNearest { height, width }, vec![x], s, DType::F32, "upsample"))
    }

    /// Same data, new shape.
    pub fn reshape(&mut self, x: TensorId, shape: &[usize]) -> R {
        let n: usize = self.shape(x).iter().product();
        if shape.iter().product::<usize>() != n {
            return Err(self.err("reshape", format!("{:?} has {n} elements, {shape:?} does not", self.shape(x))));
        }
        let dtype = self.node(x).dtype;
        Ok(self.push(Op::Reshape { shape: shape.to_vec() }, vec![x], shape.to_vec(), dtype, "reshape"))
    }

    /// Axis permutation.
    pub fn permute(&mut self, x: TensorId, perm: &[usize]) -> R {
        let s = self.shape(x).to_vec();
        let mut seen = vec![false; s.len()];
        if perm.len() != s.len() || perm.iter().any(|&p| p >= s.len() || std::mem::replace(&mut seen[p], true)) {
            return Err(self.err("permute", format!("{perm:?} is not a permutation of {s:?}'s axes")));
        }
        let shape = perm.iter().map(|&p| s[p]).collect();
        let dtype = self.node(x).dtype;
        Ok(self.push(Op::Permute { perm: perm.to_vec() }, vec![x], shape, dtype, "permute"))
    }

    /// A contiguous range along one axis.
    pub fn slice(&mut self, x: TensorId, axis: usize, start: usize, len: usize) -> R {
        let mut s = self.shape(x).to_vec();
        if axis >= s.len() || start + len > s[axis] {
            return Err(self.err("slice", format!("[{start}, {}) along axis {axis} of {s:?}", start + len)));
        }
        s[axis] = len;
        let dtype = self.node(x).dtype;
        Ok(self.push(Op::Slice { axis, start, len }, vec![x], s, dtype, "slice"))
    }
}
