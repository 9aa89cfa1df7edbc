//! Where a CPU run's time goes, per kind of op: time, FLOPs counted from the graph's shapes,
//! and bytes touched, so that each kind's distance to the matmul ceiling shows
//! (`easel bench unet --profile`).

use std::collections::BTreeMap;

use super::threads::LoopUse;
use crate::ops::graph::{Node, Op};

/// Totals of one kind of op.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KindTotals {
    pub count: usize,
    pub millis: f64,
    pub flops: f64,
    /// Bytes of the inputs read and the output written (f32).
    pub bytes: f64,
    /// How the ops' parallel loops used the threads.
    pub loops: LoopUse,
}

impl KindTotals {
    /// Share of the time inside parallel loops (the rest ran on one thread), and the
    /// threads' busy share of those loops' capacity: together, where a thread count's
    /// speed-up goes.
    fn thread_use(&self) -> (String, String) {
        let share = |part: f64, whole: f64| if whole > 0.0 { format!("{:.0}%", (100.0 * part / whole).min(100.0)) } else { "-".into() };
        (share(self.loops.wall_ms, self.millis), share(self.loops.busy_ms, self.loops.capacity_ms))
    }
}

/// A run's profile: totals per kind, and per kind and shapes (which sizes of a kind are
/// far from the ceiling).
#[derive(Debug, Clone, Default)]
pub struct OpProfile {
    pub kinds: BTreeMap<&'static str, KindTotals>,
    pub shapes: BTreeMap<String, KindTotals>,
    /// Wall time of the whole runs, when the executor timed them: what it exceeds the ops'
    /// sum by went between ops (freeing, bookkeeping, threads waking).
    pub wall_millis: Option<f64>,
}

/// The kind an op is counted under.
pub fn kind(op: &Op) -> &'static str {
    match op {
        Op::Conv2d { .. } | Op::ConvTranspose2d { .. } | Op::DepthwiseConv2d { .. } => "conv",
        Op::Linear | Op::MatMul { .. } => "linear/matmul",
        Op::Attention { .. } => "attention",
        Op::GroupNorm { .. }
        | Op::LayerNorm { .. }
        | Op::RmsNorm { .. }
        | Op::Softmax
        | Op::ResponseNorm { .. }
        | Op::GroupMoments { .. }
        | Op::MomentsCombine { .. }
        | Op::GroupNormApply { .. } => "norm",
        Op::Unary(_) | Op::Binary(_) | Op::Geglu => "elementwise",
        Op::Reshape { .. } | Op::Permute { .. } | Op::Slice { .. } | Op::Concat { .. } | Op::UpsampleNearest { .. } => "copies",
        Op::Weight { .. } => "weights (expand to f32)",
        _ => "other",
    }
}

/// Floating-point operations of a node (multiply-adds count 2), from its shapes.
pub fn flops(node: &Node, inputs: &[&[usize]]) -> f64 {
    let out = node.numel() as f64;
    let last = |s: &[usize]| *s.last().unwrap_or(&1) as f64;
    match &node.op {
        // out [.., N] from x [.., K]: each output is a K-long dot product.
        Op::Linear => 2.0 * out * last(inputs[0]),
        Op::MatMul { .. } => 2.0 * out * last(inputs[0]),
        // weight [O, C, kh, kw]: each output sums C*kh*kw products.
        Op::Conv2d { .. } => 2.0 * out * inputs[1][1..].iter().product::<usize>() as f64,
        // weight [Ci, Co, k, k]: each input spreads over Co*k*k outputs.
        Op::ConvTranspose2d { .. } => 2.0 * inputs[0].iter().product::<usize>() as f64 * inputs[1][1..].iter().product::<usize>() as f64,
        Op::DepthwiseConv2d { .. } => 2.0 * out * inputs[1][2..].iter().product::<usize>() as f64,
        // q [B, Lq, H*D], k [B, Lk, H*D], v [B, Lk, H*Dv]: scores and the weighted sum.
        Op::Attention { .. } => {
            let (b, lq, lk) = (inputs[0][0] as f64, inputs[0][1] as f64, inputs[1][1] as f64);
            2.0 * b * lq * lk * (last(inputs[0]) + last(inputs[2]))
        }
        Op::GroupNorm { .. } | Op::LayerNorm { .. } | Op::RmsNorm { .. } | Op::GroupNormApply { .. } => 8.0 * out,
        Op::Softmax => 5.0 * out,
        Op::Unary(_) | Op::Binary(_) | Op::Geglu => out,
        _ => 0.0,
    }
}

