// One CPU thread of the engine: the threaded build on the engine's own module and shared
// memory, waiting in the pool for the CPU backend's parallel loops (src/ops/cpu/threads.rs).
// Started by engine-pkg.js; never returns once serving.

self.onmessage = async ({ data: { module, memory } }) => {
  let pkg;
  try {
    pkg = await import('../pkg/threads/easel.js');
    await pkg.default({ module_or_path: module, memory });
  } catch (e) {
    self.postMessage(`a thread did not start: ${e?.message ?? e}`);
    return;
  }
  self.postMessage('ready');
  pkg.threadServe();
};
