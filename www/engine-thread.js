// One CPU thread of the engine: the threaded build on the engine's own module and shared
// memory, waiting in the pool for the CPU backend's parallel loops (src/ops/cpu/threads.rs).
// Started by engine-pkg.js; never returns once serving.

self.onmessage = async ({ data: { module, memory, build } }) => {
  let pkg;
  try {
    // The engine's own build (its JS glue must match the module): a path from engine-pkg.js.
    pkg = await import(build);
    await pkg.default({ module_or_path: module, memory });
  } catch (e) {
    self.postMessage(`a thread did not start: ${e?.message ?? e}`);
    return;
  }
  self.postMessage('ready');
  pkg.threadServe();
};
