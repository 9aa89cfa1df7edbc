// The JS API (www/easel.js) as a program uses it: promises that resolve to images, and
// failures as EaselErrors whose `code` a program can branch on. The pure helpers
// (model strings, generate options -> engine request) are checked here in Node too.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../../scripts/serve.mjs';
import { ROOT, engineWorker, launch } from './browser.mjs';
import { EaselError, resolveModel, toRequest } from '../../www/easel.js';
import { pngText } from './png-text.mjs';

test('model strings: a URL, a Hub repository, a bundled name', () => {
  const base = 'https://easel.example/www/easel.js';
  assert.deepEqual(resolveModel('emoji-dcgan', base), { url: 'https://easel.example/www/models/emoji-dcgan/', bundled: 'emoji-dcgan' });
  assert.deepEqual(resolveModel('stabilityai/sd-turbo', base), { hub: { repo: 'stabilityai/sd-turbo' } });
  assert.deepEqual(resolveModel('https://cdn.example/m/sd-turbo-q8', base), { url: 'https://cdn.example/m/sd-turbo-q8/' });
  assert.deepEqual(resolveModel('/models/x/', base), { url: 'https://easel.example/models/x/' });
  assert.deepEqual(resolveModel('models/x/y', base), { url: 'https://easel.example/www/models/x/y/' });
  assert.throws(() => resolveModel('  ', base), (e) => e instanceof EaselError && e.code === 'unsupported-model');
});

test("generate options become the engine's request: NCHW init image in [0, 1], white mask = 1", () => {
  // A 2x1 image: a red pixel and a half-grey one; the mask repaints the second pixel only.
  const initImage = { width: 2, height: 1, data: Uint8ClampedArray.from([255, 0, 0, 255, 0, 51, 102, 255]) };
  const mask = { width: 2, height: 1, data: Uint8ClampedArray.from([0, 0, 0, 255, 255, 255, 255, 255]) };
  const r = toRequest({ prompt: '红心 ❤️', negativePrompt: 'blurry', seed: 7, width: 2, height: 1, initImage, mask, walk: { toSeed: 9, t: 0.25 } });
  assert.deepEqual(r.init_image, { shape: [1, 3, 1, 2], values: [1, 0, 0, 0.2, 0, 0.4] });
  assert.deepEqual(r.mask, { shape: [1, 1, 1, 2], values: [0, 1] });
  assert.equal(r.negative_prompt, 'blurry');
  assert.deepEqual(r.walk, { to_seed: 9, t: 0.25 });
  assert.equal(r.previews, false);
  assert.equal(toRequest({ onStep() {} }).previews, true);
  assert.throws(() => toRequest({ seed: 2 ** 53 }), (e) => e.code === 'generation-failed' && /seed/.test(e.message));
  assert.throws(() => toRequest({ seed: -1 }), (e) => e.code === 'generation-failed');
});

let server;
let url;
before(async () => {
  server = await startServer({
    root: ROOT,
    port: 0,
    // /corrupt/ is sd-tiny with one flipped byte in its first shard.
    onRequest: (req, res, path) => {
      if (!path.startsWith('/corrupt/')) return false;
      const file = path.slice('/corrupt/'.length);
      const bytes = readFileSync(join(ROOT, 'www/models/sd-tiny', file));
      if (file === 'shard-00000.bin') bytes[1000] ^= 0xff;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length });
      res.end(bytes);
      return true;
    },
  });
  url = server.url;
});
after(() => server?.server.close());

/** The API harness page, and `run(body)`: the body's value as { ok } or its EaselError's fields. */
async function openHarness(browser) {
  const page = await browser.newPage();
  await page.goto(`${url}tests/e2e/api-harness.html`);
  await page.waitForFunction(() => window.ready);
  return { page, run: (body) => page.evaluate(`attempt(async () => { ${body} })`) };
}

