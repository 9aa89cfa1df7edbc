// Which build of the engine a worker runs, and its CPU threads. In a cross-origin isolated
// page (COOP + COEP headers) the worker loads a threaded build (wasm atomics and shared
// memory) and starts Web Workers on the same module and memory, so the CPU backend runs on
// every core; anywhere else it loads a one-thread build and says why. Where the browser has
// relaxed SIMD, both are the relaxed-SIMD builds (pkg/relaxed/, pkg/relaxed/threads/: the
// GEMM's multiply-adds fused); elsewhere the plain ones (pkg/, pkg/threads/).

import { relaxedSimd } from './simd.js';

/** Threads the page may use at most (more rarely helps a 2-8 GB model's memory traffic). */
const MAX_THREADS = 16;

let loaded = null; // the package this worker runs, once loaded

/**
 * The engine package this worker loaded (its classes must come from the same instance as
 * the engine's), or pkg/ on one thread where none was (hub.js used on its own).
 */
export async function enginePackage() {
  if (!loaded) {
    const pkg = await import('../pkg/easel.js');
    await pkg.default();
    loaded ??= pkg;
  }
  return loaded;
}

/** Each build's path from this file, by SIMD flavour and threading (a thread worker loads the engine's). */
const BUILDS = {
  relaxed: { one: '../pkg/relaxed/easel.js', threaded: '../pkg/relaxed/threads/easel.js' },
  simd128: { one: '../pkg/easel.js', threaded: '../pkg/threads/easel.js' },
};

/** What `pkg` (a build of flavour `simd`) computes with: its GEMM's own answer for `fused`. */
function arithmetic(pkg, simd, why) {
  const fused = pkg.gemmFuses();
  const how = simd === 'relaxed' ? `relaxed SIMD, ${fused ? 'fused multiply-adds' : 'multiply-adds rounded twice (this CPU has no fused one)'}` : 'SIMD128';
  return { simd, fused, simdReason: why ? `${how}: ${why}` : how };
}

/** Imports and starts the build at `path`. */
async function importBuild(path) {
  const pkg = await import(path);
  await pkg.default();
  return pkg;
}

/**
 * Loads the engine package; resolves to { pkg, threads: { count, wanted, reason, simd,
 * fused, simdReason } }. `wanted` is the caller's thread count (null: one per core).
 * `simd`: 'auto' (the relaxed-SIMD builds where the browser has relaxed SIMD: their fused
 * multiply-adds make a UNet step 1.1-1.2x faster), 'relaxed', or 'simd128' (the plain
 * builds, to compare). A relaxed build that fails to load falls back to its plain twin.
 */
export async function loadEnginePackage(wanted, simd = 'auto') {
  if (!['auto', 'relaxed', 'simd128'].includes(simd)) throw new Error(`simd '${simd}': expected auto, relaxed or simd128`);
  const cores = Math.max(1, Math.min(MAX_THREADS, self.navigator?.hardwareConcurrency || 1));
  const want = Math.max(1, Math.min(MAX_THREADS, Number.isInteger(wanted) && wanted > 0 ? wanted : cores));
  let flavour = 'simd128';
  let why = simd === 'simd128' ? 'as asked' : null;
  if (simd !== 'simd128') {
    if (relaxedSimd().supported) flavour = 'relaxed';
    else why = 'this browser has no relaxed SIMD';
  }
  /** The build of the flavour; its plain twin (and why) where a relaxed one fails to load. */
  const load = async (kind) => {
    try {
      return await importBuild(BUILDS[flavour][kind]);
    } catch (e) {
      if (flavour === 'simd128') throw e;
      why = `the relaxed-SIMD build (${BUILDS.relaxed[kind].slice(3, -8)}) did not load: ${e?.message ?? e}`;
      flavour = 'simd128';
      return importBuild(BUILDS.simd128[kind]);
    }
  };
  const one = async (reason) => {
    const pkg = await load('one');
    loaded = pkg;
    return { pkg, threads: { count: 1, wanted: want, reason, ...arithmetic(pkg, flavour, why) } };
  };
  if (want === 1) return one(wanted ? 'one thread, as asked' : 'this device reports one core');
  if (!self.crossOriginIsolated || typeof SharedArrayBuffer !== 'function') {
    return one('one thread: the page is not cross-origin isolated (it needs the headers Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp), so wasm threads are off');
  }
  let pkg;
  try {
    pkg = await load('threaded');
  } catch (e) {
    return one(`one thread: the threaded engine (pkg/threads/) did not load: ${e?.message ?? e}`);
  }
  const [module, memory] = pkg.threadStart();
  const url = new URL('./engine-thread.js', import.meta.url);
  const started = await Promise.allSettled(
    Array.from({ length: want - 1 }, () => new Promise((ok, fail) => {
      const w = new Worker(url, { type: 'module', name: 'easel-cpu-thread' });
      w.onmessage = ({ data }) => (data === 'ready' ? ok(w) : fail(new Error(data)));
      w.onerror = (e) => fail(new Error(e.message || 'a thread worker failed to start'));
      w.postMessage({ module, memory, build: BUILDS[flavour].threaded });
    })),
  );
  const count = 1 + started.filter((s) => s.status === 'fulfilled').length;
  pkg.setThreads(count);
  const failed = started.find((s) => s.status === 'rejected');
  const reason = failed ? `${count} of ${want} threads: ${failed.reason.message}` : `${count} threads (cross-origin isolated)`;
  loaded = pkg;
  return { pkg, threads: { count, wanted: want, reason, ...arithmetic(pkg, flavour, why) } };
}
