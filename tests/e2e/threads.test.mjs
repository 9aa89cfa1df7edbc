// The CPU backend on several threads in the page. Served cross-origin isolated (COOP/COEP, as
// scripts/serve.mjs does), the worker loads the threaded build (pkg/threads/) and starts its
// thread workers; the diagnostics say how many run. Served without the headers, it runs on one
// thread and says why. The picture is the same, pixel for pixel, on 2 threads as on 1 and as
// on the one-thread build: threads split rows, never a sum.
// Times are printed (this machine has 2 cores and other work), never asserted.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer } from '../../scripts/serve.mjs';
import { ROOT, launch, canvasPixels, engineWorker, maxDiff } from './browser.mjs';

// emoji-sd's own 32 px at 64 px: convs and attention big enough to be split among threads.
const FORM = { prompt: '一只戴墨镜的柴犬 😎', seed: 7, steps: 2, size: 64 };

let isolated;
let plain;
before(async () => {
  isolated = await startServer({ root: ROOT, port: 0 });
  plain = await startServer({ root: ROOT, port: 0, isolate: false });
});
after(() => {
  isolated?.server.close();
  plain?.server.close();
});

/** Fills the form and clicks Generate; the canvas's final state, its pixels and the time. */
async function generateOnce(page) {
  await page.fill('#prompt', FORM.prompt);
  await page.fill('#seed', String(FORM.seed));
  await page.fill('#steps', String(FORM.steps));
  await page.fill('#width', String(FORM.size));
  await page.fill('#height', String(FORM.size));
  const t0 = Date.now();
  await page.click('#generate');
  await page.locator('#canvas[data-state="done"], #canvas[data-state="error"]').waitFor({ timeout: 300_000 });
  const ms = Date.now() - t0;
  return { state: await page.locator('#canvas').getAttribute('data-state'), pixels: await canvasPixels(page, 'canvas', FORM.size, FORM.size), ms };
}

/** Opens emoji-sd on the CPU backend at `base` + `query`; one Generate: { threads, pixels, ms }. */
async function generate(browser, base, query) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    await page.goto(`${base}?backend=cpu&model=emoji-sd${query}`);
    await page.locator('#generate:not([disabled])').waitFor({ timeout: 120_000 });
    const threads = await page.locator('#diag-threads').textContent();
    const { state, pixels, ms } = await generateOnce(page);
    assert.equal(state, 'done', await page.locator('#step-text').textContent());
    assert.deepEqual(errors, []);
    return { threads, pixels, ms, isolated: await page.evaluate(() => self.crossOriginIsolated) };
  } finally {
    await page.close();
  }
}

test('the CPU backend runs on 2 threads when isolated, on 1 with the reason when not, and draws the same pixels', async () => {
  const browser = await launch();
  try {
    const two = await generate(browser, isolated.url, '&threads=2');
    assert.equal(two.isolated, true, 'served with COOP/COEP, the page is cross-origin isolated');
    assert.match(two.threads, /^2: 2 threads \(cross-origin isolated\)/);
    const one = await generate(browser, isolated.url, '&threads=1');
    assert.match(one.threads, /^1: one thread, as asked/);
    const bare = await generate(browser, plain.url, '');
    assert.equal(bare.isolated, false);
    assert.match(bare.threads, /^1: one thread: the page is not cross-origin isolated/);
    assert.equal(maxDiff(two.pixels, one.pixels), 0, '2 threads draw what 1 thread draws');
    assert.equal(maxDiff(two.pixels, bare.pixels), 0, 'the threaded build draws what the one-thread build draws');
    assert.ok(new Set(two.pixels).size > 8, 'a picture, not a flat fill');
    console.log(`emoji-sd ${FORM.size}x${FORM.size}, ${FORM.steps} steps, CPU backend: 2 threads ${two.ms} ms, 1 thread (threaded build) ${one.ms} ms, `
      + `one-thread build ${bare.ms} ms: ${(one.ms / two.ms).toFixed(2)}x on 2 threads`);
  } finally {
    await browser.close();
  }
});

// A bug that panics mid-generation (here a test hook) must fail that generation with the
// panic's words, not freeze the page: on a CPU thread worker the loop waiting for the task
// is told, and either way the wasm module is done for, so easel.js starts a new worker and
// reloads the model from the browser cache. The next Generate draws the same picture. Memory
// running out (the threaded build's shared memory stops at 4 GB) ends the same way, and says so.
const restarting = 'It is restarting and reloading the model from the browser cache';
const internal = (panic) => new RegExp(`^The engine stopped with an internal error \\(${panic}\\)\\. ${restarting}; try again when it is ready\\.$`);
const at = String.raw`\(at src/ops/cpu/threads\.rs:\d+\)`;
for (const [place, title, server, query, note] of [
  ['thread', 'a panic on the CPU thread worker', () => isolated, '&threads=2', internal(String.raw`a CPU thread failed: simulated fault in a task on a CPU thread worker \(test hook\) ${at} ${at}`)],
  ['engine', "a panic on the one-thread build's engine thread", () => plain, '', internal(String.raw`simulated fault in a parallel loop on the engine's thread \(test hook\) ${at}`)],
  ['memory', 'running out of shared memory', () => isolated, '&threads=2',
    new RegExp(String.raw`^The engine ran out of memory \(it asked for 1024 MB more with (3\d{3}|40\d\d) MB in use; an engine in a web page has at most 4 GB\)\. ${restarting}; try a smaller size or fewer images when it is ready\.$`)],
]) {
  test(`${title} fails the generation and says why; the engine restarts and draws the same picture`, async () => {
    const browser = await launch();
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
      await page.goto(`${server().url}?backend=cpu&model=emoji-sd${query}`);
      await page.locator('#generate:not([disabled])').waitFor({ timeout: 120_000 });
      const threads = await page.locator('#diag-threads').textContent();
      const before = await generateOnce(page);
      assert.equal(before.state, 'done');

      await engineWorker(page).evaluate((p) => self.simulateEngineFault(p), place);
      const crashed = await generateOnce(page);
      assert.equal(crashed.state, 'error');
      assert.match(await page.locator('#generate-note').textContent(), note);

      // Back by itself: a new worker, the same threads, the model from Cache Storage.
      await page.locator('#generate:not([disabled])').waitFor({ timeout: 120_000 });
      assert.equal(await page.locator('#diag-threads').textContent(), threads);
      assert.match(await page.locator('#download-text').textContent(), /from the browser cache/);
      const after = await generateOnce(page);
      assert.equal(after.state, 'done', await page.locator('#generate-note').textContent());
      assert.equal(maxDiff(after.pixels, before.pixels), 0, 'the restarted engine draws the same picture');
    } finally {
      await browser.close();
    }
  });
}
