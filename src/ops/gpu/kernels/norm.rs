//! Normalizations (GroupNorm, LayerNorm, RmsNorm) and softmax: one workgroup per normalized
//! set (a (batch, group) or a row) that loops over its values, with workgroup-memory tree
//! reductions (`reduce.wgsl`, or `reduce_subgroup.wgsl` where the device has `subgroups`)
//! and two-pass statistics (mean, then variance of x - mean).

use super::elementwise::groups_for;
use super::params::{GroupNorm, GroupNormApply, GroupNormCombine, GroupNormStats, RowNorm, Softmax};
use super::split::{fits, limit_err, spans, whole};
use super::{fill, splice, NodeCx};
use crate::error::OpError;
use crate::ops::gpu::builder::{grid, Buf, KernelBuilder};

const REDUCE: &str = include_str!("reduce.wgsl");
const REDUCE_SUBGROUP: &str = include_str!("reduce_subgroup.wgsl");

/// Workgroup size for sets of `len` values: short rows (LayerNorm at 320..1024 wide) leave
/// fewer invocations idle and take fewer reduction steps at 64; long sets use 256.
fn workgroup_size(len: usize) -> u32 {
    if len <= 1024 {
        64
    } else {
        256
    }
}

/// `kernel` with the reductions in front (on subgroups when `sg`), sized for `wg` invocations.
fn source(kernel: &str, wg: u32, sg: bool) -> String {
    splice(&format!("{}\n{kernel}", if sg { REDUCE_SUBGROUP } else { REDUCE }), &[("WG", &wg.to_string())])
}

/// A GroupNorm statistics kernel: `source` plus the two-pass slice moments.
fn moments_source(kernel: &str, wg: u32, sg: bool) -> String {
    source(&format!("{kernel}\n{}", include_str!("moments.wgsl")), wg, sg)
}

/// A reducing kernel's pipeline key: `base`, marked when its reductions use subgroups.
fn key(base: &str, sg: bool) -> String {
    if sg {
        format!("{base}_sg")
    } else {
        base.to_string()
    }
}

/// One workgroup per set, over a 2D grid when there are more than 65535 sets.
fn sets_grid(cx: &NodeCx, sets: usize) -> Result<[u32; 3], OpError> {
    u32::try_from(sets)
        .ok()
        .filter(|&s| s.div_ceil(65535) <= 65535)
        .map(grid)
        .ok_or_else(|| OpError::Limits { node: cx.node.label.clone(), message: format!("{sets} rows need too many workgroups") })
}

