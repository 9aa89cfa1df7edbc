//! Weights in a graph: a checkpoint tensor by name, and the model parameters builders
//! declare with their shapes (from which `models::schema` lists a model's weights).

use super::graph::{DType, Graph, Op, TensorId};
use crate::error::OpError;

type R = Result<TensorId, OpError>;

impl Graph<'_> {
    /// A weight, by its checkpoint name relative to the current scope.
    pub fn weight(&mut self, name: &str) -> R {
        let full = self.label(name);
        let shape = self.weights.weight_shape(&full).ok_or_else(|| OpError::MissingWeight { name: full.clone() })?;
        Ok(self.push(Op::Weight { name: full }, vec![], shape, DType::F32, name))
    }

    /// A model parameter `name` (relative to the current scope) with the shape the
    /// architecture gives it: a checkpoint tensor of another shape is refused by name.
    /// Model builders declare every parameter this way, so that the list of a model's
    /// weights (its schema) comes from the builder itself (`models::schema`).
    pub fn param(&mut self, name: &str, shape: &[usize]) -> R {
        let full = self.label(name);
        if !self.weights.record(&full, shape) {
            let found = self.weights.weight_shape(&full).ok_or_else(|| OpError::MissingWeight { name: full.clone() })?;
            if found != shape {
                return Err(OpError::BadWeight { name: full, message: format!("shape {found:?}, but the model's config gives it {shape:?}") });
            }
        }
        Ok(self.push(Op::Weight { name: full }, vec![], shape.to_vec(), DType::F32, name))
    }

    /// An optional parameter (a bias, a norm's affine weight): read when the checkpoint has
    /// it; `declared` says whether the architecture has it by default (what the schema lists).
    pub fn param_opt(&mut self, name: &str, shape: &[usize], declared: bool) -> Result<Option<TensorId>, OpError> {
        let present = if self.weights.recording() { declared } else { self.weights.weight_shape(&self.label(name)).is_some() };
        if present {
            self.param(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}
