// LoRAs in the page: sd1-tiny (converted by the CLI) with the sd1-tiny-lora fixture added by
// URL, its scale changed with the slider, removed, and added again from a file. Each image
// equals the native CLI's `--lora FILE --lora-scale S` image; the model's shards are fetched
// once (nothing reloads), the LoRA once (then Cache Storage), and a LoRA for another model
// is refused by name with nothing applied.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { startServer } from '../../scripts/serve.mjs';
import { ROOT, pageArithmetic, launch, artifactPath, canvasPixels, engineWorker, pngPixels, maxDiff, runCli } from './browser.mjs';
import { pngText } from './png-text.mjs';
import { checksumHex } from '../../www/checksum.js';

const MODEL = '/models/sd1-tiny/';
const LORA_PATH = '/loras/pytorch_lora_weights.safetensors';
const LORA_FILE = join(ROOT, 'tests/fixtures/sd1-tiny-lora/pytorch_lora_weights.safetensors');
// A user's prompt: Chinese with an emoji.
const FORM = { prompt: '水彩画的狐狸 🦊', steps: 2, guidance: 7.5, seed: 7, size: 16 };

let modelDir;
let server;
let url;
const hits = new Map(); // path -> request count

before(async () => {
  modelDir = mkdtempSync(join(tmpdir(), 'easel-lora-'));
  runCli(['convert', join(ROOT, 'tests/fixtures/sd1-tiny'), '--out', modelDir, '--quant', 'f32', '--shard-mb', '1']);
  ({ server, url } = await startServer({
    root: ROOT,
    port: 0,
    onRequest: async (req, res, path) => {
      const file = path.startsWith(MODEL) ? join(modelDir, path.slice(MODEL.length)) : path === LORA_PATH ? LORA_FILE : null;
      if (!file) return false;
      hits.set(path, (hits.get(path) ?? 0) + 1);
      const bytes = readFileSync(file);
      res.writeHead(200, { 'Content-Length': bytes.length, 'Content-Type': 'application/octet-stream' });
      res.end(bytes);
      return true;
    },
  }));
});

after(() => server?.close());

/** The CLI's PNG for FORM with the LoRA at `scale` (none: the base model), computed with `page`'s arithmetic. */
async function cliImage(page, scale) {
  const out = await artifactPath(`lora-cli-${scale ?? 'none'}.png`);
  const lora = scale === undefined ? [] : ['--lora', LORA_FILE, '--lora-scale', String(scale)];
  runCli(['generate', '--model', 'tests/fixtures/sd1-tiny', '--prompt', FORM.prompt, '--steps', String(FORM.steps), '--guidance', String(FORM.guidance), '--seed', String(FORM.seed),
    '--width', String(FORM.size), '--height', String(FORM.size), '--backend', 'cpu', ...lora, '--out', out], await pageArithmetic(page));
  return readFileSync(out);
}

const shardHits = () => [...hits].filter(([p]) => p.startsWith(MODEL) && p.includes('shard-')).reduce((a, [, n]) => a + n, 0);

/** Generates with the form's settings; returns the canvas pixels and the PNG's text. */
async function generate(page) {
  await page.click('#generate');
  await page.locator('#canvas[data-state="done"], #canvas[data-state="error"]').waitFor({ timeout: 120_000 });
  assert.equal(await page.locator('#canvas').getAttribute('data-state'), 'done', await page.locator('#step-text').textContent());
  const href = await page.locator('#downloads a').first().getAttribute('href');
  const png = await page.evaluate(async (h) => Array.from(new Uint8Array(await (await fetch(h)).arrayBuffer())), href);
  return { pixels: await canvasPixels(page, 'canvas', FORM.size, FORM.size), text: pngText(Buffer.from(png)) };
}

/** Waits for the LoRA panel to settle; returns its note. */
async function settled(page) {
  await page.locator('#lora-panel[data-state="ready"], #lora-panel[data-state="error"]').waitFor({ timeout: 60_000 });
  return page.locator('#lora-note').textContent();
}

const cliImages = new Map(); // scale -> PNG bytes (the CLI runs once per scale)

/** The page's image against the CLI's (CPU): equal on the CPU, within a level on WebGPU. */
async function sameAsCli(page, got, scale, what, backend) {
  if (!cliImages.has(scale)) cliImages.set(scale, await cliImage(page, scale));
  const diff = maxDiff(got, await pngPixels(page, cliImages.get(scale)));
  console.log(`# ${what} [${backend}]: max |page - CLI| = ${diff} of 255`);
  assert.ok(diff <= (backend === 'cpu' ? 0 : 1), `${what}: the page's image differs from the CLI's by ${diff} levels`);
}

