//! Graph builders for ConvNeXt pieces (aMUSEd's UVit2DModel): depthwise convolution and
//! GlobalResponseNorm's per-channel scale.

use super::graph::{DType, Graph, Op, TensorId};
use crate::error::OpError;

type R = Result<TensorId, OpError>;

impl Graph<'_> {
    /// Depthwise conv (one filter per channel), stride 1, `padding` on every side.
    pub fn depthwise_conv2d(&mut self, x: TensorId, w: TensorId, b: Option<TensorId>, padding: usize) -> R {
        let (xs, ws) = (self.shape(x).to_vec(), self.shape(w).to_vec());
        let fits = xs.len() == 4 && ws.len() == 4 && ws[0] == xs[1] && ws[1] == 1;
        if !fits || xs[2] + 2 * padding < ws[2] || xs[3] + 2 * padding < ws[3] {
            return Err(self.err("depthwise_conv2d", format!("x {xs:?} does not fit weight {ws:?} (want [B, C, H, W] and [C, 1, kh, kw])")));
        }
        if let Some(b) = b {
            if self.shape(b) != [xs[1]] {
                return Err(self.err("depthwise_conv2d", format!("bias {:?} should be [{}]", self.shape(b), xs[1])));
            }
        }
        let shape = vec![xs[0], xs[1], xs[2] + 2 * padding - ws[2] + 1, xs[3] + 2 * padding - ws[3] + 1];
        let inputs = [x, w].into_iter().chain(b).collect();
        Ok(self.push(Op::DepthwiseConv2d { padding }, inputs, shape, DType::F32, "depthwise_conv2d"))
    }

    /// GlobalResponseNorm's scale nx [B, 1, C] of x [B, N, C] (N = the flattened positions).
    pub fn response_norm(&mut self, x: TensorId, eps: f32) -> R {
        let xs = self.shape(x).to_vec();
        if xs.len() != 3 || self.node(x).dtype != DType::F32 {
            return Err(self.err("response_norm", format!("want f32 [B, N, C], got {xs:?}")));
        }
        Ok(self.push(Op::ResponseNorm { eps }, vec![x], vec![xs[0], 1, xs[2]], DType::F32, "response_norm"))
    }
}
