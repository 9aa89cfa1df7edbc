//! GPU-vs-CPU cases for lookups and selections: embedding (one table and a table split in
//! row chunks), timestep embedding, argmax, top-k and nearest-codebook search. Lookups and
//! index outputs involve no arithmetic on the CPU side that the GPU could round differently,
//! so they must match exactly; inputs are chosen so that every decision has a margin.

use super::{Case, ELEMENTWISE_TOL};
use easel::ops::check::random_values;
use easel::ops::cpu::HostTensor;

/// Copies and u32 indices: no difference allowed.
const EXACT: f64 = 0.0;

/// Deterministic pseudo-random integers in [0, below).
fn lcg(n: usize, below: u32, seed: u32) -> Vec<u32> {
    let mut state = seed.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (((state >> 8) as u64 * below as u64) >> 24) as u32
        })
        .collect()
}

fn with_f32(mut case: Case, name: &str, values: Vec<f32>) -> Case {
    case.inputs.insert(name.into(), HostTensor::F32(values));
    case
}

fn embedding_case(name: &str, ids_shape: &[usize], v: usize, d: usize) -> Case {
    let shape = ids_shape.to_vec();
    let n: usize = shape.iter().product();
    // Both ends of the table, then ids spread over every chunk.
    let mut ids = vec![0, v as u32 - 1];
    ids.extend(lcg(n - 2, v as u32, 7));
    Case::new(name, EXACT, move |g| {
        let ids = g.input_u32("ids", &shape);
        // Not a CLIP token table (those stay on the host): the GPU's own lookup.
        let table = g.weight("embedding.weight")?;
        let y = g.embedding(ids, table)?;
        g.output(y);
        Ok(())
    })
    .input_u32("ids", ids)
    .weight("embedding.weight", &[v, d], easel::ops::StorageType::F32, 1.0, 61)
}

fn timestep_case(name: &str, t: Vec<f32>, dim: usize, flip: bool, shift: f32) -> Case {
    let b = t.len();
    let case = Case::new(name, ELEMENTWISE_TOL, move |g| {
        let t = g.input("t", &[b]);
        let y = g.timestep_embedding(t, dim, flip, shift)?;
        g.output(y);
        Ok(())
    });
    with_f32(case, "t", t)
}

fn argmax_case(name: &str, shape: &[usize], seed: u32) -> Case {
    let s = shape.to_vec();
    // The GPU compares the very values the CPU does: no rounding, so no margin is needed.
    Case::new(name, EXACT, move |g| {
        let x = g.input("x", &s);
        let y = g.argmax(x)?;
        g.output(y);
        Ok(())
    })
    .input("x", shape.iter().product(), 1.0, seed)
}

fn top_k_case(name: &str, shape: &[usize], k: usize, seed: u32) -> Case {
    let s = shape.to_vec();
    let n = *shape.last().unwrap();
    let values = random_values(shape.iter().product(), seed);
    // Ties may come out in either order on the two backends: the k + 1 largest of each row
    // must be distinct.
    for row in values.chunks(n) {
        let mut sorted = row.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let top = &sorted[..(k + 1).min(n)];
        assert!(top.windows(2).all(|w| w[0] > w[1]), "{name}: tie among the top values");
    }
    let case = Case::new(name, EXACT, move |g| {
        let x = g.input("x", &s);
        let y = g.top_k(x, k)?;
        g.output(y);
        Ok(())
    });
    with_f32(case, "x", values)
}

