// Where the page's CPU backend spends its time, per wasm function: runs the engine's own
// wasm build (pkg/, one thread, as a page that is not cross-origin isolated runs it) in
// Node under V8's sampling profiler and prints each function's share of the samples (self
// time). The browser bench says how long an op or a UNet step takes; this says which
// function inside it (the GEMM's micro-kernel, packing, dequantization, im2col...) does.
//
//   scripts/build.sh                       # builds pkg/ (once)
//   node scripts/bench/profile-wasm.mjs [--filter 4x4] [--runs 9] [--top 25]
//   node scripts/bench/profile-wasm.mjs --unet [--size 256] [--quant q8_0] [--runs 1]
//   node scripts/bench/profile-wasm.mjs --vae [--size 512] [--quant q8_0] [--runs 1]   (SD's VAE decoder)
//   ... --out profile.cpuprofile           # also save the profile (Chrome DevTools opens it)
//
// --filter picks op bench cases as `easel bench ops --filter` does (whole numbers); every
// CPU row is printed as it is measured. --unet times SD-Turbo's UNet step on random weights
// (0.9 GB at q8_0: Node gives wasm its 4 GiB). The samples include setting the case up
// (making and quantizing its weights): read the shares of the kernels against each other.
// V8 in Node is Chrome's engine, with the same SIMD128 code, but a share here is not a
// figure for a visitor's browser: use scripts/bench/run-browser.mjs for those.
import { readFile, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const pkgDir = join(root, 'pkg');

let wasm;
try {
  wasm = await readFile(join(pkgDir, 'easel_bg.wasm'));
} catch {
  console.error(`no engine build in ${pkgDir}: run scripts/build.sh first`);
  process.exit(1);
}
const { initSync, Engine } = await import(join(pkgDir, 'easel.js'));
initSync({ module: wasm });
const engine = await Engine.create('cpu');

const session = new Session();
session.connect();
await session.post('Profiler.enable');
// 200 µs between samples: a few thousand per second, enough to tell kernels apart.
await session.post('Profiler.setSamplingInterval', { interval: 200 });
await session.post('Profiler.start');
const part = args.includes('--vae') ? 'vae' : args.includes('--unet') ? 'unet' : null;
const runs = Number(opt('--runs', part ? '1' : '9'));
if (part) {
  const options = { part, size: Number(opt('--size', part === 'vae' ? '512' : '256')), quant: opt('--quant', 'q8_0'), runs };
  const r = JSON.parse(await engine.benchUnet(JSON.stringify(options)));
  console.log(`${part === 'vae' ? 'VAE decode' : 'UNet step'} ${r.size}x${r.size} px, ${r.storage}: ${(r.millis_per_step / 1000).toFixed(2)} s (median of ${r.runs_millis.map((m) => (m / 1000).toFixed(2)).join(' / ')})`);
} else {
  const options = { runs, gpu: false, cpu: true, filter: opt('--filter', '') };
  await engine.benchOps(JSON.stringify(options), (row) => {
    const r = JSON.parse(row);
    console.log(`${r.op.padEnd(10)} ${r.shape.padEnd(24)} ${r.storage.padEnd(5)} ${r.millis.toFixed(1).padStart(8)} ms ${r.gflops.toFixed(2).padStart(7)} GFLOP/s`);
  });
}
const { profile } = await session.post('Profiler.stop');
session.disconnect();
if (opt('--out')) await writeFile(opt('--out'), JSON.stringify(profile));

// Self time: each sample counts for the function on top of the stack, with the time
// until the next sample.
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
let total = 0;
profile.samples.forEach((id, i) => {
  const name = byId.get(id).callFrame.functionName || '(anonymous)';
  const dt = profile.timeDeltas[i] ?? 0;
  self.set(name, (self.get(name) ?? 0) + dt);
  total += dt;
});
// Rust symbols end in a hash (::h0123...): it says nothing to a reader.
const readable = (name) => name.replace(/::h[0-9a-f]{16}$/, '');
console.log(`\nself time by function, ${(total / 1e6).toFixed(1)} s sampled (setup included)`);
console.log('share        ms  function');
for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(opt('--top', '25')))) {
  console.log(`${((100 * us) / total).toFixed(1).padStart(5)}% ${(us / 1000).toFixed(0).padStart(8)}  ${readable(name).slice(0, 120)}`);
}
