// The page's main thread: UI only. The engine (wasm + WebGPU) lives in a worker behind the
// JS API (easel.js), the same API other sites import, so nothing heavy ever runs here.

import { Easel } from './easel.js';
import { EmbedBridge, embedSettings, fillForm } from './embed.js';
import { describeLimits } from './format.js';
import { deleteAllCachedModels, deleteCachedModel, listCachedModels } from './loader.js';
import { Generator } from './generator.js';
import { LatentWalk } from './walk.js';
import { LoraPanel } from './lora.js';
import { VqPanel } from './vq.js';

const diag = document.getElementById('diagnostics');
const status = document.getElementById('diag-status');
const list = document.getElementById('diag-list');

function setStatus(state, text) {
  diag.dataset.state = state;
  status.textContent = text;
}

function addRow(term, value, id) {
  const dt = document.createElement('dt');
  dt.textContent = term;
  const dd = document.createElement('dd');
  dd.textContent = value;
  if (id) dd.id = id;
  list.append(dt, dd);
}

function showAdapter(report, selfTest, selfTestError) {
  addRow('Adapter', report.name || '(not disclosed by the browser)', 'diag-adapter');
  addRow('Vendor', report.vendor || '—', 'diag-vendor');
  addRow('Architecture', report.architecture || '—', 'diag-architecture');
  addRow('GPU API', report.backend, 'diag-api');
  addRow('Device type', report.software ? `${report.deviceType} (software renderer)` : report.deviceType, 'diag-device-type');
  addRow('shader-f16', report.shaderF16 ? 'yes' : 'no (f32 kernels)', 'diag-f16');
  addRow('Kernels', report.kernels === 'tiled' ? 'tiled (workgroup-memory tiles)' : 'simple (no workgroup memory)', 'diag-kernels');
  addRow('Precision', report.precision, 'diag-precision');
  // wgpu's web backend cannot request `subgroups` yet, even where the adapter lists it.
  addRow('Reductions', report.subgroups ? 'subgroups' : 'workgroup memory (no subgroups in the page yet)', 'diag-reductions');
  for (const [name, value] of describeLimits(report.limits)) addRow(name, value);
  addRow('Features', report.features.join(', ') || 'none', 'diag-features');
  addRow(
    'GPU self-test',
    selfTest
      ? `passed: matmul ${selfTest.shape.join('×')} relative error ${selfTest.relativeError.toExponential(2)} in ${selfTest.millis.toFixed(0)} ms`
      : `FAILED: ${selfTestError}`,
    'diag-selftest',
  );
}

function showEngine({ backend, report, gpuError, selfTest, selfTestError, threads, cpuPrecision }) {
  list.replaceChildren();
  diag.dataset.backend = backend.kind;
  addRow('Backend', `${backend.kind === 'gpu' ? 'GPU (WebGPU)' : 'CPU (wasm SIMD)'}: ${backend.reason}`, 'diag-backend');
  addRow('CPU threads', `${threads.count}: ${threads.reason}`, 'diag-threads');
  addRow('CPU arithmetic', threads.simdReason, 'diag-simd');
  // What the CLI needs to compute this page's bits (EASEL_CPU_ARITHMETIC=page or page-fused).
  document.getElementById('diag-simd').dataset.fused = String(threads.fused);
  addRow('CPU precision', cpuPrecision, 'diag-cpu-precision');
  if (report) showAdapter(report, selfTest, selfTestError);
  if (gpuError) addRow('WebGPU', gpuError, 'diag-no-webgpu');
  if (!report) {
    setStatus('no-webgpu', 'No WebGPU: the CPU backend will be used.');
  } else if (!selfTest) {
    setStatus('error', 'The GPU computes wrong results; the CPU backend will be used.');
  } else {
    setStatus('ready', `Engine ready on the ${backend.kind.toUpperCase()} backend`);
  }
}

const mbText = (n) => `${(n / 1e6).toFixed(1)} MB`;

