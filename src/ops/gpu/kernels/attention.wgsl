// Multi-head scaled dot-product attention, FlashAttention style: keys are streamed four at
// a time with the online-softmax recurrence (running max m, running sum l, accumulator
// rescaled by exp(m_old - m_new)), so the score matrix never exists.
//
// One workgroup per (batch, head, block of 64 * ROWS queries); each invocation owns ROWS
// query rows, keeps them (pre-scaled) and their Dv accumulators in registers, and reads
// K/V rows straight from storage at workgroup-uniform addresses: no workgroup memory, no
// barriers. On software adapters every storage load is emulated lane by lane, so reusing
// each K/V load for ROWS rows is what pays. Every invocation runs the same key loop: rows
// past Lq are computed on a clamped copy and not stored, causal masks are selects.
//
// q [B, Lq, H*DH], k [B, Lk, H*DH], v [B, Lk, H*DV], out [B, Lq, H*DV]; head h at h*D.
// Causal: query i sees key j when j <= i + Lk - Lq. A row that sees no key writes zeros.
// params: params.rs `Attention`.

@group(0) @binding(0) var<storage, read_write> q: array<{{QK_ELEM}}>;
@group(0) @binding(1) var<storage, read_write> k: array<{{QK_ELEM}}>;
@group(0) @binding(2) var<storage, read_write> v: array<{{V_ELEM}}>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

const DH: u32 = {{DH}}u;
const DV: u32 = {{DV}}u;
const DH4: u32 = (DH + 3u) / 4u;
const DV4: u32 = (DV + 3u) / 4u;
const ROWS: u32 = {{ROWS}}u;
const BLOCK: u32 = 64u * ROWS;
// Below any real score; exp(MASKED - m) is 0 and MASKED - MASKED stays finite.
const MASKED: f32 = -3.0e38;

// load_q / load_k (DH wide) and load_v (DV wide): (element offset of the head's row, d4)
// -> elements 4*d4 .. 4*d4+3 of that row, zero past the head's width.
//{{LOADERS}}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    let Lq = params.lq;
    let Lk = params.lk;
    let H = params.heads;
    let qblocks = params.qblocks;
    let scale = params.scale;
    let g = flat_workgroup(wid, nwg);
    if (g >= params.workgroups) {
        return;
    }
    let block = (g % qblocks) * BLOCK;
    let i0 = block + lx * ROWS;
    let b = g / qblocks / H;
    let h = g / qblocks % H;
    let k_base = b * Lk * H * DH + h * DH;
    let v_base = b * Lk * H * DV + h * DV;
    // seen0: keys visible to row i0 (row i0 + r sees r more); span: keys the workgroup visits.
    var seen0 = Lk;
    var span = Lk;
    if (params.causal != 0u) {
        seen0 = max(i0 + Lk + 1u, Lq) - Lq;
        span = min(Lk, max(min(block + BLOCK, Lq) + Lk, Lq) - Lq);
    }

    var qr: array<vec4<f32>, ROWS * DH4>;
    for (var r = 0u; r < ROWS; r = r + 1u) {
        let at = (b * Lq + min(i0 + r, Lq - 1u)) * H * DH + h * DH;
        for (var d = 0u; d < DH4; d = d + 1u) {
            qr[r * DH4 + d] = load_q(at, d) * scale;
        }
    }
    var acc: array<vec4<f32>, ROWS * DV4>;
    var m: array<f32, ROWS>;
    var l: array<f32, ROWS>;
    for (var r = 0u; r < ROWS; r = r + 1u) {
        m[r] = MASKED;
    }

    let last = Lk - 1u;
    for (var j = 0u; j < span; j = j + 4u) {
        // Keys j..j+3; past the end the last key is reread and masked below.
        let k0 = k_base + j * H * DH;
        let k1 = k_base + min(j + 1u, last) * H * DH;
        let k2 = k_base + min(j + 2u, last) * H * DH;
        let k3 = k_base + min(j + 3u, last) * H * DH;
        // Initialized explicitly: Chrome (SwiftShader) does not re-zero a loop-body `var`
        // declared without initializer on every iteration.
        var s = array<vec4<f32>, ROWS>();
        for (var d = 0u; d < DH4; d = d + 1u) {
            let kd0 = load_k(k0, d);
            let kd1 = load_k(k1, d);
            let kd2 = load_k(k2, d);
            let kd3 = load_k(k3, d);
            for (var r = 0u; r < ROWS; r = r + 1u) {
                let qd = qr[r * DH4 + d];
                s[r] = s[r] + vec4<f32>(dot(qd, kd0), dot(qd, kd1), dot(qd, kd2), dot(qd, kd3));
            }
        }
        var p: array<vec4<f32>, ROWS>;
        var corr: array<f32, ROWS>;
        let keys = vec4<u32>(j, j + 1u, j + 2u, j + 3u);
        for (var r = 0u; r < ROWS; r = r + 1u) {
            let visible = keys < vec4<u32>(min(seen0 + r, Lk));
            let sr = select(vec4<f32>(MASKED), s[r], visible);
            let m_new = max(m[r], max(max(sr.x, sr.y), max(sr.z, sr.w)));
            corr[r] = exp(m[r] - m_new);
            p[r] = select(vec4<f32>(0.0), exp(sr - m_new), visible);
            l[r] = l[r] * corr[r] + (p[r].x + p[r].y) + (p[r].z + p[r].w);
            m[r] = m_new;
        }
        let v0 = v_base + j * H * DV;
        let v1 = v_base + min(j + 1u, last) * H * DV;
        let v2 = v_base + min(j + 2u, last) * H * DV;
        let v3 = v_base + min(j + 3u, last) * H * DV;
        for (var d = 0u; d < DV4; d = d + 1u) {
            let vd0 = load_v(v0, d);
            let vd1 = load_v(v1, d);
            let vd2 = load_v(v2, d);
            let vd3 = load_v(v3, d);
            for (var r = 0u; r < ROWS; r = r + 1u) {
                let pr = p[r];
                acc[r * DV4 + d] = acc[r * DV4 + d] * corr[r] + pr.x * vd0 + pr.y * vd1 + pr.z * vd2 + pr.w * vd3;
            }
        }
    }

    for (var r = 0u; r < ROWS; r = r + 1u) {
        if (i0 + r < Lq) {
            let inv = select(0.0, 1.0 / l[r], l[r] > 0.0);
            let at = (b * Lq + i0 + r) * H * DV + h * DV;
            for (var d = 0u; d < DV4; d = d + 1u) {
                let o = acc[r * DV4 + d] * inv;
                for (var c = 0u; c < 4u; c = c + 1u) {
                    if (d * 4u + c < DV) {
                        out[at + d * 4u + c] = o[c];
                    }
                }
            }
        }
    }
}