/// z rows are codebook rows plus noise of 1e-3 per component, picked so that the second
/// nearest code is farther by more than 1e-2 in squared distance: far above the CPU's
/// rounding of |c|^2 - 2 z.c (about D * 1e-7).
fn vq_case(name: &str, n: usize, k: usize, d: usize, seed: u32) -> Case {
    let codebook = random_values(k * d, seed);
    let noise = random_values(n * d, seed + 1);
    let dist = |z: &[f32], c: usize| -> f64 { z.iter().zip(&codebook[c * d..(c + 1) * d]).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum() };
    let mut z = Vec::with_capacity(n * d);
    // The last code first: it sits in the last, possibly partial, group of 4 codes.
    let mut targets = std::iter::once(k as u32 - 1).chain(lcg(4 * n, k as u32, seed));
    while z.len() < n * d {
        let target = targets.next().expect("enough well-separated codes") as usize;
        let row = z.len() / d;
        let cand: Vec<f32> = (0..d).map(|j| codebook[target * d + j] + 1e-3 * noise[row * d + j]).collect();
        let own = dist(&cand, target);
        if (0..k).filter(|&c| c != target).all(|c| dist(&cand, c) > own + 1e-2) {
            z.extend(cand);
        }
    }
    let case = Case::new(name, EXACT, move |g| {
        let z = g.input("z", &[n, d]);
        let codes = g.weight("quantize.embedding.weight")?;
        let y = g.vq_nearest(z, codes)?;
        g.output(y);
        Ok(())
    })
    .weight_values("quantize.embedding.weight", &[k, d], &codebook);
    with_f32(case, "z", z)
}

/// A codebook whose second half repeats its first: every z row is exactly one code, so it
/// ties with its copy, and the first index must win (across chunks when split).
fn vq_tie_case(name: &str, half: usize, d: usize) -> Case {
    let first = random_values(half * d, 87);
    let codebook: Vec<f32> = first.iter().chain(first.iter()).copied().collect();
    let z: Vec<f32> = (0..half).rev().flat_map(|c| first[c * d..(c + 1) * d].to_vec()).collect();
    let case = Case::new(name, EXACT, move |g| {
        let z = g.input("z", &[half, d]);
        let codes = g.weight("quantize.embedding.weight")?;
        let y = g.vq_nearest(z, codes)?;
        g.output(y);
        Ok(())
    })
    .weight_values("quantize.embedding.weight", &[2 * half, d], &codebook);
    with_f32(case, "z", z)
}

/// Every misc case.
pub fn cases() -> Vec<Case> {
    vec![
        embedding_case("embedding [2,77] ids in [1000,40]", &[2, 77], 1000, 40),
        // 300-row chunks: four dispatches, each writing the ids in its rows.
        embedding_case("embedding [2,77] ids in [1000,40] split", &[2, 77], 1000, 40).split_at(300 * 40 * 4),
        embedding_case("embedding [3,5] ids in [50,37] split", &[3, 5], 50, 37).split_at(7 * 37 * 4),
        timestep_case("timestep_embedding dim 320 flip shift 0", vec![0.0, 1.0, 500.5, 999.0], 320, true, 0.0),
        timestep_case("timestep_embedding dim 33 shift 1", vec![0.0, 1.0, 500.5, 999.0], 33, false, 1.0),
        argmax_case("argmax [3,1000]", &[3, 1000], 71),
        argmax_case("argmax [2,5,8193]", &[2, 5, 8193], 72),
        top_k_case("top_k k=5 [4,300]", &[4, 300], 5, 73),
        top_k_case("top_k k=1 [2,37]", &[2, 37], 1, 74),
        top_k_case("top_k k=64 [2,8193]", &[2, 8193], 64, 75),
        vq_case("vq_nearest N=50 K=300 D=32", 50, 300, 32, 81),
        vq_case("vq_nearest N=7 K=1024 D=3", 7, 1024, 3, 83),
        vq_case("vq_nearest N=9 K=41 D=256", 9, 41, 256, 85),
        // Codebooks over the binding limit: chunks of 70 codes (the last partial), searched
        // one dispatch each.
        vq_case("vq_nearest N=50 K=300 D=32 split", 50, 300, 32, 81).split_at(70 * 32 * 4),
        vq_tie_case("vq_nearest ties K=12 D=5", 6, 5),
        vq_tie_case("vq_nearest ties K=12 D=5 split", 6, 5).split_at(6 * 5 * 4),
    ]
}