test('the API loads, generates, cancels and says what went wrong with a stable code', async () => {
  const browser = await launch();
  try {
    const { page, run } = await openHarness(browser);
    await page.evaluate(async () => (window.easel = await window.api.Easel.create({ backend: 'cpu' })));
    assert.deepEqual(await run(`return easel.adapter().backend.kind`), { ok: 'cpu' });

    const notLoaded = await run(`return await easel.generate({ prompt: 'red heart' })`);
    assert.equal(notLoaded.code, 'not-loaded', JSON.stringify(notLoaded));
    assert.ok(notLoaded.isEaselError);

    const missing = await run(`return await easel.load('/no/such/model/')`);
    assert.equal(missing.code, 'network', JSON.stringify(missing));
    assert.match(missing.message, /manifest\.json: HTTP 404/);
    assert.equal(missing.details.loaded, null);

    // The bundled GAN by name, with progress; a generation with the model's own size.
    const loaded = await run(`
      const seen = [];
      const info = await easel.load('emoji-dcgan', { onProgress: (p) => seen.push(p) });
      return { name: info.name, width: info.defaults.width, progress: seen.length, model: easel.model.name, fits: seen.map((p) => p.fit), backend: info.backend, bytes: info.bytes };`);
    assert.equal(loaded.ok.name, 'emoji-dcgan');
    assert.equal(loaded.ok.model, 'emoji-dcgan');
    assert.ok(loaded.ok.progress > 0);
    // Every report, the first included, carries the fit checked before the download: the
    // bytes the loaded model holds on its backend, and on the CPU its largest tensor as f32
    // while in use (from the manifest).
    const manifest = JSON.parse(readFileSync(new URL('../../www/models/emoji-dcgan/manifest.json', import.meta.url), 'utf8'));
    const widest = Math.max(...manifest.tensors.map((t) => 4 * t.shape.reduce((a, d) => a * d, 1)));
    const need = loaded.ok.bytes + (loaded.ok.backend === 'cpu' ? widest : 0);
    for (const fit of loaded.ok.fits) assert.deepEqual(fit, { bytes: need, backend: loaded.ok.backend });
    const made = await run(`
      const r = await easel.generate({ prompt: 'red heart', seed: 42 });
      const png = Array.from(new Uint8Array(await r.images[0].blob.arrayBuffer()));
      return { width: r.images[0].imageData.width, seed: r.images[0].seed, png, ms: r.timings.totalMs, note: r.note };`);
    assert.equal(made.ok.width, 32);
    assert.equal(made.ok.seed, 42);
    assert.ok(made.ok.ms > 0);
    assert.match(made.ok.note, /red heart/);
    assert.equal(pngText(Buffer.from(made.ok.png)).prompt, 'red heart');

    // A multi-step model: a second call while one runs is 'busy'; an abort is 'cancelled'.
    const tiny = (await run(`return (await easel.load('sd-tiny')).name`)).ok; // its manifest's name
    // The decode's progress event carries its work in UNet steps: the CLI's figure for the
    // same model and settings ("decoding (about 0 s: 0.9 steps' work)", cli_native).
    const works = await run(`const works = []; await easel.generate({ prompt: 'a fox', steps: 2, onStep: (p) => p.stage === 'decode' && works.push(p.work) }); return works;`);
    assert.equal(works.ok?.length, 1, JSON.stringify(works));
    assert.equal(works.ok[0].toFixed(1), '0.9');
    const raced = await run(`
      const abort = new AbortController();
      const first = easel.generate({ prompt: 'a lighthouse', steps: 40, signal: abort.signal, onStep: (p) => p.stage === 'step' && p.step === 2 && abort.abort() });
      const second = await attempt(() => easel.generate({ prompt: 'a boat' }));
      const firstOutcome = await attempt(() => first);
      return { second: second.code, first: firstOutcome.code };`);
    assert.deepEqual(raced.ok, { second: 'busy', first: 'cancelled' });

    // A corrupt shard: refused as model-corrupt, and sd-tiny stays loaded and generates.
    const corrupt = await run(`return await easel.load('${url}corrupt/')`);
    assert.equal(corrupt.code, 'model-corrupt', JSON.stringify(corrupt));
    assert.equal(corrupt.details.loaded, tiny);
    const after = await run(`const r = await easel.generate({ prompt: 'a boat', steps: 2 }); return [r.images.length, easel.model.name]`);
    assert.deepEqual(after.ok, [1, tiny]);

    // The cache lists what was downloaded and forgets a model on request.
    const cache = await run(`
      const before = (await easel.cache.list()).map((m) => m.base);
      await easel.cache.delete('emoji-dcgan');
      return { before, after: (await easel.cache.list()).map((m) => m.base) };`);
    assert.ok(cache.ok.before.some((b) => b.endsWith('/www/models/emoji-dcgan/')), JSON.stringify(cache));
    assert.ok(!cache.ok.after.some((b) => b.endsWith('/www/models/emoji-dcgan/')));

    const disposed = await run(`easel.dispose(); return await easel.generate({ prompt: 'x' })`);
    assert.equal(disposed.code, 'disposed');

    const noGpu = await page.evaluate(() => window.attempt(() => window.api.Easel.create({ backend: 'gpu' })));
    // SwiftShader is a WebGPU adapter: 'gpu' opens it; the code path for none is the page test's.
    assert.ok(noGpu.ok || noGpu.code === 'no-webgpu', JSON.stringify(noGpu));
  } finally {
    await browser.close();
  }
});