impl OpProfile {
    /// Adds one node's time and its parallel loops' use of the threads.
    pub fn add(&mut self, node: &Node, inputs: &[&[usize]], millis: f64, loops: LoopUse) {
        let bytes = 4.0 * (node.numel() + inputs.iter().map(|s| s.iter().product::<usize>()).sum::<usize>()) as f64;
        let flops = flops(node, inputs);
        let dims = |s: &[usize]| s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
        let shapes = format!("{} {} -> {}", kind(&node.op), inputs.iter().map(|s| dims(s)).collect::<Vec<_>>().join(", "), dims(&node.shape));
        for t in [self.kinds.entry(kind(&node.op)).or_default(), self.shapes.entry(shapes).or_default()] {
            t.count += 1;
            t.millis += millis;
            t.flops += flops;
            t.bytes += bytes;
            t.loops += loops;
        }
    }

    /// Total time.
    pub fn millis(&self) -> f64 {
        self.kinds.values().map(|t| t.millis).sum()
    }

    /// A table: kind, ops, ms, share, GFLOP, GFLOP/s, GB/s, and the threads' use (share of
    /// the time in parallel loops, busy share of those loops); slowest first.
    pub fn table(&self) -> String {
        let total = self.millis().max(1e-9);
        let mut s = format!("{:<24} {:>6} {:>10} {:>6} {:>9} {:>9} {:>8} {:>9} {:>6}\n", "op kind", "ops", "ms", "share", "GFLOP", "GFLOP/s", "GB/s", "in loops", "busy");
        s += &rows(self.kinds.iter().map(|(k, t)| (*k, t)), total, usize::MAX, 24);
        let flops: f64 = self.kinds.values().map(|t| t.flops).sum();
        s += &format!(
            "{:<24} {:>6} {:>10.1} {:>6} {:>9.2} {:>9.1}\n",
            "total",
            self.kinds.values().map(|t| t.count).sum::<usize>(),
            total,
            "",
            flops / 1e9,
            flops / 1e9 / (total / 1e3)
        );
        if let Some(wall) = self.wall_millis {
            s += &format!("{:<24} {:>6} {:>10.1}   (wall {wall:.1} ms)\n", "between ops", "", wall - total);
        }
        s
    }

    /// The `limit` slowest (kind, shapes) pairs, as [`table`](Self::table)'s rows: inputs'
    /// shapes, then the output's.
    pub fn shapes_table(&self, limit: usize) -> String {
        let total = self.millis().max(1e-9);
        let mut s =
            format!("{:<64} {:>6} {:>10} {:>6} {:>9} {:>9} {:>8} {:>9} {:>6}\n", "op kind: inputs -> output", "ops", "ms", "share", "GFLOP", "GFLOP/s", "GB/s", "in loops", "busy");
        s += &rows(self.shapes.iter().map(|(k, t)| (k.as_str(), t)), total, limit, 64);
        s
    }
}

