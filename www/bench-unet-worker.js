// Runs Engine.benchUnet in a worker and reports the figure (see bench-unet.html). The
// engine package and its CPU threads come as in the page (engine-pkg.js; ?threads=N, ?simd=).
import { loadEnginePackage } from './engine-pkg.js';

self.onmessage = async ({ data }) => {
  try {
    const { pkg, threads } = await loadEnginePackage(data.threads ?? null, data.simd ?? 'auto');
    const engine = await pkg.Engine.create(data.backend, data.kernels ?? 'auto', data.precision ?? 'exact');
    const backend = JSON.parse(engine.backend());
    self.postMessage({ status: `making random weights and running on the ${backend.kind.toUpperCase()} (${backend.reason}; CPU threads ${threads.count})…` });
    const r = JSON.parse(await engine.benchUnet(JSON.stringify(data)));
    const [what, per] = r.part === 'vae decoder' ? ['SD VAE decode', 'decode'] : ['SD-Turbo UNet step', 'step'];
    const text = `${what} in the browser: ${r.size}x${r.size} px, batch ${r.batch}, ${r.storage} weights, ${r.backend} backend (${backend.reason}), precision ${r.precision}
CPU threads: ${threads.count} (${threads.reason}); CPU arithmetic: ${threads.simdReason}
${(r.millis_per_step / 1000).toFixed(2)} s per ${per} (median of ${r.runs_millis.map((m) => (m / 1000).toFixed(2)).join(' / ')}); weights ${(r.weight_bytes / 1e6).toFixed(0)} MB, GPU activations ${(r.activation_bytes / 1e6).toFixed(1)} MB${r.profile ? `\n${r.profile}` : ''}`;
    self.postMessage({ status: 'done', result: text, millis: r.millis_per_step, runs: r.runs_millis, threads: threads.count, simd: threads.simd, precision: r.precision });
  } catch (e) {
    self.postMessage({ status: 'failed', error: e.message ?? String(e) });
  }
};
