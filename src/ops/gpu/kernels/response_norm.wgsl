// GlobalResponseNorm's scale over x [B, N, C], one workgroup per batch item: each invocation
// takes channels lid, lid + 256, ..., writes gx = sqrt(sum over n of x^2) and adds it to its
// partial sum; a tree reduction gives the channel mean, then each rescales its own outputs.
// params: params.rs `ResponseNorm`.

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

const WG: u32 = 256u;
var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let N = params.n;
    let C = params.c;
    let b = flat_workgroup(wid, nwg);
    var sum = 0.0;
    for (var c = lid; c < C; c = c + WG) {
        var s = 0.0;
        for (var n = 0u; n < N; n = n + 1u) {
            let v = x[(b * N + n) * C + c];
            s = s + v * v;
        }
        let g = sqrt(s);
        out[b * C + c] = g;
        sum = sum + g;
    }
    part[lid] = sum;
    workgroupBarrier();
    for (var step = WG / 2u; step > 0u; step = step / 2u) {
        if (lid < step) {
            part[lid] = part[lid] + part[lid + step];
        }
        workgroupBarrier();
    }
    let denom = part[0] / f32(C) + params.eps;
    for (var c = lid; c < C; c = c + WG) {
        out[b * C + c] = out[b * C + c] / denom;
    }
}
