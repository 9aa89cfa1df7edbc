//! The benchmark cases: SD's hot shapes. Weights and inputs are random (timing does not
//! depend on values).

use std::collections::HashMap;

use crate::error::OpError;
use crate::gpu::test_values;
use crate::ops::cpu::HostTensor;
use crate::ops::{Graph, StorageType, WeightStore};

/// Builds a case's single-op graph.
pub type BuildGraph = Box<dyn Fn(&mut Graph) -> Result<(), OpError>>;

/// Makes a case's random weights and inputs.
pub type MakeData = Box<dyn Fn() -> CaseData>;

/// One benchmark: a single-op graph with its work and traffic. Its weights and inputs are
/// made only when it runs ([`BenchCase::data`]): quantizing every case's weights up front
/// took seconds that a `--filter` run of one case does not need.
pub struct BenchCase {
    pub op: String,
    pub shape: String,
    pub storage: StorageType,
    pub build: BuildGraph,
    /// Floating-point operations of one run.
    pub flops: f64,
    /// Bytes read and written once (weights as stored + inputs + outputs).
    pub bytes: f64,
    make_data: MakeData,
}

/// A case's weights and graph inputs.
pub struct CaseData {
    pub weights: WeightStore,
    pub inputs: HashMap<String, HostTensor>,
}

impl BenchCase {
    /// Whether `filter` names this case: text found in its op, shape or storage type, where
    /// numbers match whole ("4x4" finds conv 4x4x1280, not matmul 77x1024x4096, whose "4x4"
    /// sits inside 1024 and 4096).
    pub fn matches(&self, filter: &str) -> bool {
        [&self.op, &self.shape, self.storage.name()].iter().any(|text| contains_whole_numbers(text, filter))
    }

    /// The case's weights and inputs, made now (random: timing does not depend on values).
    pub fn data(&self) -> CaseData {
        (self.make_data)()
    }
}

/// `text` contains `part` at a place where no number is cut: a digit at either end of
/// `part` may not continue a digit of `text`.
fn contains_whole_numbers(text: &str, part: &str) -> bool {
    let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
    let (first, last) = (part.chars().next(), part.chars().last());
    text.match_indices(part).any(|(at, _)| {
        let (before, after) = (text[..at].chars().last(), text[at + part.len()..].chars().next());
        let cuts_before = digit(first) && digit(before);
        let cuts_after = digit(last) && digit(after);
        !cuts_before && !cuts_after
    })
}

fn random(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    test_values(n, seed).into_iter().map(|x| x * scale).collect()
}

fn linear(m: usize, k: usize, n: usize, storage: StorageType) -> BenchCase {
    BenchCase {
        op: "matmul".into(),
        shape: format!("{m}x{k}x{n}"),
        storage,
        make_data: Box::new(move || {
            let mut weights = WeightStore::new();
            weights.insert("w", &[n, k], storage, &random(n * k, 1, 0.05)).expect("bench weight");
            CaseData { weights, inputs: HashMap::from([("x".into(), HostTensor::F32(random(m * k, 2, 1.0)))]) }
        }),
        build: Box::new(move |g| {
            let x = g.input("x", &[m, k]);
            let w = g.weight("w")?;
            let y = g.linear(x, w, None)?;
            g.output(y);
            Ok(())
        }),
        flops: 2.0 * m as f64 * k as f64 * n as f64,
        bytes: (storage.byte_len(n * k) + 4 * (m * k + m * n)) as f64,
    }
}

fn conv3x3(c: usize, hw: usize, o: usize, storage: StorageType) -> BenchCase {
    BenchCase {
        op: "conv3x3".into(),
        shape: format!("{hw}x{hw}x{c}->{o}"),
        storage,
        make_data: Box::new(move || {
            let mut weights = WeightStore::new();
            weights.insert("w", &[o, c, 3, 3], storage, &random(o * c * 9, 3, 0.05)).expect("bench weight");
            weights.insert_f32("b", &[o], &random(o, 4, 0.05)).expect("bench weight");
            CaseData { weights, inputs: HashMap::from([("x".into(), HostTensor::F32(random(c * hw * hw, 5, 1.0)))]) }
        }),
        build: Box::new(move |g| {
            let x = g.input("x", &[1, c, hw, hw]);
            let w = g.weight("w")?;
            let b = g.weight("b")?;
            let y = g.conv2d(x, w, Some(b), 1, [1, 1, 1, 1])?;
            g.output(y);
            Ok(())
        }),
        flops: 2.0 * o as f64 * (hw * hw) as f64 * (c * 9) as f64,
        bytes: (storage.byte_len(o * c * 9) + 4 * o + 4 * (c + o) * hw * hw) as f64,
    }
}

fn attention(l: usize, heads: usize, dh: usize) -> BenchCase {
    let d = heads * dh;
    BenchCase {
        op: "attention".into(),
        shape: format!("{l}x{l} {heads}x{dh}"),
        storage: StorageType::F32,
        make_data: Box::new(move || {
            let inputs = ["q", "k", "v"].iter().enumerate().map(|(i, n)| (n.to_string(), HostTensor::F32(random(l * d, 10 + i as u32, 1.0)))).collect();
            CaseData { weights: WeightStore::new(), inputs }
        }),
        build: Box::new(move |g| {
            let q = g.input("q", &[1, l, d]);
            let k = g.input("k", &[1, l, d]);
            let v = g.input("v", &[1, l, d]);
            let y = g.attention(q, k, v, heads, 1.0 / (dh as f32).sqrt(), false)?;
            g.output(y);
            Ok(())
        }),
        flops: 4.0 * (l * l) as f64 * d as f64,
        bytes: (4 * 4 * l * d) as f64,
    }
}

