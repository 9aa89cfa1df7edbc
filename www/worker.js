// The engine's home: a module Web Worker that loads the wasm package and owns the GPU
// device. It answers the requests of the JS API (easel.js) in protocol.js's terms only.

import { loadEnginePackage } from './engine-pkg.js';
import { loadHubModel } from './hub.js';
import { CHECKSUM_HEADER, checksumHex } from './checksum.js';
import { SHARD_READERS, cacheEntry, loadModel } from './loader.js';
import { EVENT, EaselError, OP, crashError, outOfMemoryReason } from './protocol.js';

let engine = null;
let gpu = null; // the engine's GpuHandle: usable while a generation holds the engine
let ready = null; // settles once the engine exists (or could not be made)
let backendPreference = 'auto';
let kernelChoice = 'auto';
let precisionChoice = 'exact';
// The engine package (pkg/ or the threaded pkg/threads/) and its CPU threads, once loaded.
let Engine, encodeApng, encodeGif, version, lastPanic, lastAllocFailure, testFault;
let threads = null;
let crash = null; // the EaselError every request gets once the engine has crashed

const progress = (id, p) => self.postMessage({ id, reply: 'progress', progress: p });
const done = (id, result, transfer = []) => self.postMessage({ id, reply: 'done', result }, transfer);
const fail = (id, e) => self.postMessage({ id, reply: 'error', error: asEaselError(e).toJSON() });
const event = (name, fields) => self.postMessage({ reply: 'event', event: name, ...fields });
const messageOf = (e) => e?.message ?? String(e);

/**
 * A wasm trap: a Rust panic (the build aborts on panic), memory the engine could not get
 * (Rust aborts without a panic there), or worse. The module's state is unknown now, so
 * this worker is done: say why once, and easel.js starts a new one.
 */
function crashed(e) {
  if (!crash) {
    let reason = null;
    let outOfMemory;
    try {
      reason = lastPanic?.() ?? null;
      if (reason === null) {
        outOfMemory = lastAllocFailure?.();
        if (outOfMemory) reason = outOfMemoryReason(outOfMemory);
      }
    } catch {
      // The module cannot even say; the trap's own words will do.
    }
    reason ??= `${e.name}: ${e.message}`;
    crash = crashError(reason, outOfMemory);
    event(EVENT.crashed, { reason, outOfMemory });
  }
  return crash;
}

/** Any thrown value as an EaselError; engine errors without a code get `fallback`. */
function asEaselError(e, fallback = 'generation-failed') {
  if (e instanceof EaselError) return e;
  if (e instanceof WebAssembly.RuntimeError) return crashed(e);
  if (e?.name === 'AbortError') return new EaselError('cancelled', 'cancelled');
  const message = messageOf(e);
  if (message === 'cancelled') return new EaselError('cancelled', 'cancelled');
  // The engine's sentences for a model past this device's memory or limits.
  if (/ran out of memory|does not fit|exceeds|too large/i.test(message)) return new EaselError('too-large', message);
  return new EaselError(fallback, message);
}

/** Opens the engine; the reply is the engine's description (see `describeEngine`). */
async function start(id, backend, wantedThreads, kernels, precision, simd) {
  backendPreference = backend;
  kernelChoice = kernels;
  precisionChoice = precision;
  try {
    let pkg;
    ({ pkg, threads } = await loadEnginePackage(wantedThreads, simd));
    ({ Engine, encodeApng, encodeGif, version, lastPanic, lastAllocFailure, testFault } = pkg);
  } catch (e) {
    throw new EaselError('engine-load-failed', `Could not load the engine (pkg/easel_bg.wasm): ${messageOf(e)}. Build it with scripts/run.sh`);
  }
  event(EVENT.started, { version: version() });
  // A wrong value is the caller's mistake, not a missing GPU: say so before opening one.
  if (!['auto', 'tiled', 'simple'].includes(kernels)) throw new EaselError('engine-load-failed', `kernels '${kernels}': expected auto, tiled or simple`);
  if (!['exact', 'fast'].includes(precision)) throw new EaselError('engine-load-failed', `precision '${precision}': expected exact or fast`);
  try {
    engine = await Engine.create(backend, kernels, precision);
  } catch (e) {
    throw new EaselError(backend === 'gpu' ? 'no-webgpu' : 'engine-load-failed', messageOf(e));
  }
  gpu = engine.gpuHandle() ?? null;
  return describeEngine();
}

