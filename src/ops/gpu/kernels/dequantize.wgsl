// A weight chunk widened to f32, one value per invocation: for ops that move a weight as
// data (the permute that lays out aMUSEd's transpose-conv weight) rather than read it as
// a linear or conv does. params: params.rs `Dequantize`. LOAD defines value(i), the chunk's element i.

// Bindings: 0 values, then the block scales (block formats only), out, params.
//{{BINDINGS}}

//{{LOAD}}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if (i >= params.n) {
        return;
    }
    out[i] = value(i);
}