/// A norm's per-channel `gamma` and `beta` over `c` channels.
fn affine(c: usize) -> WeightStore {
    let mut weights = WeightStore::new();
    weights.insert_f32("gamma", &[c], &random(c, 6, 1.0)).expect("bench weight");
    weights.insert_f32("beta", &[c], &random(c, 7, 1.0)).expect("bench weight");
    weights
}

fn group_norm(c: usize, hw: usize) -> BenchCase {
    let n = c * hw * hw;
    BenchCase {
        op: "groupnorm".into(),
        shape: format!("{hw}x{hw}x{c} g32 silu"),
        storage: StorageType::F32,
        make_data: Box::new(move || CaseData { weights: affine(c), inputs: HashMap::from([("x".into(), HostTensor::F32(random(n, 8, 1.0)))]) }),
        build: Box::new(move |g| {
            let x = g.input("x", &[1, c, hw, hw]);
            let gamma = g.weight("gamma")?;
            let beta = g.weight("beta")?;
            let y = g.group_norm(x, gamma, beta, 32, 1e-5, true)?;
            g.output(y);
            Ok(())
        }),
        // mean, variance, normalize+affine, silu: about 10 flops a value.
        flops: 10.0 * n as f64,
        bytes: 8.0 * n as f64,
    }
}

/// LayerNorm over `rows` rows of `d` (the UNet's transformer blocks: 4096 x 320 at 512 px):
/// one workgroup per row, so its reductions are most of the work.
fn layer_norm(rows: usize, d: usize) -> BenchCase {
    let n = rows * d;
    BenchCase {
        op: "layernorm".into(),
        shape: format!("{rows}x{d}"),
        storage: StorageType::F32,
        make_data: Box::new(move || CaseData { weights: affine(d), inputs: HashMap::from([("x".into(), HostTensor::F32(random(n, 9, 1.0)))]) }),
        build: Box::new(move |g| {
            let x = g.input("x", &[rows, d]);
            let gamma = g.weight("gamma")?;
            let beta = g.weight("beta")?;
            let y = g.layer_norm(x, gamma, beta, 1e-5)?;
            g.output(y);
            Ok(())
        }),
        // mean, variance, normalize+affine: about 8 flops a value.
        flops: 8.0 * n as f64,
        bytes: 8.0 * n as f64,
    }
}

/// Every case, in table order.
pub fn suite() -> Vec<BenchCase> {
    use StorageType::*;
    let mut cases = Vec::new();
    for (m, k, n) in [(4096, 320, 320), (1024, 1280, 1280), (77, 1024, 4096)] {
        for s in [F32, Q8_0, Q4_0] {
            cases.push(linear(m, k, n, s));
        }
    }
    // The UNet's top levels at 512 px, and its deepest at 256 px (16 positions).
    for (c, hw) in [(320, 64), (640, 32), (1280, 4)] {
        for s in [F32, Q8_0] {
            cases.push(conv3x3(c, hw, c, s));
        }
    }
    // One 64-dim head at SD's largest self-attention length (a 64x64 latent).
    cases.push(attention(4096, 1, 64));
    // Narrow heads (emoji-sd's 8 of width 16), where packing the probabilities for P V
    // is a copy per 16 multiply-adds instead of per 64.
    cases.push(attention(4096, 8, 16));
    cases.push(group_norm(320, 64));
    cases.push(layer_norm(4096, 320));
    cases
}

#[cfg(test)]
mod tests {
    use super::contains_whole_numbers as found;
    use super::{conv3x3, linear};
    use crate::ops::StorageType::*;

    /// `bytes` is worked out from the shapes, before any weight exists: it must equal the
    /// weights as stored plus the f32 input and output once the data is made.
    #[test]
    fn traffic_counts_weights_as_stored() {
        let (m, k, n) = (3, 64, 32);
        for s in [F32, Q8_0, Q4_0] {
            let case = linear(m, k, n, s);
            assert_eq!(case.bytes as usize, case.data().weights.byte_size() + 4 * (m * k + m * n), "linear {s:?}");
        }
        let (c, hw, o) = (32, 4, 64);
        for s in [F32, Q8_0] {
            let case = conv3x3(c, hw, o, s);
            assert_eq!(case.bytes as usize, case.data().weights.byte_size() + 4 * (c + o) * hw * hw, "conv3x3 {s:?}");
        }
    }

    #[test]
    fn filters_match_whole_numbers_only() {
        assert!(found("4x4x1280->1280", "4x4"));
        assert!(!found("77x1024x4096", "4x4"), "4x4 inside 1024x4096");
        assert!(found("77x1024x4096", "77x"));
        assert!(found("77x1024x4096", "1024x4096"));
        assert!(!found("1024x1280x1280", "128"), "128 inside 1280");
        assert!(found("conv3x3", "conv"), "text next to a digit still matches");
        assert!(found("q8_0", "q8"));
        assert!(found("4096x4096 1x64", "x64"));
        assert!(!found("4096x320", "x32"));
        assert!(found("anything", ""));
    }
}
