// The engine's home: a module Web Worker that loads the wasm package and owns the GPU
// device. The page talks to it only through messages.

import init, { Engine, version } from '../pkg/easel.js';

let engine = null;

async function start() {
  try {
    await init();
  } catch (e) {
    self.postMessage({ type: 'error', message: `Could not load the engine (pkg/easel_bg.wasm): ${e.message}. Build it with ./scripts/run.sh` });
    return;
  }
  self.postMessage({ type: 'started', version: version() });
  try {
    engine = await Engine.create();
  } catch (e) {
    // Engine.create fails only when there is no usable WebGPU; its message says what to do.
    self.postMessage({ type: 'no-webgpu', message: e.message ?? String(e) });
    return;
  }
  const report = JSON.parse(engine.adapterReport());
  try {
    const selfTest = JSON.parse(await engine.selfTest());
    self.postMessage({ type: 'gpu-ready', report, selfTest });
  } catch (e) {
    self.postMessage({ type: 'error', message: e.message ?? String(e) });
  }
}

self.onmessage = ({ data }) => {
  if (data.type === 'init' && engine === null) start();
};
