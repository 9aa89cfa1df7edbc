// Nearest-neighbour upsampling of [B, C, H, W] to [B, C, OH, OW], as torch's
// interpolate(mode="nearest"): out[bc, y, x] = in[bc, floor(y * H / OH), floor(x * W / OW)].
// params: params.rs `UpsampleNearest` (n = B*C*OH*OW).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if (i >= params.n) {
        return;
    }
    let h = params.h;
    let w = params.w;
    let oh = params.oh;
    let ow = params.ow;
    let col = i % ow;
    let rest = i / ow;
    let row = rest % oh;
    let plane = rest / oh;
    out[i] = x[(plane * h + row * h / oh) * w + col * w / ow];
}
