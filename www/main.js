// The page's main thread: UI only. The engine (wasm + WebGPU) lives in worker.js so that
// nothing heavy ever runs here.

import { describeLimits } from './format.js';

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

function showAdapter(report, selfTest) {
  list.replaceChildren();
  addRow('Adapter', report.name || '(not disclosed by the browser)', 'diag-adapter');
  addRow('Vendor', report.vendor || '—', 'diag-vendor');
  addRow('Architecture', report.architecture || '—', 'diag-architecture');
  addRow('Backend', report.backend, 'diag-backend');
  addRow('Device type', report.software ? `${report.deviceType} (software renderer)` : report.deviceType, 'diag-device-type');
  addRow('shader-f16', report.shaderF16 ? 'yes' : 'no (f32 kernels)', 'diag-f16');
  for (const [name, value] of describeLimits(report.limits)) addRow(name, value);
  addRow('Features', report.features.join(', ') || 'none', 'diag-features');
  addRow(
    'GPU self-test',
    `passed: matmul ${selfTest.shape.join('×')} relative error ${selfTest.relativeError.toExponential(2)} in ${selfTest.millis.toFixed(0)} ms`,
    'diag-selftest',
  );
  if (report.software) {
    addRow('Note', 'This adapter is a software renderer: it works, but the CPU backend will be faster here.');
  }
}

function startWorker() {
  let worker;
  try {
    worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  } catch (e) {
    setStatus('error', `This browser cannot start module workers (${e.message}). Use a current Chrome, Edge, Firefox or Safari.`);
    return;
  }
  worker.onerror = (e) => {
    setStatus('error', `The engine worker failed to start: ${e.message || 'see the console'}. Was pkg/ built? Run ./scripts/run.sh`);
  };
  worker.onmessage = ({ data }) => {
    switch (data.type) {
      case 'started':
        diag.dataset.worker = 'started';
        document.getElementById('version').textContent = `engine v${data.version}`;
        setStatus('starting', 'Engine started in a worker. Opening the GPU…');
        break;
      case 'gpu-ready':
        showAdapter(data.report, data.selfTest);
        setStatus('ready', `WebGPU ready: ${data.report.name || data.report.architecture || data.report.vendor}`);
        break;
      case 'no-webgpu':
        list.replaceChildren();
        addRow('WebGPU', data.message, 'diag-no-webgpu');
        setStatus('no-webgpu', 'No WebGPU: the CPU backend will be used.');
        break;
      case 'error':
        setStatus('error', data.message);
        break;
    }
  };
  worker.postMessage({ type: 'init' });
}

startWorker();
