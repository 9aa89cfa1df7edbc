// The engine's home: a module Web Worker that loads the wasm package and owns the GPU
// device. The page talks to it only through messages.

import init, { Engine, encodeApng, version } from '../pkg/easel.js';
import { loadHubModel } from './hub.js';
import { loadModel } from './loader.js';

let engine = null;
let gpu = null; // the engine's GpuHandle: usable while a generation holds the engine
let ready = null; // resolves once the engine exists
let backendPreference = 'auto';

async function start(backend) {
  backendPreference = backend;
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
  gpu = engine.gpuHandle() ?? null;
  await announceEngine();
}

/** Tells the page which backend runs and how the GPU's self-test went. */
async function announceEngine() {
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

let recovering = null; // the running recovery after a GPU device loss
let currentModel = null; // how the loaded model was opened: reopened after a device loss

/**
 * The GPU device was lost (driver reset, GPU removed or taken by another program): every
 * buffer is gone. Open a new engine (a new device, or the CPU backend if the GPU will not
 * come back) and reload the model, which now comes from Cache Storage.
 */
function recover(reason) {
  if (recovering) return recovering;
  recovering = (async () => {
    self.postMessage({ type: 'device-lost', reason });
    engine?.free();
    gpu?.free();
    engine = gpu = null;
    try {
      engine = await Engine.create(backendPreference);
    } catch {
      engine = await Engine.create('cpu');
    }
    gpu = engine.gpuHandle() ?? null;
    await announceEngine();
    if (currentModel) await loadIntoEngine(currentModel);
  })().finally(() => (recovering = null));
  return recovering;
}

/** Why the device was lost, once the browser has said so (its promise settles a moment later). */
async function deviceLoss() {
  for (let i = 0; i < 10 && gpu; i++) {
    const reason = gpu.lost();
    if (reason) return reason;
    await new Promise((r) => setTimeout(r, 20));
  }
  return null;
}

let loadAbort = null; // aborts the running download (the page's Cancel)

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
  const abort = (loadAbort = new AbortController());
  try {
    // The fit check runs on the manifest, before any shard is downloaded.
    const model = await open((p) => self.postMessage({ type: 'model-progress', progress: (last = p) }), abort.signal, (manifestText) => engine.checkModel(manifestText));
    await engine.beginModel(model.manifestText);
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
    currentModel = open;
    self.postMessage({ type: 'model-ready', summary, progress: last });
  } catch (e) {
    if (abort.signal.aborted) {
      const kept = last ? last.shards.filter((s) => s.state === 'done' || s.state === 'cached').reduce((a, s) => a + s.size, 0) : 0;
      self.postMessage({ type: 'model-cancelled', kept, total: last?.bytesTotal ?? 0 });
    } else {
      self.postMessage({ type: 'model-error', message: e.message ?? String(e) });
    }
  } finally {
    loading -= 1;
    if (loadAbort === abort) loadAbort = null;
  }
}

let cancelRequested = false;
let generation = null; // the running generation, until it settles
let loading = 0; // model loads in progress

/** One generation at a time: a second request while one runs is ignored. */
function generate(request) {
  if (generation) return;
  if (recovering) {
    self.postMessage({ type: 'gen-error', message: 'The engine is restarting after a GPU fault: press Generate again when the model is ready.' });
    return;
  }
  if (loading) {
    self.postMessage({ type: 'gen-error', message: 'A model is loading: press Generate again when it is ready.' });
    return;
  }
  // Lost while idle (a driver reset between generations).
  const lost = gpu?.lost();
  if (lost) {
    self.postMessage({ type: 'gen-error', message: `The GPU device was lost (${lost}). The engine is restarting and reloading the model from the browser cache; press Generate again when it is ready.` });
    recover(lost);
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
    const lost = message === 'cancelled' ? null : await deviceLoss();
    if (lost) {
      self.postMessage({
        type: 'gen-error',
        message: `The GPU stopped working during this generation (device lost: ${lost}). The engine is restarting and reloading the model from the browser cache; press Generate again when it is ready.`,
      });
      recover(lost);
      return;
    }
    self.postMessage({ type: message === 'cancelled' ? 'gen-cancelled' : 'gen-error', message });
  }
}

/**
 * VQ round trips (encode an image to codes and back, decode an edited grid). They hold the
 * engine like a generation does, so they queue behind one and block the next.
 */
function vq(data) {
  if (generation || loading || recovering) {
    self.postMessage({ type: 'vq-error', message: 'The engine is busy: try again when the current run or load is done.' });
    return;
  }
  generation = (async () => {
    try {
      if (data.type === 'vq-encode') {
        const r = await engine.vqEncode(new Uint8Array(data.rgba), data.width, data.height);
        self.postMessage({ type: 'vq-encoded', result: r }, [r.indices.buffer, r.image.rgba.buffer]);
      } else {
        const image = await engine.vqDecode(new Uint32Array(data.indices), data.gridWidth, data.gridHeight);
        self.postMessage({ type: 'vq-decoded', image }, [image.rgba.buffer]);
      }
    } catch (e) {
      self.postMessage({ type: 'vq-error', message: e.message ?? String(e) });
    }
  })().finally(() => (generation = null));
}

// Test hook, like WebGL's loseContext: destroys the GPU device as a driver reset would.
self.simulateDeviceLoss = () => gpu?.lose();

self.onmessage = ({ data }) => {
  if (data.type === 'init' && ready === null) ready = start(data.backend ?? 'auto');
  if (data.type === 'load-model') loadIntoEngine((onProgress, signal, check) => loadModel(data.url, { onProgress, signal, check }));
  if (data.type === 'load-hub') {
    const checkConversion = (conv) => engine.checkConversion(conv);
    loadIntoEngine((onProgress, signal, check) => loadHubModel({ ...data.hub, onProgress, signal, check, checkConversion }));
  }
  if (data.type === 'generate') generate(data.request);
  if (data.type === 'vq-encode' || data.type === 'vq-decode') vq(data);
  if (data.type === 'encode-apng') {
    // A walk's frames as one animated PNG (no engine needed, only the module).
    ready?.then(() => {
      try {
        const bytes = encodeApng(data.width, data.height, new Uint8Array(data.rgba), data.delay, JSON.stringify(data.text));
        self.postMessage({ type: 'apng', bytes }, [bytes.buffer]);
      } catch (e) {
        self.postMessage({ type: 'apng-error', message: e.message ?? String(e) });
      }
    });
  }
  if (data.type === 'cancel') {
    // Cancel stops whichever runs: a download, or the generation after its current step.
    cancelRequested = true;
    loadAbort?.abort();
  }
};