/// Table rows, slowest first, at most `limit`, the name `width` wide.
fn rows<'a>(totals: impl Iterator<Item = (&'a str, &'a KindTotals)>, total: f64, limit: usize, width: usize) -> String {
    let mut rows: Vec<_> = totals.collect();
    rows.sort_by(|a, b| b.1.millis.total_cmp(&a.1.millis));
    let mut s = String::new();
    for (k, t) in rows.into_iter().take(limit) {
        let secs = (t.millis / 1e3).max(1e-9);
        let rate = if t.flops > 0.0 { format!("{:.1}", t.flops / 1e9 / secs) } else { "-".into() };
        let (in_loops, busy) = t.thread_use();
        s += &format!(
            "{k:<width$} {:>6} {:>10.1} {:>5.1}% {:>9.2} {:>9} {:>8.2} {in_loops:>9} {busy:>6}\n",
            t.count,
            t.millis,
            100.0 * t.millis / total,
            t.flops / 1e9,
            rate,
            t.bytes / 1e9 / secs
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::graph::DType;

    fn node(op: Op, shape: &[usize]) -> Node {
        Node { op, inputs: vec![], shape: shape.to_vec(), dtype: DType::F32, label: "n".into() }
    }

    #[test]
    fn flops_are_counted_from_shapes() {
        // [2, 3] @ w[4, 3]^T: 8 outputs of 3 multiply-adds.
        assert_eq!(flops(&node(Op::Linear, &[2, 4]), &[&[2, 3], &[4, 3]]), 48.0);
        // 3x3 conv 8 -> 16 channels at 5x5 output: 400 outputs of 72 products.
        assert_eq!(flops(&node(Op::Conv2d { stride: 1, padding: [1; 4] }, &[1, 16, 5, 5]), &[&[1, 8, 5, 5], &[16, 8, 3, 3]]), 2.0 * 400.0 * 72.0);
        // Attention: 1 x 10 queries x 20 keys, width 8 for scores and for values.
        let a = node(Op::Attention { heads: 2, scale: 1.0, causal: false }, &[1, 10, 8]);
        assert_eq!(flops(&a, &[&[1, 10, 8], &[1, 20, 8], &[1, 20, 8]]), 2.0 * 10.0 * 20.0 * 16.0);
        let mut p = OpProfile::default();
        p.add(&a, &[&[1, 10, 8], &[1, 20, 8], &[1, 20, 8]], 2.0, LoopUse::default());
        // The linear spent 0.8 of its 1 ms in one loop on 2 threads, which were busy 1.2 ms.
        p.add(&node(Op::Linear, &[2, 4]), &[&[2, 3], &[4, 3]], 1.0, LoopUse { loops: 1, wall_ms: 0.8, capacity_ms: 1.6, busy_ms: 1.2 });
        assert_eq!(p.kinds["attention"].count, 1);
        assert_eq!(p.millis(), 3.0);
        let table = p.table();
        assert!(table.lines().nth(1).unwrap().starts_with("attention"), "{table}");
        // 80% of the linear's time in loops, its threads busy 75% of those; no loops: 0%, no busy share.
        assert!(table.lines().nth(2).unwrap().ends_with("      80%    75%"), "{table}");
        assert!(table.lines().nth(1).unwrap().ends_with("        0%      -"), "{table}");
        // Per shapes: the same two, slowest first, named by kind and shapes; at most `limit`.
        p.add(&node(Op::Linear, &[5, 4]), &[&[5, 3], &[4, 3]], 0.5, LoopUse::default());
        let shapes = p.shapes_table(2);
        let lines: Vec<&str> = shapes.lines().collect();
        assert_eq!(lines.len(), 3, "{shapes}");
        assert!(lines[1].starts_with("attention 1x10x8, 1x20x8, 1x20x8 -> 1x10x8 ") && lines[2].starts_with("linear/matmul 2x3, 4x3 -> 2x4 "), "{shapes}");
        assert_eq!(p.shapes.len(), 3);
        assert_eq!(p.kinds["linear/matmul"].count, 2);
        // The run's wall time, when known, shows what fell between the ops.
        p.wall_millis = Some(4.0);
        let last = p.table().lines().last().unwrap().to_string();
        assert!(last.starts_with("between ops") && last.contains("0.5") && last.contains("wall 4.0 ms"), "{last}");
    }
}
