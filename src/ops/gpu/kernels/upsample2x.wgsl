// Nearest-neighbour 2x upsampling of [B, C, H, W]: out[bc, y, x] = in[bc, y/2, x/2].
// params: [n = B*C*2H*2W, H, W].

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if (i >= pu(0u)) {
        return;
    }
    let h = pu(1u);
    let w = pu(2u);
    let col = i % (2u * w);
    let rest = i / (2u * w);
    let row = rest % (2u * h);
    let plane = rest / (2u * h);
    out[i] = x[(plane * h + row / 2u) * w + col / 2u];
}
