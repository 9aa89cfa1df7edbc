// LayerNorm (CENTER: subtract the row mean, then add beta) and RmsNorm (neither) over the
// last axis, one workgroup per row; the variance is taken of x - mean (two passes).
// params: params.rs `RowNorm`.

//{{BINDINGS}}

const CENTER: bool = {{CENTER}};

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lanes: Lanes) {
    let lid = lanes.index;
    let row = flat_workgroup(wid, nwg);
    if (row >= params.rows) {
        return;
    }
    let d = params.d;
    let base = row * d;

    var mean = 0.0;
    if (CENTER) {
        var s = 0.0;
        for (var i = lid; i < d; i = i + {{WG}}u) {
            s = s + x[base + i];
        }
        mean = reduce_sum(s, lanes) / f32(d);
    }

    var s2 = 0.0;
    for (var i = lid; i < d; i = i + {{WG}}u) {
        let v = x[base + i] - mean;
        s2 = s2 + v * v;
    }
    let rms = sqrt(reduce_sum(s2, lanes) / f32(d) + params.eps);

    for (var i = lid; i < d; i = i + {{WG}}u) {
        out[base + i] = (x[base + i] - mean) / rms * scale(i) + shift(i);
    }
}