function showDownload(p) {
  const bar = document.getElementById('download-progress');
  bar.max = p.bytesTotal || 1;
  bar.value = p.bytesDone;
  bar.dataset.state = 'loading';
  const eta = p.etaSeconds != null && p.bytesDone < p.bytesTotal ? `, ${Math.ceil(p.etaSeconds)} s left` : '';
  const cached = p.fromCache > 0 ? ` (${mbText(p.fromCache)} cached)` : '';
  // Known before the download starts: what the weights will hold on this backend.
  const fit = p.fit ? `; its weights need ${mbText(p.fit.bytes)} of ${p.fit.backend === 'gpu' ? 'GPU memory' : 'memory'}` : '';
  document.getElementById('download-text').textContent =
    p.stage === 'upload' ? `preparing weights ${p.shard + 1}/${p.shards.length}${fit}` : `${mbText(p.bytesDone)} / ${mbText(p.bytesTotal)}${cached}${eta}${fit}`;
}

/** The cached-models list in the diagnostics panel, with a delete button per model. */
async function refreshCache() {
  const list = document.getElementById('cached-models');
  const models = await listCachedModels().catch(() => []);
  list.replaceChildren(
    ...models.map((m) => {
      const li = document.createElement('li');
      li.textContent = `${m.base} — ${mbText(m.bytes)} in ${m.shards} shard${m.shards === 1 ? '' : 's'}`;
      const del = document.createElement('button');
      del.className = 'small';
      del.textContent = 'Delete';
      del.onclick = () => deleteCachedModel(m.base).then(refreshCache);
      li.append(del);
      return li;
    }),
  );
  if (!models.length) list.textContent = 'none';
}

function showModelReady(summary, p) {
  refreshCache();
  const bar = document.getElementById('download-progress');
  bar.max = 1;
  bar.value = 1;
  bar.dataset.state = 'ready';
  const source = p.fromCache === p.bytesTotal ? 'from the browser cache' : 'downloaded';
  document.getElementById('download-text').textContent = `${summary.name}: ${mbText(p.bytesTotal)} ${source}, on the ${summary.backend.toUpperCase()}`;
}

/**
 * The engine setting `?name=` (else `fallback`), shown by the menu #name; choosing another
 * value reloads the page with it (the engine starts once, with its settings).
 */
function engineSetting(name, fallback) {
  const value = new URLSearchParams(location.search).get(name) ?? fallback;
  const menu = document.getElementById(name);
  menu.value = value;
  menu.onchange = () => {
    const url = new URL(location.href);
    url.searchParams.set(name, menu.value);
    location.href = url.href;
  };
  return value;
}

