//! Graph builder for the transposed convolution (a DCGAN generator's upsampling layer).

use super::graph::{DType, Graph, Op, TensorId};
use crate::error::OpError;

impl Graph<'_> {
    /// [x [B, C, H, W], w [C, O, k, k] (PyTorch's `ConvTranspose2d` layout: input channels
    /// first), bias [O]?] -> [B, O, (H - 1) * stride - 2 * padding + k, ..].
    pub fn conv_transpose2d(&mut self, x: TensorId, w: TensorId, b: Option<TensorId>, stride: usize, padding: usize) -> Result<TensorId, OpError> {
        let (xs, ws) = (self.shape(x).to_vec(), self.shape(w).to_vec());
        if xs.len() != 4 || ws.len() != 4 || ws[0] != xs[1] || stride == 0 {
            return Err(self.err("conv_transpose2d", format!("x {xs:?} does not fit weight {ws:?} (want [B, C, H, W] and [C, O, kh, kw])")));
        }
        let side = |n: usize, k: usize| ((n - 1) * stride + k).checked_sub(2 * padding).filter(|&s| s > 0);
        let (Some(ho), Some(wo)) = (side(xs[2], ws[2]), side(xs[3], ws[3])) else {
            return Err(self.err("conv_transpose2d", format!("padding {padding} leaves nothing of x {xs:?} with weight {ws:?}")));
        };
        if let Some(b) = b {
            if self.shape(b) != [ws[1]] {
                return Err(self.err("conv_transpose2d", format!("bias {:?} should be [{}]", self.shape(b), ws[1])));
            }
        }
        let inputs = [x, w].into_iter().chain(b).collect();
        Ok(self.push(Op::ConvTranspose2d { stride, padding }, inputs, vec![xs[0], ws[1], ho, wo], DType::F32, "conv_transpose2d"))
    }
}
