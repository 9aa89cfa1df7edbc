// Benchmark page: runs bench-worker.js and renders its rows. ?auto=1 starts at once (the
// headless runner uses it); the finished text is left in window.benchText. ?threads=N caps
// the CPU threads (Easel's and ORT's alike), ?simd=simd128 runs Easel's plain builds instead
// of the relaxed-SIMD ones, ?kernels=tiled|simple forces the GPU kernels,
// ?compare=1 times both kernel sets side by side; ?tiles=compare the tiled rows in 64-row
// tiles and in the tiles each case's M calls for; ?backend=cpu|gpu times one backend's rows.

const params = new URLSearchParams(location.search);
const body = document.querySelector('#results tbody');
const status = document.getElementById('status');
const rows = [];

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

const fmt = (x, d = 2) => (x == null ? '-' : x.toFixed(d));

function render() {
  body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement('tr');
    const ratio = r.millis && r.ortMillis ? r.ortMillis / r.millis : null;
    tr.append(
      cell(r.op), cell(r.shape), cell(r.storage), cell(r.backend),
      cell(r.millis == null ? `error: ${r.error}` : fmt(r.millis, 1)), cell(fmt(r.gflops)), cell(fmt(r.gbps)),
      cell(r.ortMillis == null ? (r.ortError ? `error: ${r.ortError}` : '-') : fmt(r.ortMillis, 1)),
      cell(ratio == null ? '-' : `${ratio.toFixed(2)}x`),
      cell(r.relative_error == null ? '-' : r.relative_error.toExponential(1)),
    );
    body.append(tr);
  }
}

function asText(result) {
  const lines = [`${'op'.padEnd(10)} ${'shape'.padEnd(24)} ${'type'.padEnd(6)} ${'on'.padEnd(16)} ${'ms'.padStart(9)} ${'GFLOP/s'.padStart(8)} ${'ORT ms'.padStart(9)} ${'ORT GF/s'.padStart(8)} ${'speedup'.padStart(8)} ${'error'.padStart(8)}`];
  for (const r of rows) {
    const ortGf = r.ortMillis ? (r.gflops * r.millis) / r.ortMillis : null;
    const ratio = r.millis && r.ortMillis ? `${(r.ortMillis / r.millis).toFixed(2)}x` : '-';
    lines.push(
      `${r.op.padEnd(10)} ${r.shape.padEnd(24)} ${r.storage.padEnd(6)} ${r.backend.padEnd(16)} ${(r.millis == null ? 'error' : fmt(r.millis, 1)).padStart(9)} ${fmt(r.gflops).padStart(8)} ${(r.ortMillis == null ? '-' : fmt(r.ortMillis, 1)).padStart(9)} ${(ortGf == null ? '-' : fmt(ortGf)).padStart(8)} ${ratio.padStart(8)} ${(r.relative_error == null ? '-' : r.relative_error.toExponential(1)).padStart(8)}` +
        (r.error ? `  (${r.error})` : '') + (r.ortError ? `  (ORT: ${r.ortError})` : ''),
    );
  }
  const c = result.ceilings;
  lines.push(`ceilings: best GPU matmul ${fmt(c.best_matmul_gflops)} GFLOP/s, buffer copy ${fmt(c.copy_gbps)} GB/s`);
  lines.push(`adapter: ${result.adapter}; ORT GPU rows use its webgpu EP, CPU rows its wasm EP`);
  lines.push(`CPU threads, Easel's and ORT's: ${result.threads.count} (${result.threads.reason}); Easel's CPU arithmetic: ${result.threads.simdReason}`);
  if (rows.some((r) => r.relative_error != null)) lines.push("error: a fast row's output against the exact row with the same kernels (relative L2)");
  if (result.software) lines.push('a software adapter: the tiled kernels and the fast precision are shaped for hardware GPUs and cannot show their gain here');
  return lines.join('\n');
}

function run() {
  rows.length = 0;
  render();
  document.getElementById('run').disabled = true;
  const worker = new Worker(new URL('./bench-worker.js', import.meta.url), { type: 'module' });
  worker.onerror = (e) => (status.textContent = `worker failed: ${e.message}`);
  worker.onmessage = ({ data }) => {
    if (data.type === 'status') status.textContent = data.text;
    if (data.type === 'row') {
      rows.push(data.row);
      render();
    }
    if (data.type === 'done') {
      status.textContent = 'Done.';
      window.benchText = asText(data.result);
      document.getElementById('summary').textContent = window.benchText;
      document.body.dataset.done = '1';
      document.getElementById('run').disabled = false;
    }
    if (data.type === 'error') {
      status.textContent = data.message;
      window.benchText = `error: ${data.message}`;
      document.body.dataset.done = '1';
    }
  };
  worker.postMessage({
    runs: Number(document.getElementById('runs').value),
    filter: document.getElementById('filter').value,
    ort: document.getElementById('ort').checked,
    threads: Number.parseInt(params.get('threads') ?? '', 10) || null,
    simd: params.get('simd') ?? 'auto',
    kernels: params.get('kernels') ?? 'auto',
    compareKernels: params.get('compare') === '1',
    comparePrecision: params.get('precision') === 'compare',
    compareTiles: params.get('tiles') === 'compare',
    backend: params.get('backend') ?? 'both',
  });
}

document.getElementById('run').onclick = run;
if (params.has('runs')) document.getElementById('runs').value = params.get('runs');
if (params.has('filter')) document.getElementById('filter').value = params.get('filter');
if (params.get('ort') === '0') document.getElementById('ort').checked = false;
if (params.get('auto') === '1') run();
