// Whether this browser runs WebAssembly relaxed SIMD, and whether its multiply-add fuses.
// engine-pkg.js loads the relaxed builds (pkg/relaxed/) on the first. f32x4.relaxed_madd
// rounds once where the CPU has fused multiply-add (x86-64 with FMA3, every ARM64) and
// twice elsewhere; the worker reports the engine's own answer (gemmFuses), which the tests
// hold to this one.

// (module (func (export "f") (param f32 f32 f32) (result f32)
//   (f32x4.extract_lane 0 (f32x4.relaxed_madd (f32x4.splat a) (f32x4.splat b) (f32x4.splat c)))))
const PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x08, 0x01, 0x60, 0x03, 0x7d, 0x7d, 0x7d, 0x01, 0x7d, // type: (f32 f32 f32) -> f32
  0x03, 0x02, 0x01, 0x00, // function 0 has type 0
  0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00, // export "f" = function 0
  0x0a, 0x16, 0x01, 0x14, 0x00, // code: one body of 20 bytes, no locals
  0x20, 0x00, 0xfd, 0x13, 0x20, 0x01, 0xfd, 0x13, 0x20, 0x02, 0xfd, 0x13, // splat a, b, c
  0xfd, 0x85, 0x02, // f32x4.relaxed_madd
  0xfd, 0x1f, 0x00, // f32x4.extract_lane 0
  0x0b, // end
]);

let known = null;

/**
 * { supported, fused }: relaxed SIMD validates, and its multiply-add rounds once (null
 * where unsupported). (1 + 2^-23)^2 - (1 + 2^-22) is 2^-46 rounded once and 0 rounded twice.
 */
export function relaxedSimd() {
  if (known) return known;
  let supported = false;
  let fused = null;
  try {
    supported = WebAssembly.validate(PROBE);
    if (supported) {
      const { f } = new WebAssembly.Instance(new WebAssembly.Module(PROBE)).exports;
      fused = f(1 + 2 ** -23, 1 + 2 ** -23, -(1 + 2 ** -22)) !== 0;
    }
  } catch {
    supported = false;
  }
  known = { supported, fused };
  return known;
}
