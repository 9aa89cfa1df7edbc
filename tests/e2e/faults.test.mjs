// Faults a visitor meets: the GPU device lost mid-generation, Cancel during a download and
// during a generation (each followed by a working Generate), a model too large for the
// backend (refused from its manifest, before any shard is fetched) and a 10,000 x 10,000
// init image. Every message is asserted word for word.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../../scripts/serve.mjs';
import { ROOT, engineWorker, launch } from './browser.mjs';

let server;
let url;
before(async () => ({ server, url } = await startServer({ root: ROOT, port: 0 })));
after(() => server?.close());

const BUNDLED = 'www/models/sd-tiny/';

async function ready(page) {
  await page.locator('#generate:not([disabled])').waitFor({ timeout: 180_000 });
}

async function fill(page, fields) {
  for (const [id, value] of Object.entries(fields)) await page.fill(`#${id}`, String(value));
}

/** Clicks Generate and waits for the canvas to leave 'running'. */
async function generate(page) {
  await page.click('#generate');
  await page.waitForFunction(() => document.getElementById('canvas').dataset.state !== 'running', null, { timeout: 180_000 });
  return page.locator('#canvas').getAttribute('data-state');
}

const stepValue = (page) => page.evaluate(() => document.getElementById('step-progress').value);

test('a GPU device lost mid-generation is reported, the engine restarts from the cache, and the next Generate works', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`${url}?backend=gpu&model=${BUNDLED}`);
    await ready(page);
    await fill(page, { prompt: '一只戴墨镜的柴犬 😎', steps: 40, width: 32, height: 32 });
    await page.click('#generate');
    await page.waitForFunction(() => document.getElementById('step-progress').value >= 1, null, { timeout: 120_000 });
    await engineWorker(page).evaluate(() => self.simulateDeviceLoss());
    await page.waitForFunction(() => document.getElementById('canvas').dataset.state === 'error', null, { timeout: 120_000 });
    assert.equal(
      await page.locator('#generate-note').textContent(),
      'The GPU stopped working during this generation (device lost: destroyed). The engine is restarting and reloading the model from the browser cache; try again when it is ready.',
    );
    // The engine comes back on a new device with the model from Cache Storage.
    await ready(page);
    assert.equal(await page.locator('#diag-status').textContent(), 'Engine ready on the GPU backend');
    assert.match(await page.locator('#download-text').textContent(), /from the browser cache, on the GPU$/);
    await fill(page, { steps: 2, width: 16, height: 16 });
    assert.equal(await generate(page), 'done');
  } finally {
    await browser.close();
  }
});

test('Cancel during a download stops it and keeps the loaded model; loading again and Generate work', async () => {
  const browser = await launch();
  try {
    const context = await browser.newContext();
    // Hold the shard so the download is still running when Cancel is pressed.
    let release;
    const held = new Promise((r) => (release = r));
    let shardRequests = 0;
    await context.route('**/sd-tiny/shard-00000.bin', async (route) => {
      shardRequests += 1;
      await held;
      await route.continue().catch(() => {});
    });
    const page = await context.newPage();
    await page.goto(`${url}?model=none&backend=cpu`);
    await page.waitForFunction(() => document.getElementById('diagnostics').dataset.backend === 'cpu', null, { timeout: 180_000 });
    await page.selectOption('#model', BUNDLED);
    await page.locator('#cancel:not([disabled])').waitFor({ timeout: 60_000 });
    await page.waitForFunction(() => document.getElementById('download-text').textContent.includes('/ 3.1 MB'), null, { timeout: 60_000 });
    // Said before any shard arrives: the CPU backend needs the stored weights plus the
    // largest tensor as f32 while it is in use (both from the manifest).
    const manifest = JSON.parse(readFileSync(join(ROOT, 'www/models/sd-tiny/manifest.json'), 'utf8'));
    const stored = manifest.tensors.reduce((a, t) => a + t.parts.reduce((b, p) => b + p.length, 0), 0);
    const widest = Math.max(...manifest.tensors.map((t) => 4 * t.shape.reduce((a, d) => a * d, 1)));
    assert.match(await page.locator('#download-text').textContent(), new RegExp(`; its weights need ${((stored + widest) / 1e6).toFixed(1).replace('.', '\\.')} MB of memory$`));
    await page.click('#cancel');
    await page.waitForFunction(() => document.getElementById('download-text').textContent.startsWith('Download stopped'), null, { timeout: 60_000 });
    assert.equal(
      await page.locator('#download-text').textContent(),
      'Download stopped: 0.0 MB of 3.1 MB kept in the browser cache; loading this model again fetches only the rest.',
    );
    assert.equal(await page.locator('#cancel').isDisabled(), true);
    assert.equal(await page.locator('#generate').isDisabled(), true, 'no model was loaded before, so none can generate');
    assert.equal(shardRequests, 1);
    release();
    await context.unroute('**/sd-tiny/shard-00000.bin');

    // Load it again: the download completes and Generate works; then Cancel a generation
    // and Generate once more.
    await page.selectOption('#model', 'url');
    await page.selectOption('#model', BUNDLED);
    await ready(page);
    await fill(page, { prompt: 'a fox', steps: 400, width: 16, height: 16 });
    await page.click('#generate');
    await page.waitForFunction(() => document.getElementById('step-progress').value >= 2, null, { timeout: 120_000 });
    await page.click('#cancel');
    await page.waitForFunction(() => document.getElementById('canvas').dataset.state === 'cancelled', null, { timeout: 120_000 });
    assert.ok((await stepValue(page)) < 400, 'stopped before the last step');
    await fill(page, { steps: 2 });
    assert.equal(await generate(page), 'done');
    assert.equal(await page.locator('#step-text').textContent().then((t) => t.startsWith('done in')), true);
  } finally {
    await browser.close();
  }
});