/**
 * A fault (the worker's test hook at `place`) in a CPU Easel with sd-tiny loaded: the call it
 * happens in fails with engine-crashed (`check` asserts its words), calls meanwhile are busy,
 * the events come in order, and the new engine draws the image drawn before the fault.
 */
async function faultAndRestart(place, check) {
  const browser = await launch();
  try {
    const { page, run } = await openHarness(browser);
    const generate = `
      const r = await easel.generate({ prompt: '灯塔 🗼', steps: 2, seed: 3 });
      return { name: easel.model.name, kind: easel.adapter().backend.kind, pixels: Array.from(r.images[0].imageData.data) };`;
    const first = await run(`
      window.easel = await api.Easel.create({ backend: 'cpu' });
      window.events = [];
      for (const name of ['engine-crashed', 'engine', 'model', 'model-error']) easel.on(name, (e) => events.push([name, e]));
      await easel.load('sd-tiny');
      ${generate}`);
    assert.ok(first.ok, JSON.stringify(first));
    await engineWorker(page).evaluate((p) => self.simulateEngineFault(p), place);
    const crashed = await run(`return await easel.generate({ prompt: '灯塔 🗼', steps: 2, seed: 3 })`);
    assert.equal(crashed.code, 'engine-crashed', JSON.stringify(crashed));
    check(crashed);
    const meanwhile = await run(`return await easel.generate({ prompt: 'x' })`);
    assert.equal(meanwhile.code, 'busy');
    assert.equal(meanwhile.message, 'The engine is restarting after a crash: try again when the model is ready.');
    await page.waitForFunction(() => window.events.length >= 3, null, { timeout: 120_000 });
    const events = await page.evaluate(() => window.events);
    assert.deepEqual(events.map(([name, e]) => (name === 'model' ? [name, e.info.name] : name)), ['engine-crashed', 'engine', ['model', first.ok.name]]);
    const { reason, outOfMemory } = events[0][1];
    assert.deepEqual({ reason, outOfMemory }, { reason: crashed.details.reason, outOfMemory: crashed.details.outOfMemory }, 'the event says what the error says');
    const again = await run(generate);
    assert.equal(again.ok.name, first.ok.name);
    assert.equal(again.ok.kind, 'cpu');
    assert.deepEqual(again.ok.pixels, first.ok.pixels, 'the new engine, with fresh memory, draws the same image');
  } finally {
    await browser.close();
  }
}

test('an engine crash fails its call with engine-crashed, busy meanwhile, then engine and model events and the same image', () =>
  // A bug's panic in the engine's next parallel loop.
  faultAndRestart('engine', (crashed) => {
    const reason = "simulated fault in a parallel loop on the engine's thread (test hook)";
    assert.ok(crashed.details.reason.startsWith(`${reason} (at src/ops/cpu/threads.rs:`), crashed.details.reason);
    assert.equal(crashed.details.outOfMemory, undefined);
    assert.equal(crashed.message, `The engine stopped with an internal error (${crashed.details.reason}). It is restarting and reloading the model from the browser cache; try again when it is ready.`);
  }));

test('running out of memory fails the call with engine-crashed and what it asked for, then the engine comes back', () =>
  // The engine's next parallel loop asks for memory a gigabyte at a time until the page's
  // 4 GB are gone, as a request too large for the page would.
  faultAndRestart('memory', (crashed) => {
    const { requested, memory } = crashed.details.outOfMemory;
    assert.equal(requested, 2 ** 30, 'the gigabyte that did not fit');
    assert.ok(memory >= 3 * 2 ** 30 && memory + requested > 4 * 2 ** 30, `memory in use ${memory}`);
    const reason = `it asked for 1024 MB more with ${Math.round(memory / 2 ** 20)} MB in use; an engine in a web page has at most 4 GB`;
    assert.equal(crashed.details.reason, reason);
    assert.equal(crashed.message, `The engine ran out of memory (${reason}). It is restarting and reloading the model from the browser cache; try a smaller size or fewer images when it is ready.`);
  }));

test("without WebGPU, backend 'gpu' fails with code no-webgpu", async () => {
  const { NO_WEBGPU_FLAGS } = await import('./browser.mjs');
  const browser = await launch(NO_WEBGPU_FLAGS);
  try {
    const page = await browser.newPage();
    await page.goto(`${url}tests/e2e/api-harness.html`);
    await page.waitForFunction(() => window.ready);
    const r = await page.evaluate(() => window.attempt(() => window.api.Easel.create({ backend: 'gpu' })));
    assert.equal(r.code, 'no-webgpu', JSON.stringify(r));
    assert.match(r.message, /WebGPU/);
  } finally {
    await browser.close();
  }
});
