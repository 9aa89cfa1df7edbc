// Which build of the engine a worker runs, and its CPU threads. In a cross-origin isolated
// page (COOP + COEP headers) the worker loads pkg/threads/ (built with wasm atomics and
// shared memory) and starts Web Workers on the same module and memory, so the CPU backend
// runs on every core; anywhere else it loads pkg/ on one thread and says why.

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

/**
 * Loads the engine package; resolves to { pkg, threads: { count, wanted, reason } }.
 * `wanted` is the caller's thread count (null: one per core).
 */
export async function loadEnginePackage(wanted) {
  const cores = Math.max(1, Math.min(MAX_THREADS, self.navigator?.hardwareConcurrency || 1));
  const want = Math.max(1, Math.min(MAX_THREADS, Number.isInteger(wanted) && wanted > 0 ? wanted : cores));
  const one = async (reason) => {
    const pkg = await import('../pkg/easel.js');
    await pkg.default();
    loaded = pkg;
    return { pkg, threads: { count: 1, wanted: want, reason } };
  };
  if (want === 1) return one(wanted ? 'one thread, as asked' : 'this device reports one core');
  if (!self.crossOriginIsolated || typeof SharedArrayBuffer !== 'function') {
    return one('one thread: the page is not cross-origin isolated (it needs the headers Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp), so wasm threads are off');
  }
  let pkg;
  try {
    pkg = await import('../pkg/threads/easel.js');
    await pkg.default();
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
      w.postMessage({ module, memory });
    })),
  );
  const count = 1 + started.filter((s) => s.status === 'fulfilled').length;
  pkg.setThreads(count);
  const failed = started.find((s) => s.status === 'rejected');
  const reason = failed ? `${count} of ${want} threads: ${failed.reason.message}` : `${count} threads (cross-origin isolated)`;
  loaded = pkg;
  return { pkg, threads: { count, wanted: want, reason } };
}