/// GroupNorm over x [B, C, ..] with gamma/beta [C] (weights or activations), then SiLU when `silu`.
pub fn group_norm(kb: &mut KernelBuilder, cx: &NodeCx, groups: usize, eps: f32, silu: bool) -> Result<(), OpError> {
    let shape = &cx.in_shapes[0];
    let (batch, channels) = (shape[0], shape[1]);
    let spatial: usize = shape[2..].iter().product();
    let per_group = channels / groups;
    let len = per_group * spatial;
    let wg = workgroup_size(len);
    let sg = kb.ctx.subgroups();
    let sets = batch * groups;
    let x = cx.f32_input(0)?;
    // Over the binding limit: windows of whole (batch, group) sets.
    let windows = if fits(kb, &[&x, &cx.out]) { whole(sets) } else { spans(sets, len, 0, kb.max_elems(), kb.offset_align(), 1).map_err(|m| limit_err(cx, m))? };
    // (The parts path normalizes 4 values of a channel per invocation.)
    let parts = if spatial.is_multiple_of(4) { parts_for(sets, len) } else { 1 };
    // Statistics scratch for the largest window (the first): per part, then per set.
    let scratch = (parts > 1).then(|| (kb.scratch((windows[0].len() * parts * 8) as u64), kb.scratch((windows[0].len() * 8) as u64)));
    let (gamma, beta) = (cx.f32_input(1)?, cx.f32_input(2)?);
    for w in windows {
        let (start, n) = (w.start * len, w.len() * len);
        let (xw, ow) = (x.window(start, n), cx.out.window(start, n));
        let Some((stats, moments)) = &scratch else {
            let params = GroupNorm {
                sets: w.len() as u32,
                group_len: len as u32,
                spatial: spatial as u32,
                channels_per_group: per_group as u32,
                groups: groups as u32,
                eps,
                silu: silu as u32,
                first_set: w.start as u32,
            };
            let workgroups = sets_grid(cx, w.len())?;
            kb.dispatch(
                &key(&format!("group_norm_wg{wg}"), sg),
                || moments_source(include_str!("group_norm.wgsl"), wg, sg),
                vec![xw, gamma.clone(), beta.clone(), ow],
                &params,
                workgroups,
            )?;
            continue;
        };
        let part_len = len.div_ceil(parts) as u32;
        let (sets_here, len32) = (w.len() as u32, len as u32);
        let stats_params = GroupNormStats { count: sets_here * parts as u32, group_len: len32, parts: parts as u32, part_len, first: 0 };
        let workgroups = sets_grid(cx, w.len() * parts)?;
        // 64 wide: software adapters pay per invocation at each barrier (SwiftShader took
        // 60.7 ms at 256 wide, 26.5 at 64, vs 29.7 for one workgroup per group).
        kb.dispatch(&key("group_norm_stats", sg), || moments_source(include_str!("group_norm_stats.wgsl"), 64, sg), vec![xw.clone(), stats.clone()], &stats_params, workgroups)?;
        let combine = GroupNormCombine { sets: sets_here, group_len: len32, parts: parts as u32, part_len, eps };
        let groups64 = [sets_here.div_ceil(64), 1, 1];
        kb.dispatch("group_norm_combine", || include_str!("group_norm_combine.wgsl").into(), vec![stats.clone(), moments.clone()], &combine, groups64)?;
        let apply = apply_params(n, spatial, per_group, channels, silu, w.start * per_group, 0);
        let bindings = vec![xw, gamma.clone(), beta.clone(), moments.clone(), ow];
        kb.dispatch("group_norm_apply", || include_str!("group_norm_apply.wgsl").into(), bindings, &apply, groups_for(n / 4))?;
    }
    Ok(())
}

/// GroupNorm applied to `n` values (4 per invocation) from given moments.
fn apply_params(n: usize, spatial: usize, per_group: usize, channels: usize, silu: bool, first_channel: usize, first_set: usize) -> GroupNormApply {
    let u = |v: usize| v as u32;
    GroupNormApply {
        n4: u(n / 4),
        spatial: u(spatial),
        channels_per_group: u(per_group),
        channels: u(channels),
        silu: silu as u32,
        first_channel: u(first_channel),
        first_set: u(first_set),
    }
}

/// x [B, C, ..] -> [B, G, 2] of each set's (mean, M2): one workgroup per set, over
/// windows of whole sets when x is over the binding limit (the output stays whole).
pub fn group_moments(kb: &mut KernelBuilder, cx: &NodeCx, groups: usize) -> Result<(), OpError> {
    let shape = &cx.in_shapes[0];
    let sets = shape[0] * groups;
    let len = shape.iter().product::<usize>() / sets;
    let x = cx.f32_input(0)?;
    let sg = kb.ctx.subgroups();
    let windows = if fits(kb, &[&x]) { whole(sets) } else { spans(sets, len, 0, kb.max_elems(), kb.offset_align(), 1).map_err(|m| limit_err(cx, m))? };
    for w in windows {
        let xw = x.window(w.start * len, w.len() * len);
        let params = GroupNormStats { count: w.len() as u32, group_len: len as u32, parts: 1, part_len: len as u32, first: w.start as u32 };
        let workgroups = sets_grid(cx, w.len())?;
        kb.dispatch(&key("group_norm_stats", sg), || moments_source(include_str!("group_norm_stats.wgsl"), 64, sg), vec![xw, cx.out.clone()], &params, workgroups)?;
    }
    Ok(())
}

