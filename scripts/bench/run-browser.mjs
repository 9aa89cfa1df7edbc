// Opens www/bench.html in headless Chromium with SwiftShader WebGPU and prints the result.
//   node scripts/bench/run-browser.mjs [--runs N] [--filter TEXT] [--backend cpu|gpu] [--no-ort] [--threads 1,2] [--simd relaxed,simd128] [--kernels tiled|simple] [--compare-kernels] [--compare-precision] [--compare-tiles]
//   node scripts/bench/run-browser.mjs --unet [--size 256] [--quant q8_0] [--backend auto] [--threads 1,2] [--simd relaxed,simd128] [--profile] [--kernels tiled|simple]
//   node scripts/bench/run-browser.mjs --vae ...   (the same options: SD's VAE decoder, one decode per run)
//   --precision exact,fast (with --unet/--vae and --threads) times each precision in turn (fast: the CPU's Winograd convs)
//   node scripts/bench/run-browser.mjs --load [--model bench-models/sd-turbo-q8_0/] [--backend auto] [--runs 3]
// --threads runs the bench once per thread count, in turn in one browser (op bench: Easel's
// CPU backend and ORT's wasm backend at that count; UNet bench: each count's time and its
// speed-up over the first). --simd relaxed,simd128 (with --threads) runs each
// thread count on each CPU build in turn: relaxed SIMD's fused multiply-adds against the
// plain SIMD128 builds, side by side. --compare-kernels times the GPU rows with both kernel sets,
// --compare-precision in both precisions (with the fast rows' error against exact),
// --compare-tiles the tiled rows in 64-row tiles and in the tiles each case's M calls for.
// --backend cpu (or gpu) times one backend's rows only: the CPU rows against ORT's wasm
// backend without waiting on a software adapter's GPU rows.

import { startServer } from '../serve.mjs';
import { chromium } from 'playwright-core';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, ROOT, WEBGPU_FLAGS } from '../../tests/e2e/browser.mjs';
import { median } from '../../www/format.js';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const kernels = opt('--kernels', 'auto');
// The model-part bench (bench-unet.html): a UNet step, or a VAE decode.
const part = args.includes('--vae') ? 'vae' : args.includes('--unet') ? 'unet' : null;
const query = new URLSearchParams({ auto: '1', runs: opt('--runs', '1'), filter: opt('--filter', ''), backend: part ? 'both' : opt('--backend', 'both'), ort: args.includes('--no-ort') ? '0' : '1', kernels, compare: args.includes('--compare-kernels') ? '1' : '0', precision: args.includes('--compare-precision') ? 'compare' : 'exact', tiles: args.includes('--compare-tiles') ? 'compare' : 'auto' });

if (args.includes('--load')) {
  // A profile on disk, as a visitor's: an incognito context's Cache Storage quota is too
  // small for a full-size model. One download into Cache Storage, then --runs visits that
  // load from the cache.
  const profile = await mkdtemp(join(tmpdir(), 'easel-load-bench-'));
  const { server, url } = await startServer({ root: ROOT, port: 0 });
  const context = await chromium.launchPersistentContext(profile, { executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args: WEBGPU_FLAGS });
  let failed = false;
  try {
    const page = await context.newPage();
    page.on('console', (m) => m.type() === 'error' && console.error(`[page] ${m.text()}`));
    const q = new URLSearchParams({ model: opt('--model', 'bench-models/sd-turbo-q8_0/'), backend: opt('--backend', 'auto') });
    if (opt('--threads')) q.set('threads', opt('--threads'));
    const runs = Number(opt('--runs', '3'));
    const perGb = [];
    for (let i = 0; i <= runs && !failed; i++) {
      await page.goto(`${url}www/bench-load.html?${q}`);
      await page.locator('body[data-done="1"]').waitFor({ timeout: 30 * 60 * 1000 });
      console.log(await page.evaluate(() => window.benchText));
      const r = await page.evaluate(() => window.benchResult);
      failed = Boolean(r.error);
      if (r.cached) perGb.push(r.ms / 1000 / (r.bytes / 1e9));
    }
    perGb.sort((a, b) => a - b);
    if (perGb.length) console.log(`from Cache Storage to ready: ${perGb.map((x) => x.toFixed(2)).join(', ')} s per GB (median ${median(perGb).toFixed(2)}; target 2)`);
  } finally {
    await context.close();
    server.close();
    await rm(profile, { recursive: true, force: true });
  }
  process.exit(failed ? 1 : 0);
}

