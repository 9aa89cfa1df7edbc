// The engine's home: a module Web Worker that loads the wasm package and owns the GPU
// device. The page talks to it only through messages.

import init, { Engine, version } from '../pkg/easel.js';

let engine = null;

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

self.onmessage = ({ data }) => {
  if (data.type === 'init' && engine === null) start(data.backend ?? 'auto');
};