/// Parts [B, G, P, 2] of (mean, M2) -> [B, G, 2] of (mean, sqrt(var + eps)).
pub fn moments_combine(kb: &mut KernelBuilder, cx: &NodeCx, len: usize, part_len: usize, eps: f32) -> Result<(), OpError> {
    let s = &cx.in_shapes[0];
    let sets = (s[0] * s[1]) as u32;
    let params = GroupNormCombine { sets, group_len: len as u32, parts: s[2] as u32, part_len: part_len as u32, eps };
    let bindings = vec![cx.f32_input(0)?, cx.out.clone()];
    kb.dispatch("group_norm_combine", || include_str!("group_norm_combine.wgsl").into(), bindings, &params, [sets.div_ceil(64), 1, 1])
}

/// GroupNorm of x [B, C, ..] from given moments [B, G, 2], over windows of whole sets.
pub fn group_norm_apply(kb: &mut KernelBuilder, cx: &NodeCx, groups: usize, silu: bool) -> Result<(), OpError> {
    let shape = &cx.in_shapes[0];
    let channels = shape[1];
    let spatial: usize = shape[2..].iter().product();
    if !spatial.is_multiple_of(4) {
        return Err(limit_err(cx, format!("GroupNorm from given moments needs a multiple of 4 positions per channel, not {spatial}")));
    }
    let (per_group, sets) = (channels / groups, shape[0] * groups);
    let len = per_group * spatial;
    let x = cx.f32_input(0)?;
    let windows = if fits(kb, &[&x, &cx.out]) { whole(sets) } else { spans(sets, len, 0, kb.max_elems(), kb.offset_align(), 1).map_err(|m| limit_err(cx, m))? };
    let (gamma, beta, moments) = (cx.f32_input(1)?, cx.f32_input(2)?, cx.f32_input(3)?);
    for w in windows {
        let (start, n) = (w.start * len, w.len() * len);
        let params = apply_params(n, spatial, per_group, channels, silu, w.start * per_group, w.start);
        let bindings = vec![x.window(start, n), gamma.clone(), beta.clone(), moments.clone(), cx.out.window(start, n)];
        kb.dispatch("group_norm_apply", || include_str!("group_norm_apply.wgsl").into(), bindings, &params, groups_for(n / 4))?;
    }
    Ok(())
}

/// Sets below this count have their statistics taken in parts (SD's 32 groups would keep
/// 32 workgroups busy on a GPU that runs hundreds)...
const PARTS_BELOW_SETS: usize = 64;
/// ...of at least this many values each.
const MIN_PART: usize = 4096;

/// Parts per set: enough for about 256 workgroups in all, 1 for many or small sets.
fn parts_for(sets: usize, len: usize) -> usize {
    if sets >= PARTS_BELOW_SETS || len < 2 * MIN_PART {
        return 1;
    }
    256usize.div_ceil(sets).min(len / MIN_PART).max(2)
}

/// The LayerNorm template as LayerNorm (`center`, beta at binding 2) or RmsNorm (no beta),
/// with gamma at binding 1 when `affine`, else neither.
fn row_norm_source(center: bool, affine: bool, wg: u32, sg: bool) -> String {
    let bindings = match (affine, center) {
        (true, true) => {
            "@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
fn scale(i: u32) -> f32 { return gamma[i]; }
fn shift(i: u32) -> f32 { return beta[i]; }"
        }
        (true, false) => {
            "@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
fn scale(i: u32) -> f32 { return gamma[i]; }
fn shift(i: u32) -> f32 { return 0.0; }"
        }
        (false, _) => {
            "@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
fn scale(i: u32) -> f32 { return 1.0; }
fn shift(i: u32) -> f32 { return 0.0; }"
        }
    };
    // WG is filled by `source`.
    let kernel = fill(include_str!("layer_norm.wgsl"), &[("BINDINGS", bindings), ("CENTER", &center.to_string())]);
    source(&kernel, wg, sg)
}