/** JSON with keys sorted at every level: what the engine hashes (serde_json's maps). */
const canonical = (v) =>
  Array.isArray(v)
    ? `[${v.map(canonical).join(',')}]`
    : v && typeof v === 'object'
      ? `{${Object.keys(v)
          .sort()
          .map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`)
          .join(',')}}`
      : JSON.stringify(v);

/** The bundled manifest turned into a 4 GiB f32 model: four 1 GiB tensors (shards never exist). */
function hugeManifest() {
  const m = JSON.parse(readFileSync(join(ROOT, BUNDLED, 'manifest.json'), 'utf8'));
  const SHARD = 32 << 20;
  const perTensor = 2 ** 30 / SHARD;
  m.name = 'huge-f32';
  m.files = [];
  m.shards = Array.from({ length: 4 * perTensor }, (_, i) => ({ file: `shard-${String(i).padStart(5, '0')}.bin`, size: SHARD, sha256: '0'.repeat(64) }));
  m.tensors = [0, 1, 2, 3].map((t) => ({
    name: `unet.conv_${t}.weight`,
    shape: [1024, 1 << 18],
    storage: 'f32',
    parts: Array.from({ length: perTensor }, (_, i) => ({ shard: t * perTensor + i, offset: 0, length: SHARD })),
  }));
  const { content_sha256: _, ...body } = m;
  m.content_sha256 = createHash('sha256').update(canonical(body)).digest('hex');
  return m;
}

test('a model too large for the backend is refused from its manifest before any shard is fetched', async () => {
  const browser = await launch();
  try {
    const context = await browser.newContext();
    const manifest = hugeManifest();
    let shardRequests = 0;
    await context.route('**/huge/manifest.json', (route) => route.fulfill({ contentType: 'application/json', body: JSON.stringify(manifest) }));
    await context.route('**/huge/shard-*', (route) => {
      shardRequests += 1;
      return route.abort();
    });
    const page = await context.newPage();
    await page.goto(`${url}?backend=cpu&model=${BUNDLED}`);
    await ready(page);
    await page.selectOption('#model', 'url');
    await page.fill('#model-url', 'huge/');
    await page.click('#load-model');
    await page.waitForFunction(() => document.getElementById('download-progress').dataset.state === 'error', null, { timeout: 60_000 });
    assert.equal(
      await page.locator('#download-text').textContent(),
      "manifest: huge-f32 is too large for the CPU backend: its weights need 5.00 GiB (4.00 GiB as stored, plus its largest tensor as f32 while in use), " +
        "more than the 3.50 GiB a web page's CPU backend can give weights (wasm32 addresses 4 GiB in all): " +
        'use a browser with WebGPU, or convert the model with --quant q8_0 (a quarter of the size)',
    );
    assert.equal(shardRequests, 0);
    // The bundled model is still loaded and generates.
    await fill(page, { steps: 2, width: 16, height: 16 });
    assert.equal(await generate(page), 'done');
  } finally {
    await browser.close();
  }
});

test('a 10,000 x 10,000 init image is resized to the request and generates', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`${url}?backend=cpu&model=${BUNDLED}`);
    await ready(page);
    const png = Buffer.from(
      await page.evaluate(async () => {
        const c = new OffscreenCanvas(10_000, 10_000);
        const g = c.getContext('2d');
        g.fillStyle = '#4a8';
        g.fillRect(0, 0, 10_000, 10_000);
        return Array.from(new Uint8Array(await (await c.convertToBlob({ type: 'image/png' })).arrayBuffer()));
      }),
    );
    await page.setInputFiles('#init-image', { name: 'huge.png', mimeType: 'image/png', buffer: png });
    await page.locator('#init-area:not([hidden])').waitFor({ timeout: 60_000 });
    await fill(page, { prompt: 'a fox', steps: 2, width: 16, height: 16, strength: 0.5 });
    assert.equal(await generate(page), 'done');
    assert.equal(await page.locator('#generate-note').textContent(), 'The init image (10000x10000) was resized to 16x16.');
  } finally {
    await browser.close();
  }
});