/** Starts the engine through the JS API and wires the page's controls to it. */
async function startEngine() {
  // ?backend=gpu|cpu|auto overrides the automatic choice (also set by the Backend menu).
  const backend = engineSetting('backend', 'auto');
  // ?threads=N caps the CPU backend's threads (default: one per core, when isolated).
  const threads = Number.parseInt(new URLSearchParams(location.search).get('threads') ?? '', 10) || null;
  // ?kernels=tiled|simple forces the GPU's matmul/conv kernels (default: tiled on hardware).
  const kernels = new URLSearchParams(location.search).get('kernels') ?? 'auto';
  // ?simd=simd128 runs the CPU backend's plain build (default: relaxed SIMD where it can).
  const simd = new URLSearchParams(location.search).get('simd') ?? 'auto';
  // ?precision=fast: int8 / f16 GPU arithmetic and Winograd CPU convolutions, faster and
  // less exact (default: exact; also set by the precision menu).
  const precision = engineSetting('precision', 'exact');
  let easel;
  try {
    easel = await Easel.create({
      backend,
      threads,
      kernels,
      precision,
      simd,
      onStarted: (version) => {
        diag.dataset.worker = 'started';
        document.getElementById('version').textContent = `engine v${version}`;
        setStatus('starting', 'Engine started in a worker. Opening the GPU…');
      },
    });
  } catch (e) {
    setStatus('error', e.message);
    return;
  }
  showEngine(easel.adapter());
  const generator = new Generator(easel);
  const vqPanel = new VqPanel(easel, () => generator.size());
  const walk = new LatentWalk(generator);
  const loras = new LoraPanel(easel, generator);
  const modelPicker = document.getElementById('model');
  // ?model=URL loads that converted model at start instead of the bundled one ('none': nothing).
  const startModel = new URLSearchParams(location.search).get('model');
  if (bridge) {
    generator.report = (kind, value) => bridge[kind](value);
    bridge.onGenerate = (id, options) => {
      if (generator.running || !generator.model) {
        bridge.error({ code: 'busy', message: generator.running ? 'A generation is running: cancel it or wait.' : 'No model is ready yet: wait for easel-ready.' }, id);
        return;
      }
      fillForm(options);
      bridge.callId = id;
      // A form the engine cannot take rejects before any report: answer the call here.
      generator.start().catch((e) => bridge.callId === id && bridge.error(e, id));
    };
  }
  if (startModel && startModel !== 'none') {
    const option = new Option(`${startModel} (from the address)`, startModel, true, true);
    modelPicker.add(option, 0);
  }
  const modelReady = (info) => {
    bridge?.ready(info);
    generator.setDownloading(false);
    showModelReady(info, info.progress);
    generator.setModel(info);
    vqPanel.show(Boolean(info.defaults?.roundtrip));
    walk.setModel(info.defaults);
    loras.setModel(info);
  };
  let loadAbort = null;
  generator.onCancelDownload = () => loadAbort?.abort();
  /** Loads `model` (what Easel.load takes), showing progress; a newer load replaces it. */
  const load = async (model) => {
    const abort = (loadAbort = new AbortController());
    try {
      bridge?.checkModel(model);
      modelReady(await easel.load(model, {
        signal: abort.signal,
        onProgress: (p) => {
          showDownload(p);
          generator.setDownloading(p.stage !== 'upload');
        },
      }));
    } catch (e) {
      bridge?.error(e, null);
      generator.setDownloading(false);
      const bar = document.getElementById('download-progress');
      if (e.code === 'cancelled') {
        const still = e.details?.loaded ? ` ${e.details.loaded} is still loaded.` : '';
        document.getElementById('download-text').textContent =
          `Download stopped: ${mbText(e.details?.kept ?? 0)} of ${mbText(e.details?.total ?? 0)} kept in the browser cache; loading this model again fetches only the rest.${still}`;
        bar.dataset.state = 'cancelled';
        refreshCache();
      } else {
        document.getElementById('download-text').textContent = e.message;
        bar.dataset.state = 'error';
      }
    } finally {
      if (loadAbort === abort) loadAbort = null;
    }
  };
  const loadPicked = () => {
    // 'url' and 'hub' wait for their Load button.
    if (modelPicker.value && !['url', 'hub'].includes(modelPicker.value)) load(modelPicker.value);
  };
  // A GPU fault: the engine reopens (maybe on the CPU) and reloads the model by itself.
  easel.on('device-lost', ({ reason }) => {
    generator.engineRestarting();
    setStatus('error', `The GPU device was lost (${reason}): restarting the engine and reloading the model from the browser cache…`);
  });
  // A crash (a panic in the engine, or memory it could not get): easel.js starts a new
  // worker and reloads the model.
  easel.on('engine-crashed', ({ reason, outOfMemory }) => {
    generator.engineRestarting();
    const cause = outOfMemory ? 'ran out of memory' : 'stopped with an internal error';
    setStatus('error', `The engine ${cause} (${reason}): restarting it and reloading the model from the browser cache…`);
  });
  easel.on('engine', ({ info }) => showEngine(info));
  easel.on('model', ({ info }) => modelReady(info));
  easel.on('model-error', ({ error }) => {
    document.getElementById('download-text').textContent = error.message;
    document.getElementById('download-progress').dataset.state = 'error';
  });
  // The bundled model works offline.
  if (startModel !== 'none') loadPicked();

  modelPicker.onchange = () => {
    document.getElementById('model-url-row').hidden = modelPicker.value !== 'url';
    document.getElementById('model-hub-row').hidden = modelPicker.value !== 'hub';
    loadPicked();
  };
  document.getElementById('load-model').onclick = () => {
    const url = document.getElementById('model-url').value.trim();
    if (url) load(new URL(url, location.href).href);
  };
  document.getElementById('load-hub').onclick = () => {
    const field = (id) => document.getElementById(id).value.trim();
    const hub = { base: field('hub-base'), repo: field('hub-repo'), revision: field('hub-revision') || 'main', quant: field('hub-quant') };
    hub.preferFp16 = document.getElementById('hub-fp16').checked;
    if (hub.base && hub.repo) load({ hub });
  };
  return easel;
}

// ?embed=1 (the <easel-generator> widget): the generator only, no header or diagnostics.
const embedded = new URLSearchParams(location.search).get('embed') === '1';
if (embedded) document.body.classList.add('embedded');
// The widget's frame: its host drives it by messages (embed.js), heard from the start.
const bridge = embedded ? new EmbedBridge(embedSettings()) : null;

document.getElementById('delete-all-models').onclick = () => deleteAllCachedModels().then(refreshCache);
refreshCache();
startEngine();