/// Records a LayerNorm (`center`, inputs x, gamma, beta) or RmsNorm (x, gamma) over the
/// last axis; x alone: no affine.
fn row_norm(kb: &mut KernelBuilder, cx: &NodeCx, eps: f32, center: bool) -> Result<(), OpError> {
    let d = *cx.in_shapes[0].last().unwrap_or(&1);
    let rows = cx.node.numel() / d.max(1);
    let wg = workgroup_size(d);
    let affine = cx.inputs.len() > 1;
    let mut bindings: Vec<Buf> = (0..cx.inputs.len()).map(|i| cx.f32_input(i)).collect::<Result<_, _>>()?;
    bindings.push(cx.out.clone());
    let sg = kb.ctx.subgroups();
    let key = key(&format!("{}{}_wg{wg}", if center { "layer_norm" } else { "rms_norm" }, if affine { "" } else { "_plain" }), sg);
    let workgroups = sets_grid(cx, rows)?;
    kb.dispatch(&key, || row_norm_source(center, affine, wg, sg), bindings, &RowNorm { rows: rows as u32, d: d as u32, eps }, workgroups)
}

/// LayerNorm over the last axis of x [.., D] with gamma/beta [D].
pub fn layer_norm(kb: &mut KernelBuilder, cx: &NodeCx, eps: f32) -> Result<(), OpError> {
    row_norm(kb, cx, eps, true)
}

/// RmsNorm over the last axis of x [.., D] with gamma [D]: x / sqrt(mean(x^2) + eps) * gamma.
pub fn rms_norm(kb: &mut KernelBuilder, cx: &NodeCx, eps: f32) -> Result<(), OpError> {
    row_norm(kb, cx, eps, false)
}

/// Softmax along the last axis.
pub fn softmax(kb: &mut KernelBuilder, cx: &NodeCx) -> Result<(), OpError> {
    let d = *cx.node.shape.last().unwrap_or(&1);
    let rows = cx.node.numel() / d.max(1);
    let wg = workgroup_size(d);
    let bindings = vec![cx.f32_input(0)?, cx.out.clone()];
    let workgroups = sets_grid(cx, rows)?;
    let sg = kb.ctx.subgroups();
    kb.dispatch(&key(&format!("softmax_wg{wg}"), sg), || source(include_str!("softmax.wgsl"), wg, sg), bindings, &Softmax { rows: rows as u32, d: d as u32 }, workgroups)
}

/// Every variant of the norm kernels, at each workgroup size they use: (key, WGSL).
#[cfg(all(test, not(target_arch = "wasm32")))]
pub fn variants() -> Vec<(String, String)> {
    use super::kernel_source;
    let mut out = vec![];
    for sg in [false, true] {
        for wg in [64, 256] {
            out.push((key(&format!("group_norm_wg{wg}"), sg), kernel_source::<GroupNorm>(&moments_source(include_str!("group_norm.wgsl"), wg, sg))));
            out.push((key(&format!("softmax_wg{wg}"), sg), kernel_source::<Softmax>(&source(include_str!("softmax.wgsl"), wg, sg))));
            for center in [false, true] {
                for affine in [false, true] {
                    out.push((key(&format!("row_norm_{center}_{affine}_wg{wg}"), sg), kernel_source::<RowNorm>(&row_norm_source(center, affine, wg, sg))));
                }
            }
        }
        out.push((key("group_norm_stats", sg), kernel_source::<GroupNormStats>(&moments_source(include_str!("group_norm_stats.wgsl"), 64, sg))));
    }
    out.push(("group_norm_combine".into(), kernel_source::<GroupNormCombine>(include_str!("group_norm_combine.wgsl"))));
    out.push(("group_norm_apply".into(), kernel_source::<GroupNormApply>(include_str!("group_norm_apply.wgsl"))));
    out
}
