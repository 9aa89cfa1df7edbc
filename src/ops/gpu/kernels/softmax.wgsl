// Softmax along the last axis, one workgroup per row: the row max is subtracted before exp
// (inputs of +-100 would overflow otherwise); exp values are staged in `out`, each read back
// by the invocation that wrote it, then divided by their sum.
// params: params.rs `Softmax`.

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lanes: Lanes) {
    let lid = lanes.index;
    let row = flat_workgroup(wid, nwg);
    if (row >= params.rows) {
        return;
    }
    let d = params.d;
    let base = row * d;

    // Lowest finite f32, as bits: WGSL has no infinity literal, and Tint rejects the
    // decimal form as not representable.
    var m = bitcast<f32>(0xff7fffffu);
    for (var i = lid; i < d; i = i + {{WG}}u) {
        m = max(m, x[base + i]);
    }
    m = reduce_max(m, lanes);

    var s = 0.0;
    for (var i = lid; i < d; i = i + {{WG}}u) {
        let e = exp(x[base + i] - m);
        out[base + i] = e;
        s = s + e;
    }
    let sum = reduce_sum(s, lanes);

    for (var i = lid; i < d; i = i + {{WG}}u) {
        out[base + i] = out[base + i] / sum;
    }
}