// The op bench's ORT rows need the ONNX graphs; without them ORT says only "failed to load
// external data file" on every row.
if (!part && query.get('ort') === '1' && !existsSync(join(ROOT, 'www/bench-models/attention_4096_8x16.onnx'))) {
  console.error('www/bench-models/ lacks the ONNX graphs that onnxruntime-web runs: make them with `python3 scripts/bench/make_onnx.py www/bench-models` (scripts/bench-browser.sh does), or pass --no-ort');
  process.exit(2);
}

const { server, url } = await startServer({ root: ROOT, port: 0 });
const browser = await launch();
try {
  const page = await browser.newPage();
  page.on('console', (m) => m.type() === 'error' && console.error(`[page] ${m.text()}`));
  if (part && opt('--threads')) {
    const counts = opt('--threads').split(',').map(Number);
    const simds = opt('--simd', 'auto').split(',');
    const precisions = opt('--precision', 'exact').split(',');
    const label = (threads, simd, precision) => `${threads} thread(s)${simds.length > 1 ? ` ${simd}` : ''}${precisions.length > 1 ? ` ${precision}` : ''}`;
    const visits = counts.flatMap((threads) => simds.flatMap((simd) => precisions.map((precision) => ({ threads, simd, precision, name: label(threads, simd, precision) }))));
    const times = [];
    const pooled = new Map(); // visit label -> every timed run of every visit
    for (const { threads, simd, precision, name } of visits) {
      const q = new URLSearchParams({ part, size: opt('--size', '256'), quant: opt('--quant', 'q8_0'), backend: opt('--backend', 'cpu'), runs: opt('--runs', '1'), threads, simd, precision, kernels, profile: args.includes('--profile') ? '1' : '0' });
      await page.goto(`${url}www/bench-unet.html?${q}`);
      await page.locator('body[data-done="1"]').waitFor({ timeout: 60 * 60 * 1000 });
      console.log(await page.evaluate(() => window.benchText));
      times.push(await page.evaluate(() => window.benchMillis));
      pooled.set(name, [...(pooled.get(name) ?? []), ...(await page.evaluate(() => window.benchRuns))]);
    }
    console.log(visits.map(({ name }, i) => `${name}: ${(times[i] / 1000).toFixed(2)} s/${part === 'vae' ? 'decode' : 'step'} (${(times[0] / times[i]).toFixed(2)}x)`).join('; '));
    // Visits alternate so that a slow spell of the machine hits every one; the median of all
    // of a visit's runs is the figure least moved by one stalled run, the fastest the one
    // least moved by the machine's slow spells (noise only ever adds time).
    const base = median(pooled.get(visits[0].name));
    console.log(`median of every run: ${[...pooled].map(([n, xs]) => `${n} ${(median(xs) / 1000).toFixed(2)} s over ${xs.length} runs (${(base / median(xs)).toFixed(2)}x)`).join('; ')}`);
    const fastest = Math.min(...pooled.get(visits[0].name));
    console.log(`fastest run: ${[...pooled].map(([n, xs]) => `${n} ${(Math.min(...xs) / 1000).toFixed(2)} s (${(fastest / Math.min(...xs)).toFixed(2)}x)`).join('; ')}`);
    process.exit(0);
  }
  if (!part && opt('--threads')) {
    for (const threads of opt('--threads').split(',').map(Number)) {
      for (const simd of opt('--simd', 'auto').split(',')) {
        query.set('threads', threads);
        query.set('simd', simd);
        await page.goto(`${url}www/bench.html?${query}`);
        await page.locator('body[data-done="1"]').waitFor({ timeout: 60 * 60 * 1000 });
        console.log(await page.evaluate(() => window.benchText));
      }
    }
    process.exit(0);
  }
  if (part) {
    const q = new URLSearchParams({ part, size: opt('--size', '256'), quant: opt('--quant', 'q8_0'), backend: opt('--backend', 'auto'), runs: opt('--runs', '1'), kernels });
    await page.goto(`${url}www/bench-unet.html?${q}`);
  } else {
    await page.goto(`${url}www/bench.html?${query}`);
  }
  let last = '';
  const timer = setInterval(async () => {
    const s = await page.locator('#status').textContent().catch(() => '');
    if (s && s !== last) console.error(`… ${(last = s)}`);
  }, 2000);
  await page.locator('body[data-done="1"]').waitFor({ timeout: 60 * 60 * 1000 });
  clearInterval(timer);
  console.log(await page.evaluate(() => window.benchText));
} finally {
  await browser.close();
  server.close();
}