for (const backend of ['cpu', 'gpu']) test(`a LoRA is added by URL, rescaled with its slider, removed and added from a file, without reloading the model (${backend})`, async () => {
  hits.clear();
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${url}?backend=${backend}&model=${encodeURIComponent(`${url}models/sd1-tiny/`)}`);
    await page.locator('#generate:not([disabled])').waitFor({ timeout: 120_000 });
    assert.equal(await page.locator('#lora-panel').isVisible(), true, 'the panel shows for a Stable Diffusion model');
    await page.fill('#prompt', FORM.prompt);
    await page.fill('#negative-prompt', '');
    for (const [id, v] of [['steps', FORM.steps], ['guidance', FORM.guidance], ['seed', FORM.seed], ['width', FORM.size], ['height', FORM.size]]) await page.fill(`#${id}`, String(v));
    const shardsAtLoad = shardHits();
    assert.ok(shardsAtLoad >= 1);

    const base = await generate(page);
    await sameAsCli(page, base.pixels, undefined, 'no LoRA', backend);

    await page.fill('#lora-url', `${url}${LORA_PATH.slice(1)}`);
    await page.click('#lora-add');
    assert.match(await settled(page), /done in \d+ ms, no reload/);
    assert.deepEqual(await page.locator('#lora-list .lora-name').allTextContents(), ['pytorch_lora_weights']);
    const one = await generate(page);
    await sameAsCli(page, one.pixels, 1, 'LoRA at 1 (by URL)', backend);
    assert.ok(maxDiff(one.pixels, base.pixels) > 8, 'the LoRA changes the image');
    assert.ok(one.text.parameters.includes(`${FORM.prompt} <lora:pytorch_lora_weights:1>`), one.text.parameters);

    await page.locator('#lora-list input[type=range]').fill('0.6');
    assert.match(await settled(page), /Scale of pytorch_lora_weights to 0\.60: done/);
    const partial = await generate(page);
    await sameAsCli(page, partial.pixels, 0.6, 'LoRA at 0.6 (slider)', backend);
    assert.ok(partial.text.parameters.includes('<lora:pytorch_lora_weights:0.6>') && /Lora hashes: "pytorch_lora_weights: [0-9a-f]{12}"/.test(partial.text.parameters), partial.text.parameters);
    assert.equal(await page.locator('#lora-list output').textContent(), '0.60');

    await page.locator('#lora-list button', { hasText: 'Remove' }).click();
    await settled(page);
    assert.equal(await page.locator('#lora-list li').count(), 0);
    const back = await generate(page);
    assert.equal(maxDiff(back.pixels, base.pixels), 0, 'removing the LoRA gives the base model back exactly');
    assert.ok(!back.text.parameters.includes('<lora:'), back.text.parameters);

    await page.setInputFiles('#lora-file', LORA_FILE);
    await settled(page);
    const fromFile = await generate(page);
    assert.equal(maxDiff(fromFile.pixels, one.pixels), 0, 'the file gives the URL\'s image');
    assert.equal(shardHits(), shardsAtLoad, 'no shard was fetched again: the model never reloaded');
    assert.equal(hits.get(LORA_PATH), 1, 'the LoRA was downloaded once');
    await page.screenshot({ path: await artifactPath(`lora-panel-${backend}.png`), fullPage: true });

    if (backend === 'cpu') {
      // An internal error (a panic, here a test hook) mid-generation: easel.js starts a new
      // worker, reloads the model from the cache and applies the file's LoRA again (kept as
      // a Blob) at its slider's scale.
      await page.locator('#lora-list input[type=range]').fill('0.6');
      await settled(page);
      await engineWorker(page).evaluate(() => self.simulateEngineFault('engine'));
      await page.click('#generate');
      await page.waitForFunction(() => document.getElementById('canvas').dataset.state !== 'running', null, { timeout: 60_000 });
      assert.match(await page.locator('#generate-note').textContent(), /^The engine stopped with an internal error \(simulated fault in a parallel loop on the engine's thread \(test hook\) \(at src\/ops\/cpu\/threads\.rs:\d+\)\)\. It is restarting and reloading the model from the browser cache; try again when it is ready\.$/);
      await page.locator('#lora-list li').first().waitFor({ timeout: 120_000 });
      await page.locator('#generate:not([disabled])').waitFor({ timeout: 120_000 });
      assert.deepEqual(await page.locator('#lora-list .lora-name').allTextContents(), ['pytorch_lora_weights']);
      assert.equal(await page.locator('#lora-list output').textContent(), '0.60');
      for (const [id, v] of [['prompt', FORM.prompt], ['steps', FORM.steps], ['guidance', FORM.guidance], ['seed', FORM.seed], ['width', FORM.size], ['height', FORM.size]]) await page.fill(`#${id}`, String(v));
      const afterCrash = await generate(page);
      assert.equal(maxDiff(afterCrash.pixels, partial.pixels), 0, 'after the crash, the LoRA is applied again at 0.6');
      assert.equal(shardHits(), shardsAtLoad, 'the model came back from Cache Storage');
      await page.locator('#lora-list input[type=range]').fill('1');
      await settled(page);
    }

    if (backend === 'gpu') {
      // A GPU device lost between generations: the engine reloads the model from the cache
      // and applies the LoRA again, so the next image is still the LoRA's.
      await engineWorker(page).evaluate(() => self.simulateDeviceLoss());
      await page.click('#generate');
      await page.waitForFunction(() => document.getElementById('canvas').dataset.state !== 'running', null, { timeout: 60_000 });
      assert.match(await page.locator('#generate-note').textContent(), /GPU device was lost/);
      await page.locator('#lora-list li').first().waitFor({ timeout: 120_000 });
      await page.locator('#generate:not([disabled])').waitFor({ timeout: 120_000 });
      assert.deepEqual(await page.locator('#lora-list .lora-name').allTextContents(), ['pytorch_lora_weights']);
      for (const [id, v] of [['prompt', FORM.prompt], ['steps', FORM.steps], ['guidance', FORM.guidance], ['seed', FORM.seed], ['width', FORM.size], ['height', FORM.size]]) await page.fill(`#${id}`, String(v));
      const afterLoss = await generate(page);
      assert.equal(maxDiff(afterLoss.pixels, one.pixels), 0, 'after the device loss, the LoRA is applied again');
    }

    // The bundled sd-tiny is an SD 2 model: the LoRA (from the cache) does not fit it.
    await page.selectOption('#model', 'www/models/sd-tiny/');
    await page.waitForFunction(() => document.getElementById('download-text').textContent.startsWith('sd2-tiny:'), null, { timeout: 120_000 });
    assert.equal(await page.locator('#lora-list li').count(), 0, 'a new model starts with no LoRA');
    await page.fill('#lora-url', `${url}${LORA_PATH.slice(1)}`);
    await page.click('#lora-add');
    const refusal = await settled(page);
    assert.equal(await page.locator('#lora-panel').getAttribute('data-state'), 'error');
    assert.match(refusal, /LoRA 'pytorch_lora_weights': layer '[^']+' .*(names no weight|does not fit).*another architecture/, refusal);
    assert.equal(await page.locator('#lora-list li').count(), 0, 'nothing applied');
    assert.equal(hits.get(LORA_PATH), 1, 'the second add read Cache Storage');
    // The cached LoRA carries its XXH32; a copy damaged on disk is fetched again, not used.
    const loraUrl = `${url}${LORA_PATH.slice(1)}`;
    const stored = await page.evaluate(async (u) => {
      const cache = await caches.open('easel-loras-v1');
      const hit = await cache.match(u);
      const bytes = new Uint8Array(await hit.arrayBuffer());
      const checksum = hit.headers.get('x-easel-xxh32');
      bytes[100] ^= 1;
      await cache.put(u, new Response(bytes, { headers: hit.headers }));
      return { checksum, length: bytes.length };
    }, loraUrl);
    assert.equal(stored.length, readFileSync(LORA_FILE).length);
    assert.equal(stored.checksum, checksumHex(readFileSync(LORA_FILE)));
    await page.click('#lora-add');
    // The panel was already in its error state: wait for the request, then for the refusal.
    for (let waited = 0; hits.get(LORA_PATH) < 2 && waited < 30_000; waited += 100) await new Promise((r) => setTimeout(r, 100));
    assert.equal(hits.get(LORA_PATH), 2, 'the damaged copy was fetched again');
    await page.locator('#lora-panel[data-state="error"]').waitFor({ timeout: 60_000 });
    assert.match(await page.locator('#lora-note').textContent(), /LoRA 'pytorch_lora_weights': layer /);
    assert.equal(await page.locator('#generate').isDisabled(), false, 'Generate works after a refusal');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test('the API refuses a LoRA before a model is loaded and on a model of another family', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`${url}tests/e2e/api-harness.html`);
    const result = await page.evaluate(async ({ lora }) => {
      const { Easel } = await import('/www/easel.js');
      const easel = await Easel.create({ backend: 'cpu' });
      const codes = [];
      await easel.addLora(lora).catch((e) => codes.push(e.code));
      await easel.load('emoji-dcgan');
      await easel.addLora(lora).catch((e) => codes.push(`${e.code}: ${e.message}`));
      await easel.setLoraScale('nothing', 1).catch((e) => codes.push(e.code));
      easel.dispose();
      return codes;
    }, { lora: `${url}${LORA_PATH.slice(1)}` });
    assert.equal(result[0], 'not-loaded');
    assert.match(result[1], /^bad-lora: LoRAs apply to Stable Diffusion models; the loaded model is a dcgan/);
    assert.equal(result[2], 'bad-lora');
  } finally {
    await browser.close();
  }
});
