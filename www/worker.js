// The engine's home: a module Web Worker that loads the wasm package and owns the GPU
// device. The page talks to it only through messages.

import init, { Engine, version } from '../pkg/easel.js';
import { loadHubModel } from './hub.js';
import { loadModel } from './loader.js';

let engine = null;
let ready = null; // resolves once the engine exists

async function start(backend) {
  try {
    await init();
  } catch (e) {
    self.postMessage({ type: 'error', message: `Could not load the engine (pkg/easel_bg.wasm): ${e.message}. Build it with scripts/run.sh` });
    return;
  }
  self.postMessage({ type: 'started', version: version() });
  try {
    engine = await Engine.create(backend);
  } catch (e) {
    self.postMessage({ type: 'error', message: e.message ?? String(e) });
    return;
  }
  const report = engine.adapterReport();
  let selfTest = null;
  let selfTestError = null;
  if (report) {
    try {
      selfTest = JSON.parse(await engine.selfTest());
    } catch (e) {
      selfTestError = e.message ?? String(e);
    }
  }
  self.postMessage({
    type: 'engine-ready',
    backend: JSON.parse(engine.backend()),
    report: report ? JSON.parse(report) : null,
    gpuError: engine.gpuError() ?? null,
    selfTest,
    selfTestError,
  });
}

/**
 * Gets a model with `open(onProgress)` (download, Hub-mode conversion, or the cache) and
 * hands it to the engine shard by shard.
 */
async function loadIntoEngine(open) {
  await ready;
  if (!engine) return;
  // The engine does one thing at a time: a new model stops the running generation first.
  if (generation) {
    cancelRequested = true;
    await generation;
  }
  loading += 1;
  let last = null;
  try {
    const model = await open((p) => self.postMessage({ type: 'model-progress', progress: (last = p) }));
    engine.beginModel(model.manifestText);
    const shards = model.manifest.shards;
    for (let i = 0; i < shards.length; i++) {
      engine.addShard(i, await model.shard(i));
      self.postMessage({ type: 'model-progress', progress: { ...last, stage: 'upload', shard: i, shards } });
    }
    for (let i = 0; i < (model.manifest.files ?? []).length; i++) {
      const { path, bytes } = await model.file(i);
      engine.addFile(path, bytes);
    }
    const summary = JSON.parse(engine.finishModel());
    try {
      summary.defaults = JSON.parse(engine.modelDefaults());
    } catch (e) {
      summary.generatorError = e.message ?? String(e);
    }
    self.postMessage({ type: 'model-ready', summary, progress: last });
  } catch (e) {
    self.postMessage({ type: 'model-error', message: e.message ?? String(e) });
  } finally {
    loading -= 1;
  }
}

let cancelRequested = false;
let generation = null; // the running generation, until it settles
let loading = 0; // model loads in progress

/** One generation at a time: a second request while one runs is ignored. */
function generate(request) {
  if (generation) return;
  if (loading) {
    self.postMessage({ type: 'gen-error', message: 'A model is loading: press Generate again when it is ready.' });
    return;
  }
  generation = runGeneration(request).finally(() => (generation = null));
}

/** One generation; progress (with previews) goes to the page as it happens. */
async function runGeneration(request) {
  await ready;
  if (!engine) return;
  cancelRequested = false;
  const started = performance.now();
  try {
    const result = await engine.generate(JSON.stringify(request), (p) => {
      self.postMessage({ type: 'gen-progress', progress: p, millis: performance.now() - started });
      // The worker yields between steps, so a 'cancel' message gets here in time.
      return !cancelRequested;
    });
    const transfer = [...result.images.map((i) => i.rgba.buffer), ...result.pngs.map((p) => p.buffer)];
    self.postMessage({ type: 'gen-done', result, millis: performance.now() - started }, transfer);
  } catch (e) {
    const message = e.message ?? String(e);
    self.postMessage({ type: message === 'cancelled' ? 'gen-cancelled' : 'gen-error', message });
  }
}

self.onmessage = ({ data }) => {
  if (data.type === 'init' && ready === null) ready = start(data.backend ?? 'auto');
  if (data.type === 'load-model') loadIntoEngine((onProgress) => loadModel(data.url, { onProgress }));
  if (data.type === 'load-hub') loadIntoEngine((onProgress) => loadHubModel({ ...data.hub, onProgress }));
  if (data.type === 'generate') generate(data.request);
  if (data.type === 'cancel') cancelRequested = true;
};
