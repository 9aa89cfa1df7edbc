// Runs Easel's op benchmarks (GPU on whatever WebGPU adapter the browser gives, and the CPU
// backend) and, for the same single-op graphs, onnxruntime-web's webgpu and wasm backends.
// ONNX files come from scripts/bench/make_onnx.py (www/bench-models/). The engine loads as
// in the page (engine-pkg.js: threads when the page is cross-origin isolated), and ORT's
// wasm backend gets the same thread count, so CPU rows compare like with like.

import { loadEnginePackage } from './engine-pkg.js';
import { median } from './format.js';

const say = (text) => self.postMessage({ type: 'status', text });

// Our case -> the ONNX file with the same op and shape (ORT runs f32 only).
function onnxFile(row) {
  if (row.op === 'matmul') return `matmul_${row.shape}.onnx`;
  if (row.op === 'conv3x3') {
    const [hw, c] = row.shape.split('->')[0].split('x').slice(1);
    return `conv3x3_${hw}x${hw}x${c}.onnx`;
  }
  if (row.op === 'attention') {
    const { l, heads, d } = attentionShape(row);
    return `attention_${l}_${heads}x${d}.onnx`;
  }
  return null;
}

function feeds(ort, row) {
  const rand = (n) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);
  const t = (dims) => new ort.Tensor('float32', rand(dims.reduce((a, b) => a * b)), dims);
  if (row.op === 'matmul') {
    const [m, k] = row.shape.split('x').map(Number);
    return { X: t([m, k]) };
  }
  if (row.op === 'conv3x3') {
    const [h, , c] = row.shape.split('->')[0].split('x').map(Number);
    return { X: t([1, c, h, h]) };
  }
  const { l, heads, d } = attentionShape(row);
  return { Q: t([1, l, heads * d]), K: t([1, l, heads * d]), V: t([1, l, heads * d]) };
}

// An attention row's shape, "LxL HxD" (src/bench/suite.rs): its length, heads and head width.
function attentionShape(row) {
  const m = /^(\d+)x\d+ (\d+)x(\d+)$/.exec(row.shape);
  if (!m) throw new Error(`attention row shape '${row.shape}': expected 'LxL HxD'`);
  return { l: Number(m[1]), heads: Number(m[2]), d: Number(m[3]) };
}

const sessions = new Map();
const WARM_UP_MS = 500;

async function timeOrt(ort, row, runs) {
  const file = onnxFile(row);
  if (!file || row.storage !== 'f32') return {};
  const ep = row.backend.startsWith('gpu') ? 'webgpu' : 'wasm';
  const key = `${ep}/${file}`;
  try {
    if (!sessions.has(key)) {
      sessions.set(key, await ort.InferenceSession.create(new URL(`./bench-models/${file}`, import.meta.url).href, { executionProviders: [ep] }));
    }
    const session = sessions.get(key);
    const input = feeds(ort, row);
    // Warmed up as Easel's rows are (src/bench/mod.rs WARM_UP_MS): at least one run and
    // 0.5 s, so that both sides are timed past V8's baseline tier.
    const warmUntil = performance.now() + WARM_UP_MS;
    do await session.run(input);
    while (performance.now() < warmUntil);
    const times = [];
    for (let i = 0; i < Math.max(runs, 1); i++) {
      const start = performance.now();
      await session.run(input); // outputs come back to the CPU: includes the readback
      times.push(performance.now() - start);
    }
    return { ortMillis: median(times) };
  } catch (e) {
    return { ortError: e.message ?? String(e) };
  }
}

self.onmessage = async ({ data }) => {
  try {
    const { pkg, threads } = await loadEnginePackage(data.threads ?? null, data.simd ?? 'auto');
    say(`Opening WebGPU… (CPU threads: ${threads.count})`);
    const kernels = data.kernels || 'auto';
    const engine = await pkg.Engine.create('gpu', kernels).catch(() => pkg.Engine.create('cpu', kernels));
    const report = engine.adapterReport();
    const adapter = report ? (({ vendor, architecture, name }) => [vendor, architecture, name].filter(Boolean).join(' '))(JSON.parse(report)) : 'no WebGPU';
    let ort = null;
    if (data.ort) {
      try {
        ort = await import('../node_modules/onnxruntime-web/dist/ort.all.min.mjs');
        ort.env.wasm.numThreads = threads.count;
        ort.env.wasm.wasmPaths = new URL('../node_modules/onnxruntime-web/dist/', import.meta.url).href;
      } catch (e) {
        say(`onnxruntime-web not available (${e.message}); run scripts/bench-browser.sh once to install it`);
      }
    }
    const pending = [];
    const result = JSON.parse(
      await engine.benchOps(JSON.stringify({ runs: data.runs, filter: data.filter, gpu: data.backend !== 'cpu', cpu: data.backend !== 'gpu', compareKernels: !!data.compareKernels, comparePrecision: !!data.comparePrecision, compareTiles: !!data.compareTiles }), (json) => {
        const row = JSON.parse(json);
        say(`measured ${row.op} ${row.shape} ${row.storage} on ${row.backend}`);
        pending.push(row);
      }),
    );
    for (const row of result.rows) {
      if (ort) {
        say(`onnxruntime-web: ${row.op} ${row.shape} on ${row.backend}`);
        Object.assign(row, await timeOrt(ort, row, data.runs));
      }
      self.postMessage({ type: 'row', row });
    }
    self.postMessage({ type: 'done', result: { ...result, adapter, threads, software: report ? JSON.parse(report).software : null } });
  } catch (e) {
    self.postMessage({ type: 'error', message: e.message ?? String(e) });
  }
};
