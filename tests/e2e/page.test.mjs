// End-to-end: serve the page, open it in headless Chromium, and check what a visitor sees.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../../scripts/serve.mjs';
import { ROOT, launch, artifactPath, NO_WEBGPU_FLAGS } from './browser.mjs';

let server;
let url;

before(async () => {
  assert.ok(existsSync(join(ROOT, 'pkg', 'easel_bg.wasm')), 'pkg/ is not built: run wasm-pack build --release --target web');
  ({ server, url } = await startServer({ root: ROOT, port: 0 }));
});

after(() => server?.close());

async function openSettled(page, path = '') {
  await page.goto(url + path);
  const diag = page.locator('#diagnostics');
  await diag.and(page.locator('[data-state="ready"], [data-state="error"], [data-state="no-webgpu"]')).waitFor({ timeout: 120_000 });
  return diag;
}

test('page starts the engine in a worker and shows the WebGPU adapter', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    // What a visitor's console shows on opening the page: nothing red (a missing icon was
    // a 404 on every visit).
    const consoleErrors = [];
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(`${m.text()} (${m.location().url})`));
    const diag = await openSettled(page);
    await page.screenshot({ path: await artifactPath('page-webgpu.png'), fullPage: true });

    assert.equal(await diag.getAttribute('data-worker'), 'started');
    assert.equal(await diag.getAttribute('data-state'), 'ready', await page.locator('#diag-status').textContent());
    assert.equal(await page.locator('#diag-api').textContent(), 'webgpu');
    // SwiftShader is what headless Chromium offers on a machine without a GPU.
    const arch = `${await page.locator('#diag-vendor').textContent()} ${await page.locator('#diag-architecture').textContent()}`;
    assert.match(arch, /swiftshader|google/i);
    assert.match(await page.locator('#diag-selftest').textContent(), /^passed: matmul 37×19×23 relative error \d/);
    assert.match(await page.locator('#version').textContent(), /^engine v\d+\.\d+\.\d+$/);
    // SwiftShader is a software renderer: the automatic choice is the CPU backend, and says why.
    assert.equal(await diag.getAttribute('data-backend'), 'cpu');
    assert.match(await page.locator('#diag-backend').textContent(), /^CPU .*software renderer \(swiftshader\)/);
    // A software adapter keeps the simple kernels (workgroup-memory tiles cost it 3-7x).
    assert.equal(await page.locator('#diag-kernels').textContent(), 'simple (no workgroup memory)');
    assert.deepEqual(errors, []);
    assert.deepEqual(consoleErrors, []);
  } finally {
    await browser.close();
  }
});

test('the user can force the GPU backend', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const diag = await openSettled(page, '?backend=gpu');
    assert.equal(await diag.getAttribute('data-backend'), 'gpu');
    assert.match(await page.locator('#diag-backend').textContent(), /^GPU \(WebGPU\): GPU backend requested on a software adapter/);
    assert.equal(await page.locator('#backend').inputValue(), 'gpu');
  } finally {
    await browser.close();
  }
});

test('?kernels= forces the GPU kernels, and a wrong value says what is allowed', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const diag = await openSettled(page, '?backend=gpu&kernels=tiled');
    assert.equal(await diag.getAttribute('data-state'), 'ready', await page.locator('#diag-status').textContent());
    assert.equal(await page.locator('#diag-kernels').textContent(), 'tiled (workgroup-memory tiles)');
    await page.goto(`${url}?backend=gpu&kernels=fastest`);
    await page.locator('#diagnostics[data-state="error"]').waitFor({ timeout: 120_000 });
    assert.match(await page.locator('#diag-status').textContent(), /kernels 'fastest': expected auto, tiled or simple/);
  } finally {
    await browser.close();
  }
});

test('?precision=fast turns on what the GPU can do, says so, and a wrong value says what is allowed', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    let diag = await openSettled(page, '?backend=gpu');
    assert.equal(await page.locator('#diag-precision').textContent(), 'exact');
    assert.equal(await page.locator('#diag-reductions').textContent(), 'workgroup memory (no subgroups in the page yet)');
    // The menu reloads the page with ?precision=.
    assert.equal(await page.locator('#precision').inputValue(), 'exact');
    await Promise.all([page.waitForURL(/precision=fast/), page.locator('#precision').selectOption('fast')]);
    await diag.and(page.locator('[data-state="ready"], [data-state="error"], [data-state="no-webgpu"]')).waitFor({ timeout: 120_000 });
    assert.equal(await diag.getAttribute('data-state'), 'ready', await page.locator('#diag-status').textContent());
    assert.equal(await page.locator('#precision').inputValue(), 'fast');
    // SwiftShader: int8 dot products (Chrome's WGSL has them), no shader-f16 for f16 tiles.
    assert.equal(await page.locator('#diag-precision').textContent(), 'fast (int8 dot)');
    await page.goto(`${url}?backend=gpu&precision=half`);
    await page.locator('#diagnostics[data-state="error"]').waitFor({ timeout: 120_000 });
    assert.match(await page.locator('#diag-status').textContent(), /precision 'half': expected exact or fast/);
  } finally {
    await browser.close();
  }
});

