//! Host-side weights: what a model's tensors are before they reach a backend. Block formats
//! keep GGML's byte layout here; each backend turns them into what it computes with.

use std::collections::HashMap;

use super::graph::WeightShapes;
use super::quant::{self, StorageType, BLOCK};
use crate::error::OpError;

/// One tensor: its shape, storage type and bytes (little-endian; GGML blocks when quantized).
#[derive(Debug, Clone)]
pub struct HostWeight {
    pub shape: Vec<usize>,
    pub storage: StorageType,
    pub bytes: Vec<u8>,
}

impl HostWeight {
    /// Number of values.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Values per quantization row: the product of all dims but the first (for a linear
    /// weight [N, K] that is K; for a conv weight [O, C, kh, kw] it is C*kh*kw).
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// The values as f32 (dequantized when stored in a block format).
    pub fn to_f32(&self) -> Vec<f32> {
        quant::dequantize(self.storage, &self.bytes)
    }
}

/// All weights of a model, by checkpoint name.
#[derive(Debug, Default, Clone)]
pub struct WeightStore {
    tensors: HashMap<String, HostWeight>,
}

impl WeightStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds f32 values under `name`.
    pub fn insert_f32(&mut self, name: &str, shape: &[usize], values: &[f32]) -> Result<(), OpError> {
        self.insert(name, shape, StorageType::F32, values)
    }

    /// Adds values under `name`, converted to `storage`. Block formats need rows (all dims
    /// but the first) that are whole blocks.
    pub fn insert(&mut self, name: &str, shape: &[usize], storage: StorageType, values: &[f32]) -> Result<(), OpError> {
        let numel: usize = shape.iter().product();
        if values.len() != numel {
            return Err(OpError::BadWeight { name: name.into(), message: format!("{} values for shape {shape:?}", values.len()) });
        }
        let row: usize = shape.iter().skip(1).product();
        if storage.is_quantized() && (shape.len() < 2 || !row.is_multiple_of(BLOCK)) {
            return Err(OpError::BadWeight {
                name: name.into(),
                message: format!("{} needs rows of a multiple of {BLOCK} values; shape {shape:?} has rows of {row}", storage.name()),
            });
        }
        let bytes = quant::quantize(storage, values);
        self.tensors.insert(name.into(), HostWeight { shape: shape.to_vec(), storage, bytes });
        Ok(())
    }

    /// Adds an already-encoded tensor (from a shard), checking its byte length.
    pub fn insert_raw(&mut self, name: &str, weight: HostWeight) -> Result<(), OpError> {
        let want = weight.storage.byte_len(weight.numel());
        if weight.bytes.len() != want {
            return Err(OpError::BadWeight { name: name.into(), message: format!("{} bytes, but {:?} {} needs {want}", weight.bytes.len(), weight.shape, weight.storage.name()) });
        }
        self.tensors.insert(name.into(), weight);
        Ok(())
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Result<&HostWeight, OpError> {
        self.tensors.get(name).ok_or_else(|| OpError::MissingWeight { name: name.into() })
    }

    /// Takes tensor `name` out of the store (a session that keeps it in another form).
    pub fn remove(&mut self, name: &str) -> Option<HostWeight> {
        self.tensors.remove(name)
    }

    /// Names of all tensors, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Every tensor with its name (to rename a checkpoint's keys).
    pub fn into_tensors(self) -> impl Iterator<Item = (String, HostWeight)> {
        self.tensors.into_iter()
    }

    /// Total bytes as stored.
    pub fn byte_size(&self) -> usize {
        self.tensors.values().map(|w| w.bytes.len()).sum()
    }
}

impl WeightShapes for WeightStore {
    fn weight_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|w| w.shape.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_rows_must_be_whole_blocks() {
        let mut s = WeightStore::new();
        let err = s.insert("conv_in.weight", &[8, 4, 3, 3], StorageType::Q8_0, &[0.0; 288]).unwrap_err();
        assert!(err.to_string().contains("conv_in.weight") && err.to_string().contains("rows of 36"), "{err}");
        s.insert("proj.weight", &[2, 64], StorageType::Q4_0, &[0.5; 128]).unwrap();
        assert_eq!(s.get("proj.weight").unwrap().bytes.len(), 4 * 18);
        let err = s.insert_raw("x", HostWeight { shape: vec![4], storage: StorageType::F32, bytes: vec![0; 15] }).unwrap_err();
        assert!(err.to_string().contains("15 bytes"), "{err}");
    }
}
