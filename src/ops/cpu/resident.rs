//! A CPU session's weights, held in the form the CPU computes with: natively f32 tensors,
//! linear weights packed once as the GEMM's B panels (packing an `[N, K]` weight at every
//! call cost more than candle's matmul saved; packed once, our GEMM with fused
//! multiply-adds is the faster of the two) and convolution weights as its A blocks (at the
//! UNet's deepest levels a conv has 16-64 positions, and repacking its 1280 x 11,520
//! weight at every call cost as much as the product). In the page, those stored as f32.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use super::gemm::{ARows, BMatrix, PackedA, PackedB};
use super::gemm_ops::with_values;
use crate::ops::graph::{Graph, Op};
use crate::ops::weights::{HostWeight, WeightStore};
use crate::ops::StorageType;

/// A linear weight `[N, K]` packed for the GEMM.
pub struct PackedLinear {
    pub b: PackedB,
    pub n: usize,
    pub k: usize,
}

/// A convolution's weight `[O, C, kh, kw]` packed as the GEMM's A: O rows of C*kh*kw.
pub struct PackedConv {
    pub a: PackedA,
    pub dims: [usize; 4],
}

impl PackedConv {
    fn new(dims: [usize; 4], values: &[f32]) -> Self {
        let k = dims[1] * dims[2] * dims[3];
        Self { a: PackedA::new(dims[0], k, &ARows { data: values, ld: k }), dims }
    }
}

/// Weights expanded to f32 by name; those that graphs read only as a linear's or only as a
/// convolution's weight are kept packed instead (not both: a model's weights are most of a
/// session's memory).
#[derive(Default)]
pub struct CpuTensors {
    dense: HashMap<String, Tensor>,
    linear: HashMap<String, PackedLinear>,
    conv: HashMap<String, PackedConv>,
}

impl CpuTensors {
    /// No weights (a session that reads its store as it runs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Every weight of `store` as an f32 tensor, each freed from the store as it is expanded.
    pub fn expand(store: WeightStore) -> Self {
        let dense = store
            .into_tensors()
            .map(|(name, w)| {
                let t = Tensor::from_vec(w.to_f32(), w.shape.as_slice(), &Device::Cpu).expect("a stored tensor's values fit its shape");
                (name, t)
            })
            .collect();
        Self { dense, ..Self::default() }
    }

    /// Weight `name` as an f32 tensor. A packed one is unpacked (only a graph that reads a
    /// linear's weight some other way gets here: rare, and slower).
    pub fn get(&self, name: &str) -> Option<Tensor> {
        if let Some(t) = self.dense.get(name) {
            return Some(t.clone());
        }
        if let Some(c) = self.conv.get(name) {
            return Some(Tensor::from_vec(c.a.to_rows(), c.dims.as_slice(), &Device::Cpu).expect("a packed weight unpacks to its shape"));
        }
        let p = self.linear.get(name)?;
        Some(Tensor::from_vec(p.b.to_nk(), (p.n, p.k), &Device::Cpu).expect("a packed weight unpacks to its shape"))
    }

    /// Whether weight `name` is held here (in any form).
    pub fn holds(&self, name: &str) -> bool {
        self.dense.contains_key(name) || self.linear.contains_key(name) || self.conv.contains_key(name)
    }

    /// Weight `name` packed for the GEMM, if it is kept so.
    pub fn packed(&self, name: &str) -> Option<&PackedLinear> {
        self.linear.get(name)
    }

    /// Convolution weight `name` packed for the GEMM, if it is kept so.
    pub fn packed_conv(&self, name: &str) -> Option<&PackedConv> {
        self.conv.get(name)
    }