/** Which backend runs, the adapter, and how the GPU's self-test went. */
async function describeEngine() {
  const report = engine.adapterReport();
  let selfTest = null;
  let selfTestError = null;
  if (report) {
    try {
      selfTest = JSON.parse(await engine.selfTest());
    } catch (e) {
      selfTestError = messageOf(e);
    }
  }
  return {
    version: version(),
    backend: JSON.parse(engine.backend()),
    report: report ? JSON.parse(report) : null,
    gpuError: engine.gpuError() ?? null,
    selfTest,
    selfTestError,
    threads,
    cpuPrecision: engine.cpuPrecision(),
  };
}

let recovering = null; // the running recovery after a GPU device loss
let currentModel = null; // how the loaded model was opened: reopened after a device loss
let appliedLoras = []; // [{ name, file, bytes, scale }] on the loaded model: applied again after a device loss

/**
 * The GPU device was lost (driver reset, GPU removed or taken by another program): every
 * buffer is gone. Open a new engine (a new device, or the CPU backend if the GPU will not
 * come back) and reload the model, which now comes from Cache Storage.
 */
function recover(reason) {
  if (recovering) return recovering;
  recovering = (async () => {
    event(EVENT.deviceLost, { reason });
    engine?.free();
    gpu?.free();
    engine = gpu = null;
    try {
      engine = await Engine.create(backendPreference, kernelChoice, precisionChoice);
    } catch {
      engine = await Engine.create('cpu', undefined, precisionChoice);
    }
    gpu = engine.gpuHandle() ?? null;
    event(EVENT.engine, { info: await describeEngine() });
    if (currentModel) {
      try {
        const loras = appliedLoras;
        const info = await loadIntoEngine(currentModel, () => {}, new AbortController().signal);
        for (const l of loras) info.loras = JSON.parse(await engine.addLora(l.file, l.bytes, l.scale));
        appliedLoras = loras;
        event(EVENT.model, { info });
      } catch (e) {
        event(EVENT.modelError, { error: asEaselError(e, 'model-corrupt').toJSON() });
      }
    }
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

const aborts = new Map(); // request id -> AbortController of a running download
const cancelled = new Set(); // ids of generations asked to stop
let generation = null; // the running generation or VQ call, until it settles
let generationId = null;
let loading = 0; // model loads in progress
let modelLoaded = false;
let loadedName = null;

/**
 * Shards read back from the cache ahead of the engine (each up to 32 MiB held meanwhile):
 * one more than there are reader workers, so none of them idles.
 */
const READ_AHEAD = SHARD_READERS + 1;

/**
 * Gets a model with `open(onProgress, signal, check)` (download, Hub-mode conversion, or the
 * cache) and hands it to the engine shard by shard. Resolves to the model's description.
 */
async function loadIntoEngine(open, onProgress, signal) {
  let last = null;
  // The fit check runs on the manifest, before any shard is downloaded; what the weights
  // will take on the backend rides along with every progress report from then on.
  let fit;
  const check = (manifestText) => {
    fit = JSON.parse(engine.checkModel(manifestText));
  };
  // Where the time goes (ms): getting the model (a download, or finding it in the cache),
  // waiting for shards read back (Cache Storage + checksum), handing them to the engine,
  // building the generator.
  const timing = { openMs: 0, readMs: 0, ingestMs: 0, finishMs: 0 };
  let t = performance.now();
  const lap = (key) => {
    const now = performance.now();
    timing[key] += now - t;
    t = now;
  };
  const model = await open((p) => onProgress((last = fit ? { ...p, fit } : p)), signal, check);
  lap('openMs');
  modelLoaded = false;
  try {
    await engine.beginModel(model.manifestText);
    lap('ingestMs');
    // Shards are read back and verified (Cache Storage and the checksum: both off this
    // thread) READ_AHEAD at a time while the engine takes the one before them; the engine
    // only checks their size, as the loader has just checked their bytes.
    const shards = model.manifest.shards;
    const reads = [];
    const read = (i) => {
      reads[i] = model.shard(i);
      reads[i].catch(() => {}); // awaited below, in order; no unhandled rejection meanwhile
    };
    for (let i = 0; i < Math.min(READ_AHEAD, shards.length); i++) read(i);
    for (let i = 0; i < shards.length; i++) {
      const bytes = await reads[i];
      reads[i] = null;
      if (i + READ_AHEAD < shards.length) read(i + READ_AHEAD);
      lap('readMs');
      engine.addVerifiedShard(i, bytes);
      lap('ingestMs');
      onProgress({ ...last, stage: 'upload', shard: i, shards });
    }
    for (let i = 0; i < (model.manifest.files ?? []).length; i++) {
      const { path, bytes } = await model.file(i);
      lap('readMs');
      engine.addFile(path, bytes);
      lap('ingestMs');
    }
  } catch (e) {
    throw e instanceof EaselError ? e : asEaselError(e, 'model-corrupt');
  }
  const summary = JSON.parse(engine.finishModel());
  try {
    summary.defaults = JSON.parse(engine.modelDefaults());
  } catch (e) {
    summary.generatorError = messageOf(e);
  }
  lap('finishMs');
  summary.timing = timing;
  summary.progress = last;
  summary.loras = [];
  appliedLoras = [];
  currentModel = open;
  modelLoaded = true;
  loadedName = summary.name;
  return summary;
}

async function load(id, source) {
  await ready;
  if (!engine) throw new EaselError('engine-load-failed', 'The engine did not start.');
  // The engine does one thing at a time: a new model stops the running generation first.
  if (generation) {
    cancelled.add(generationId);
    await generation;
  }
  loading += 1;
  const abort = new AbortController();
  aborts.set(id, abort);
  let last = null;
  const onProgress = (p) => progress(id, (last = p));
  const fetchModel = source.hub
    ? (onP, signal, check) => loadHubModel({ ...source.hub, onProgress: onP, signal, check, checkConversion: (conv) => engine.checkConversion(conv) })
    : (onP, signal, check) => loadModel(source.url, { onProgress: onP, signal, check });
  // One download per model across this origin's pages and widgets: a second tab or widget
  // waits for the first, then finds every shard in Cache Storage.
  const open = (onP, signal, check) => withLock(`easel-model ${JSON.stringify(source)}`, signal, () => fetchModel(onP, signal, check));
  try {
    return await loadIntoEngine(open, onProgress, abort.signal);
  } catch (e) {
    const loaded = modelLoaded ? loadedName : null;
    if (abort.signal.aborted) {
      const kept = last ? last.shards.filter((s) => s.state === 'done' || s.state === 'cached').reduce((a, s) => a + s.size, 0) : 0;
      throw new EaselError('cancelled', 'The download was cancelled; the shards already verified stay in the browser cache.', { kept, total: last?.bytesTotal ?? 0, loaded });
    }
    const error = asEaselError(e, 'model-corrupt');
    error.details = { ...error.details, loaded };
    throw error;
  } finally {
    loading -= 1;
    aborts.delete(id);
  }
}

/** Runs `f` holding the Web Lock `name` (where the browser has Web Locks). */
function withLock(name, signal, f) {
  if (!navigator.locks?.request) return f();
  return navigator.locks.request(name, { signal }, f);
}

/** Why the engine cannot take a generation or VQ call now, or null. */
function busyReason() {
  if (recovering) return new EaselError('busy', 'The engine is restarting after a GPU fault: try again when the model is ready.');
  if (loading) return new EaselError('busy', 'A model is loading: try again when it is ready.');
  if (generation) return new EaselError('busy', 'The engine is busy with another generation: wait for it or cancel it.');
  if (!modelLoaded) return new EaselError('not-loaded', 'No model is loaded: load one first.');
  return null;
}

/** Runs `f` holding the engine (one generation or VQ call at a time). */
async function exclusive(id, f) {
  await ready;
  if (!engine) throw new EaselError('engine-load-failed', 'The engine did not start.');
  const busy = busyReason();
  if (busy) throw busy;
  // Lost while idle (a driver reset between calls).
  const lost = gpu?.lost();
  if (lost) {
    recover(lost);
    throw new EaselError('device-lost', `The GPU device was lost (${lost}). The engine is restarting and reloading the model from the browser cache; try again when it is ready.`, { reason: lost });
  }
  generationId = id;
  const run = f();
  generation = run.catch(() => {}).finally(() => {
    generation = null;
    cancelled.delete(id);
  });
  return run;
}

/** One generation; progress (with previews) goes to the API as it happens. */
function generate(id, request) {
  return exclusive(id, async () => {
    const started = performance.now();
    try {
      const result = await engine.generate(JSON.stringify(request), (p) => {
        progress(id, { ...p, millis: performance.now() - started });
        // The worker yields between steps, so a cancel message gets here in time.
        return !cancelled.has(id);
      });
      result.millis = performance.now() - started;
      return result;
    } catch (e) {
      if (e instanceof WebAssembly.RuntimeError) throw crashed(e);
      const message = messageOf(e);
      const lost = message === 'cancelled' ? null : await deviceLoss();
      if (lost) {
        recover(lost);
        throw new EaselError(
          'device-lost',
          `The GPU stopped working during this generation (device lost: ${lost}). The engine is restarting and reloading the model from the browser cache; try again when it is ready.`,
          { reason: lost },
        );
      }
      throw asEaselError(e);
    }
  });
}

const LORA_CACHE = 'easel-loras-v1';

/**
 * A LoRA's bytes from `url`: Cache Storage first, else the network. Nothing is cached here:
 * the caller caches the bytes once the engine has accepted them, so a corrupt download is
 * fetched again next time, never kept.
 */
async function loraBytes(url, signal) {
  const cache = await caches.open(LORA_CACHE);
  const hit = await cache.match(url);
  if (hit) {
    const bytes = new Uint8Array(await (await hit.blob()).arrayBuffer());
    // A copy damaged on disk is dropped and fetched again (so is one an earlier Easel kept
    // with a SHA-256 header instead: once).
    if (checksumHex(bytes) === hit.headers.get(CHECKSUM_HEADER)) return { bytes, cached: true, cache };
    await cache.delete(url);
  }
  let res;
  try {
    res = await fetch(url, { signal });
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    throw new EaselError('network', `Could not fetch the LoRA ${url}: ${messageOf(e)} (offline, or the server does not allow this origin).`);
  }
  if (!res.ok) throw new EaselError('network', `Could not fetch the LoRA ${url}: HTTP ${res.status} ${res.statusText}`);
  return { bytes: new Uint8Array(await res.arrayBuffer()), cached: false, cache };
}

/**
 * A LoRA operation's failure: the engine's refusal as 'bad-lora', unless the GPU device
 * was lost under it (then the engine restarts, and LoRAs already applied come back).
 */
async function loraError(e) {
  if (e instanceof EaselError) return e;
  const lost = await deviceLoss();
  if (lost) {
    recover(lost);
    return new EaselError('device-lost', `The GPU device was lost (${lost}). The engine is restarting and reloading the model from the browser cache; try again when it is ready.`, { reason: lost });
  }
  return new EaselError('bad-lora', messageOf(e));
}

/** Runs one LoRA operation on the engine, with its failure as `loraError` says. */
async function loraOp(id, f) {
  try {
    return await exclusive(id, async () => JSON.parse(await f()));
  } catch (e) {
    throw await loraError(e);
  }
}

/** Applies a LoRA (a URL, or a file's name and bytes) at `scale` to the loaded model. */
async function addLora(id, { url, file, bytes, scale }) {
  const abort = new AbortController();
  aborts.set(id, abort);
  try {
    const source = bytes ? { bytes: new Uint8Array(bytes), cached: false } : await loraBytes(url, abort.signal);
    const name = file ?? decodeURIComponent(new URL(url).pathname.split('/').pop() || 'lora.safetensors');
    const loras = await loraOp(id, () => engine.addLora(name, source.bytes, scale));
    // Kept once the engine has read it, with its checksum to check it by next time (as the
    // model's shards are: loader.js's cacheEntry).
    if (url && !source.cached) await source.cache.put(url, cacheEntry(source.bytes)).catch(() => {});
    appliedLoras.push({ name: loras.at(-1).name, file: name, bytes: source.bytes, scale });
    return loras;
  } finally {
    aborts.delete(id);
  }
}

async function setLoraScale(id, { name, scale }) {
  const loras = await loraOp(id, () => engine.setLoraScale(name, scale));
  for (const l of appliedLoras) if (l.name === name) l.scale = scale;
  return loras;
}

async function removeLora(id, { name }) {
  const loras = await loraOp(id, () => engine.removeLora(name));
  appliedLoras = appliedLoras.filter((l) => l.name !== name);
  return loras;
}

const transferOf = {
  [OP.generate]: (r) => [...r.images.map((i) => i.rgba.buffer), ...r.pngs.map((p) => p.buffer)],
  [OP.vqEncode]: (r) => [r.indices.buffer, r.image.rgba.buffer],
  [OP.vqDecode]: (r) => [r.rgba.buffer],
  [OP.encodeApng]: (r) => [r.buffer],
  [OP.encodeGif]: (r) => [r.buffer],
};

/** Answers one request: a result or an error, always exactly one. */
async function answer(data) {
  const { id, op } = data;
  try {
    if (crash) throw crash;
    let result;
    if (op === OP.init) {
      ready ??= start(id, data.backend ?? 'auto', data.threads ?? null, data.kernels ?? 'auto', data.precision ?? 'exact', data.simd ?? 'auto');
      result = await ready;
    } else if (op === OP.load) {
      result = await load(id, data.source);
    } else if (op === OP.generate) {
      result = await generate(id, data.request);
    } else if (op === OP.vqEncode) {
      result = await exclusive(id, () => engine.vqEncode(new Uint8Array(data.rgba), data.width, data.height));
    } else if (op === OP.vqDecode) {
      result = await exclusive(id, () => engine.vqDecode(new Uint32Array(data.indices), data.gridWidth, data.gridHeight));
    } else if (op === OP.loraAdd) {
      result = await addLora(id, data);
    } else if (op === OP.loraScale) {
      result = await setLoraScale(id, data);
    } else if (op === OP.loraRemove) {
      result = await removeLora(id, data);
    } else if (op === OP.encodeGif) {
      await ready;
      result = encodeGif(data.width, data.height, new Uint8Array(data.rgba), data.delay, data.comment ?? '');
    } else if (op === OP.encodeApng) {
      // A walk's frames as one animated PNG (no engine needed, only the module).
      await ready;
      result = encodeApng(data.width, data.height, new Uint8Array(data.rgba), data.delay, JSON.stringify(data.text));
    } else {
      throw new EaselError('generation-failed', `unknown request '${op}'`);
    }
    done(id, result, transferOf[op]?.(result) ?? []);
  } catch (e) {
    fail(id, e);
  }
}

// Test hook, like WebGL's loseContext: destroys the GPU device as a driver reset would.
self.simulateDeviceLoss = () => gpu?.lose();
// Test hook: the engine's next parallel loop panics, on its own thread ('engine') or on a
// CPU thread worker ('thread'), as a bug there would, or runs out of memory ('memory').
self.simulateEngineFault = (place) => testFault(place);

// A trap outside any request's promise: an async engine call (generate) runs its steps
// from the event loop, so its panic is reported here and its promise never settles.
self.addEventListener('error', (ev) => {
  if (!(ev.error instanceof WebAssembly.RuntimeError)) return;
  ev.preventDefault();
  crashed(ev.error);
});

self.onmessage = ({ data }) => {
  if (data.op === OP.cancel) {
    // Stops whichever the target is: a download now, a generation after its current step.
    aborts.get(data.target)?.abort();
    if (generationId === data.target && generation) cancelled.add(data.target);
    return;
  }
  answer(data);
};
