// diffusers' get_timestep_embedding: out[b] = [sin(t f_i) | cos(t f_i)] (or [cos | sin] when
// flipped), with a trailing zero column when dim is odd. The frequencies f_i come from the host
// (computed by the CPU reference's own f32 expression), so t * f_i rounds exactly as there;
// each dispatch covers up to 56 of them (params.rs `TIMESTEP_FREQS`).
// One invocation per (b, i) writes both columns of frequency f0 + i.
// params: params.rs `TimestepEmbedding` (freqs[i] is f_{f0+i}).

@group(0) @binding(0) var<storage, read_write> t: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

// pi/2 in three parts: the first two have 8 and 11 significant bits, so k * part is exact for
// |k| < 8192 (|t f| < 12868) and the reduced argument keeps full f32 accuracy.
const PIO2_HI: f32 = 0x1.92p0f;
const PIO2_MID: f32 = 0x1.fb4p-12f;
const PIO2_LO: f32 = 0x1.4442d2p-24f;

// (sin a, cos a) to about 1 ulp: reduce a to r in [-pi/4, pi/4] by multiples of pi/2, then
// Taylor series (the first omitted terms are below 2e-9 there). Builtin sin/cos only promise
// 2^-11 absolute error, and only on [-pi, pi], while t f reaches 1000.
fn sin_cos(a: f32) -> vec2<f32> {
    let k = round(a * 0.63661977);
    let r = ((a - k * PIO2_HI) - k * PIO2_MID) - k * PIO2_LO;
    let r2 = r * r;
    let s = r * (1.0 + r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0)))));
    let c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0 + r2 * (-1.0 / 3628800.0)))));
    switch (i32(k) & 3) {
        case 0: { return vec2<f32>(s, c); }
        case 1: { return vec2<f32>(c, -s); }
        case 2: { return vec2<f32>(-s, -c); }
        default: { return vec2<f32>(-c, s); }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let dim = params.dim;
    let half = params.half;
    let f0 = params.f0;
    let nf = params.nf;
    // With no frequencies (dim 1) one invocation per row still writes the zero column.
    let per_row = max(nf, 1u);
    let g = flat_workgroup(wid, nwg) * 256u + lid;
    if (g >= params.batch * per_row) {
        return;
    }
    let b = g / per_row;
    let i = g % per_row;
    let row = b * dim;
    if (i == 0u && f0 == 0u && dim % 2u == 1u) {
        out[row + dim - 1u] = 0.0;
    }
    if (i >= nf) {
        return;
    }
    let sc = sin_cos(t[b] * params.freqs[i / 4u][i % 4u]);
    let flip = params.flip != 0u;
    out[row + f0 + i] = select(sc.x, sc.y, flip);
    out[row + half + f0 + i] = select(sc.y, sc.x, flip);
}