    /// Replaces weight `name` (same shape) with `values`, in the form it is kept in; false
    /// when it is not held here.
    pub fn set(&mut self, name: &str, shape: &[usize], values: Vec<f32>) -> candle_core::Result<bool> {
        if let Some(p) = self.linear.get_mut(name) {
            p.b = PackedB::new(p.k, p.n, &BMatrix::NK { data: &values, ld: p.k });
            return Ok(true);
        }
        if let Some(c) = self.conv.get_mut(name) {
            *c = PackedConv::new(c.dims, &values);
            return Ok(true);
        }
        match self.dense.get_mut(name) {
            Some(t) => {
                *t = Tensor::from_vec(values, shape, &Device::Cpu)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The page's counterpart of `pack_linears`, for a session that reads its store as it
    /// runs: every weight stored as f32 that `graph` reads only as a linear's weight leaves
    /// the store packed (the same bytes, in panels). Packing one at every call cost as much
    /// as the product at CLIP's 77 tokens. Block formats stay in the store and are unpacked
    /// into the panels per call: packed once they would take 4-8x their stored memory.
    pub fn pack_stored_linears(&mut self, graph: &Graph, store: &mut WeightStore) {
        for (_, name) in linear_only_weights(graph) {
            let Some(w) = self.take_stored_f32(store, name, 2) else { continue };
            let (n, k) = (w.shape[0], w.shape[1]);
            let b = PackedB::new(k, n, &BMatrix::NK { data: &w.to_f32(), ld: k });
            self.linear.insert(name.to_string(), PackedLinear { b, n, k });
        }
    }

    /// Weight `name` taken out of `store` to be packed: when it is stored as f32 with `rank`
    /// dimensions and is not held here already.
    fn take_stored_f32(&self, store: &mut WeightStore, name: &str, rank: usize) -> Option<HostWeight> {
        let packable = store.get(name).is_ok_and(|w| w.storage == StorageType::F32 && w.shape.len() == rank);
        if !packable || self.holds(name) {
            return None;
        }
        store.remove(name)
    }

    /// Packs every weight that `graph` reads only as a linear's weight (as soon as a graph
    /// is compiled, so the first step does not pay for it).
    pub fn pack_linears(&mut self, graph: &Graph) {
        for (_, name) in linear_only_weights(graph) {
            let Some(t) = self.dense.get(name) else { continue };
            let Ok((n, k)) = t.dims2() else { continue };
            let Ok(b) = with_values(t, |w| PackedB::new(k, n, &BMatrix::NK { data: w, ld: k })) else { continue };
            self.dense.remove(name);
            self.linear.insert(name.to_string(), PackedLinear { b, n, k });
        }
    }

    /// Packs every weight that `graph` reads only as a convolution's weight (when the
    /// convolutions run on our GEMM).
    pub fn pack_convs(&mut self, graph: &Graph) {
        for (_, name) in conv_only_weights(graph) {
            let Some(t) = self.dense.get(name) else { continue };
            let Ok((o, c, kh, kw)) = t.dims4() else { continue };
            let Ok(packed) = with_values(t, |w| PackedConv::new([o, c, kh, kw], w)) else { continue };
            self.dense.remove(name);
            self.conv.insert(name.to_string(), packed);
        }
    }

    /// The page's counterpart of `pack_convs`: convolution weights stored as f32 leave the
    /// store packed (block formats are unpacked per call, as for linears).
    pub fn pack_stored_convs(&mut self, graph: &Graph, store: &mut WeightStore) {
        for (_, name) in conv_only_weights(graph) {
            let Some(w) = self.take_stored_f32(store, name, 4) else { continue };
            let dims = [w.shape[0], w.shape[1], w.shape[2], w.shape[3]];
            self.conv.insert(name.to_string(), PackedConv::new(dims, &w.to_f32()));
        }
    }
}

/// Weights (node index, name) whose every reader in `graph` is a Conv2d taking them as its
/// weight.
pub(super) fn conv_only_weights<'g>(graph: &'g Graph) -> Vec<(usize, &'g str)> {
    weights_read_only_as(graph, |op, slot| matches!(op, Op::Conv2d { .. }) && slot == 1)
}

/// Weights (node index, name) whose every reader in `graph` is a Linear taking them as
/// its weight.
pub(super) fn linear_only_weights<'g>(graph: &'g Graph) -> Vec<(usize, &'g str)> {
    weights_read_only_as(graph, |op, slot| matches!(op, Op::Linear) && slot == 1)
}

/// The Weight nodes of `graph` (index, name) whose every reader passes `ok(op, input slot)`.
pub(super) fn weights_read_only_as<'g>(graph: &'g Graph, ok: impl Fn(&Op, usize) -> bool) -> Vec<(usize, &'g str)> {
    let mut only = vec![true; graph.nodes.len()];
    let mut read = vec![false; graph.nodes.len()];
    for node in &graph.nodes {
        for (slot, t) in node.inputs.iter().enumerate() {
            read[t.0] = true;
            only[t.0] &= ok(&node.op, slot);
        }
    }
    graph
        .nodes
        .iter()
        .enumerate()
        .filter(|&(i, _)| only[i] && read[i] && !graph.outputs.iter().any(|o| o.0 == i))
        .filter_map(|(i, n)| match &n.op {
            Op::Weight { name } => Some((i, name.as_str())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::cpu::{CpuExecutor, HostTensor};

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn weights_read_only_by_linears_are_packed_and_give_the_same_values_back() {
        let mut store = WeightStore::new();
        // 530 columns of B: more than one NC block, not a multiple of NR; K = 400 is past KC.
        store.insert_f32("proj.weight", &[530, 400], &values(530 * 400, 1)).unwrap();
        store.insert_f32("shared.weight", &[400, 400], &values(400 * 400, 2)).unwrap();
        let mut g = Graph::new(&store);
        let x = g.input("x", &[3, 400]);
        let (shared, proj) = (g.weight("shared.weight").unwrap(), g.weight("proj.weight").unwrap());
        let y = g.linear(x, shared, None).unwrap();
        let y = g.matmul(y, shared, true).unwrap();
        let y = g.linear(y, proj, None).unwrap();
        g.output(y);
        let dense = CpuTensors::expand(store.clone());
        let mut packed = CpuTensors::expand(store.clone());
        packed.pack_linears(&g);
        assert!(packed.packed("proj.weight").is_some(), "read only by a linear: packed");
        assert!(packed.packed("shared.weight").is_none() && packed.dense.contains_key("shared.weight"), "also read by a matmul: kept as f32");
        assert!(!packed.dense.contains_key("proj.weight"), "packed instead of, not beside, the f32 tensor");
        assert_eq!(bits(&packed.get("proj.weight").unwrap()), bits(&dense.get("proj.weight").unwrap()));

        // The same result as from the f32 tensors (candle's matmul or the GEMM repacking per call).
        let inputs = std::collections::HashMap::from([("x".to_string(), HostTensor::F32(values(3 * 400, 3)))]);
        let empty = WeightStore::new();
        let run = |t: &CpuTensors| match CpuExecutor::streaming(&empty).with_expanded(t).run(&g, &inputs).unwrap().remove(&y) {
            Some(HostTensor::F32(v)) => v,
            other => panic!("{other:?}"),
        };
        let (got, want) = (run(&packed), run(&dense));
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 1e-5 * scale, "max error {err} against {scale}");

        // A new value (a LoRA merged in) is packed too.
        let new = values(530 * 400, 4);
        assert!(packed.set("proj.weight", &[530, 400], new.clone()).unwrap());
        assert!(packed.packed("proj.weight").is_some());
        assert_eq!(packed.get("proj.weight").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), new);
    }

    #[test]
    fn f32_weights_read_only_by_linears_leave_a_streaming_store_packed_with_the_same_bits() {
        // As in the page: a q8_0 linear weight, an f32 one (two K blocks, a partial NR
        // strip), and an f32 one also read by a matmul.
        let mut store = WeightStore::new();
        store.insert("q.weight", &[400, 96], StorageType::Q8_0, &values(400 * 96, 1)).unwrap();
        store.insert_f32("proj.weight", &[530, 400], &values(530 * 400, 2)).unwrap();
        store.insert_f32("shared.weight", &[530, 530], &values(530 * 530, 3)).unwrap();
        let mut g = Graph::new(&store);
        let x = g.input("x", &[77, 96]);
        let (q, proj, shared) = (g.weight("q.weight").unwrap(), g.weight("proj.weight").unwrap(), g.weight("shared.weight").unwrap());
        let y = g.linear(x, q, None).unwrap();
        let y = g.linear(y, proj, None).unwrap();
        let y = g.linear(y, shared, None).unwrap();
        let y = g.matmul(y, shared, true).unwrap();
        g.output(y);
        let inputs = std::collections::HashMap::from([("x".to_string(), HostTensor::F32(values(77 * 96, 4)))]);
        // Before: every weight read from the store, packed at each call.
        let want = CpuExecutor::streaming(&store).run(&g, &inputs).unwrap();

        let mut packed = CpuTensors::new();
        let mut left = store.clone();
        packed.pack_stored_linears(&g, &mut left);
        assert!(packed.packed("proj.weight").is_some() && left.get("proj.weight").is_err(), "f32, read only by linears: packed, and out of the store");
        assert!(packed.packed("q.weight").is_none() && left.get("q.weight").is_ok(), "q8_0 stays stored");
        assert!(!packed.holds("shared.weight") && left.get("shared.weight").is_ok(), "also read by a matmul: stays stored");
        assert_eq!(bits(&packed.get("proj.weight").unwrap()), store.get("proj.weight").unwrap().to_f32().iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        // Packed once or at each call, the panels and the order of the sums are the same.
        let got = CpuExecutor::streaming(&left).with_expanded(&packed).run(&g, &inputs).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn weights_read_only_by_convs_are_packed_and_give_the_same_bits() {
        // A 3x3 conv whose 14 output channels are no multiple of MR and whose K (48 * 9)
        // is past KC, a 1x1 conv, and a conv weight another op also reads.
        let mut store = WeightStore::new();
        store.insert_f32("c3.weight", &[14, 48, 3, 3], &values(14 * 48 * 9, 1)).unwrap();
        store.insert_f32("c3.bias", &[14], &values(14, 2)).unwrap();
        store.insert_f32("c1.weight", &[48, 14, 1, 1], &values(48 * 14, 3)).unwrap();
        store.insert_f32("shared.weight", &[48, 48, 1, 1], &values(48 * 48, 4)).unwrap();
        let mut g = Graph::new(&store);
        let img = g.input("img", &[1, 48, 9, 11]);
        let (c3, c3b, c1, shared) = (g.weight("c3.weight").unwrap(), g.weight("c3.bias").unwrap(), g.weight("c1.weight").unwrap(), g.weight("shared.weight").unwrap());
        let y = g.conv2d(img, c3, Some(c3b), 1, [1; 4]).unwrap();
        let y = g.conv2d(y, c1, None, 1, [0; 4]).unwrap();
        let y = g.conv2d(y, shared, None, 1, [0; 4]).unwrap();
        let flat = g.reshape(shared, &[48, 48]).unwrap();
        g.output(y);
        g.output(flat);
        let inputs = std::collections::HashMap::from([("img".to_string(), HostTensor::F32(values(48 * 9 * 11, 5)))]);
        let empty = WeightStore::new();
        let run = |t: &CpuTensors, store: &WeightStore| CpuExecutor::streaming(store).with_expanded(t).run(&g, &inputs).unwrap();

        // Natively: every weight expanded, then the conv-only ones packed instead.
        let dense = CpuTensors::expand(store.clone());
        let mut packed = CpuTensors::expand(store.clone());
        packed.pack_convs(&g);
        assert!(packed.packed_conv("c3.weight").is_some() && packed.packed_conv("c1.weight").is_some());
        assert!(packed.packed_conv("shared.weight").is_none(), "also reshaped: kept as f32");
        assert!(!packed.dense.contains_key("c3.weight"), "packed instead of, not beside, the f32 tensor");
        assert_eq!(bits(&packed.get("c3.weight").unwrap()), bits(&dense.get("c3.weight").unwrap()));
        assert_eq!(packed.get("c3.weight").unwrap().dims(), &[14, 48, 3, 3]);
        // Packed once or per block, the blocks and the order of the sums are the same.
        assert_eq!(run(&packed, &empty), run(&dense, &empty));

        // In the page: f32 conv weights leave the store packed, with the same bits.
        let mut left = store.clone();
        let mut page = CpuTensors::new();
        page.pack_stored_convs(&g, &mut left);
        assert!(page.packed_conv("c1.weight").is_some() && left.get("c1.weight").is_err());
        assert!(!page.holds("shared.weight") && left.get("shared.weight").is_ok());
        assert_eq!(run(&page, &left), CpuExecutor::streaming(&store).run(&g, &inputs).unwrap());

        // A new value (a LoRA merged in) is packed too.
        let new = values(14 * 48 * 9, 6);
        assert!(packed.set("c3.weight", &[14, 48, 3, 3], new.clone()).unwrap());
        assert!(packed.packed_conv("c3.weight").is_some());
        assert_eq!(packed.get("c3.weight").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), new);
    }
}