test('the engine runs in a Web Worker, not on the page thread', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(url);
    await page.locator('#diagnostics[data-worker="started"]').waitFor({ timeout: 120_000 });
    const workerUrls = page.workers().map((w) => w.url());
    assert.ok(workerUrls.some((u) => u.endsWith('/www/worker.js')), `workers: ${workerUrls}`);
    // The page's own realm never loaded the wasm glue.
    const resources = await page.evaluate(() => performance.getEntriesByType('resource').map((r) => r.name));
    assert.ok(!resources.some((r) => r.endsWith('easel_bg.wasm')), 'wasm was fetched by the page thread');
  } finally {
    await browser.close();
  }
});

test('without WebGPU the page says what to do', async () => {
  const browser = await launch(NO_WEBGPU_FLAGS);
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const diag = await openSettled(page);
    await page.screenshot({ path: await artifactPath('page-no-webgpu.png'), fullPage: true });
    assert.equal(await diag.getAttribute('data-state'), 'no-webgpu');
    assert.equal(await diag.getAttribute('data-backend'), 'cpu');
    const message = await page.locator('#diag-no-webgpu').textContent();
    assert.match(message, /WebGPU/);
    assert.match(message, /Chrome/);
    assert.match(message, /CPU backend/);
  } finally {
    await browser.close();
  }
});

/** What breaks a layout at this width: elements past their panel's right edge, panels over
 *  each other, sideways scrolling, and visible buttons whose label wrapped onto two lines. */
async function layoutFaults(page, width) {
  await page.setViewportSize({ width, height: 900 });
  return page.evaluate(() => {
    const box = (e) => e.getBoundingClientRect();
    const panels = ['.controls', '.output', '.diagnostics'].map((s) => [s, box(document.querySelector(s))]);
    // Every visible element's right edge against its panel's (1 px for rounding).
    const spills = [];
    for (const [s, p] of panels) {
      for (const e of document.querySelectorAll(`${s} *`)) {
        const r = box(e);
        if (r.width && r.right > p.right + 1) spills.push(`${s} ${e.tagName.toLowerCase()}#${e.id}: ${Math.round(r.right)} > ${Math.round(p.right)}`);
      }
    }
    const overlaps = [];
    for (let i = 0; i < panels.length; i++) {
      for (const [t, q] of panels.slice(i + 1)) {
        const [s, p] = panels[i];
        if (p.left < q.right && q.left < p.right && p.top < q.bottom && q.top < p.bottom) overlaps.push(`${s} / ${t}`);
      }
    }
    // A label on one line is one client rect of its text.
    const wrapped = [...document.querySelectorAll('button')].filter((b) => {
      if (!b.getClientRects().length) return false;
      const text = document.createRange();
      text.selectNodeContents(b);
      return text.getClientRects().length > 1;
    }).map((b) => b.textContent);
    return { spills, overlaps, wrapped, scroll: document.documentElement.scrollWidth - document.documentElement.clientWidth };
  });
}

test('on a laptop, a tablet and a phone every panel keeps its content inside it', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await openSettled(page);
    // After a Generate the progress rows hold their longest texts.
    await page.fill('#prompt', '一只戴墨镜的柴犬 😎');
    await page.click('#generate');
    await page.waitForFunction(() => document.getElementById('step-text').textContent.startsWith('done'), null, { timeout: 120_000 });
    const widths = [1400, 1200, 1024, 820, 390];
    for (const width of widths) assert.deepEqual(await layoutFaults(page, width), { spills: [], overlaps: [], wrapped: [], scroll: 0 }, `at ${width} px`);
    // The forms other models show: the VQ round trip, Hub mode's fields.
    for (const model of ['www/models/vqgan-tiny/', 'hub']) {
      await page.setViewportSize({ width: 1400, height: 900 });
      await page.selectOption('#model', model);
      if (model !== 'hub') await page.waitForFunction(() => document.getElementById('download-text').textContent.startsWith('vqgan'), null, { timeout: 120_000 });
      for (const width of widths) assert.deepEqual(await layoutFaults(page, width), { spills: [], overlaps: [], wrapped: [], scroll: 0 }, `${model} at ${width} px`);
    }
  } finally {
    await browser.close();
  }
});
