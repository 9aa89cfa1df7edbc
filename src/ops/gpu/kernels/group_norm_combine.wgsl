// GroupNorm statistics of whole sets from their parts' (mean, M2), by Chan et al.'s
// pairwise update (exact, and as stable as the two-pass form): mean = sum(n_p mean_p) / n,
// M2 = sum(M2_p + n_p (mean_p - mean)^2). One invocation per set.
// params: params.rs `GroupNormCombine`; moments[2 set] = mean, [+1] = sqrt(var + eps).

@group(0) @binding(0) var<storage, read_write> stats: array<f32>;
@group(0) @binding(1) var<storage, read_write> moments: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

fn part_len(p: u32) -> f32 {
    let start = p * params.part_len;
    return f32(min(start + params.part_len, params.group_len) - start);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.x;
    if (s >= params.sets) {
        return;
    }
    let parts = params.parts;
    let first = s * parts;
    var sum = 0.0;
    for (var p = 0u; p < parts; p = p + 1u) {
        sum = sum + part_len(p) * stats[2u * (first + p)];
    }
    let mean = sum / f32(params.group_len);
    var m2 = 0.0;
    for (var p = 0u; p < parts; p = p + 1u) {
        let d = stats[2u * (first + p)] - mean;
        m2 = m2 + stats[2u * (first + p) + 1u] + part_len(p) * d * d;
    }
    moments[2u * s] = mean;
    moments[2u * s + 1u] = sqrt(m2 / f32(params.group_len) + params.eps);
}
