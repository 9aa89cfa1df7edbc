// The CPU backend on several threads in the page, and its builds. Served cross-origin
// isolated (COOP/COEP, as scripts/serve.mjs does), the worker loads a threaded build and
// starts its thread workers; the diagnostics say how many run. Served without the headers,
// it runs on one thread and says why. Where the browser has relaxed SIMD (Chromium does)
// every build is the relaxed one (pkg/relaxed/, pkg/relaxed/threads/), unless ?simd=simd128
// asks for the plain ones. The picture is the same, pixel for pixel, on 2 threads as on 1
// and as on the one-thread build (threads split rows, never a sum), and each build's is the
// CLI's computed with that build's arithmetic (fused multiply-adds or not).
// Times are printed (this machine has 2 cores and other work), never asserted.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer } from '../../scripts/serve.mjs';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ROOT, launch, canvasPixels, engineWorker, maxDiff, pageArithmetic, pngPixels, runCli } from './browser.mjs';

// emoji-sd's own 32 px at 64 px: convs and attention big enough to be split among threads.
const FORM = { prompt: '一只戴墨镜的柴犬 😎', seed: 7, steps: 2, size: 64, guidance: 4 };

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
async function generateOnce(page, form = FORM) {
  await page.fill('#prompt', form.prompt);
  await page.fill('#seed', String(form.seed));
  await page.fill('#steps', String(form.steps));
  await page.fill('#guidance', String(form.guidance));
  await page.fill('#width', String(form.size));
  await page.fill('#height', String(form.size));
  const t0 = Date.now();
  await page.click('#generate');
  await page.locator('#canvas[data-state="done"], #canvas[data-state="error"]').waitFor({ timeout: 300_000 });
  const ms = Date.now() - t0;
  return { state: await page.locator('#canvas').getAttribute('data-state'), pixels: await canvasPixels(page, 'canvas', form.size, form.size), ms };
}

/** The CLI's pixels for `form` on `model` (CPU) with `env`'s arithmetic (PNG decoded by `page`), plus `args`. */
async function cliPixels(page, model, form, env, args = []) {
  const out = join(mkdtempSync(join(tmpdir(), 'easel-threads-')), 'cli.png');
  runCli(['generate', '--model', `www/models/${model}`, '--prompt', form.prompt, '--seed', String(form.seed), '--steps', String(form.steps),
    '--guidance', String(form.guidance), '--width', String(form.size), '--height', String(form.size), '--backend', 'cpu', '--out', out, ...args], env);
  return pngPixels(page, readFileSync(out));
}

/**
 * Opens `model` (emoji-sd unless given) on the CPU backend at `base` + `query`; one Generate
 * of `form`: { threads, simd, env, pixels, ms, isolated }, and with `cli` set the CLI's
 * pixels in this page's arithmetic.
 */
async function generate(browser, base, query, { model = 'emoji-sd', form = FORM, cli = false, cliArgs = [] } = {}) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    await page.goto(`${base}?backend=cpu&model=${model}${query}`);
    await page.locator('#generate:not([disabled])').waitFor({ timeout: 120_000 });
    const threads = await page.locator('#diag-threads').textContent();
    const simd = await page.locator('#diag-simd').textContent();
    // The engine's GEMM fuses exactly where its build is relaxed and V8 fuses relaxed_madd.
    const probe = await page.evaluate(async () => (await import('/www/simd.js')).relaxedSimd());
    const fusedSaid = await page.locator('#diag-simd').getAttribute('data-fused');
    assert.equal(fusedSaid, String(simd.startsWith('relaxed') && probe.fused === true), `${simd}: the GEMM fuses as this browser's relaxed_madd does (${JSON.stringify(probe)})`);
    const { state, pixels, ms } = await generateOnce(page, form);
    assert.equal(state, 'done', await page.locator('#step-text').textContent());
    assert.deepEqual(errors, []);
    const env = await pageArithmetic(page);
    const cpuPrecision = await page.locator('#diag-cpu-precision').textContent();
    return { threads, simd, env, pixels, ms, cpuPrecision, cli: cli ? await cliPixels(page, model, form, env, cliArgs) : null, isolated: await page.evaluate(() => self.crossOriginIsolated) };
  } finally {
    await page.close();
  }
}

test('the CPU backend runs on 2 threads when isolated, on 1 with the reason when not, in relaxed SIMD unless asked, and draws the same pixels', async () => {
  const browser = await launch();
  try {
    const two = await generate(browser, isolated.url, '&threads=2', { cli: true });
    assert.equal(two.isolated, true, 'served with COOP/COEP, the page is cross-origin isolated');
    assert.match(two.threads, /^2: 2 threads \(cross-origin isolated\)/);
    // Chromium has relaxed SIMD; on x86-64 with FMA (and on ARM64) V8 fuses its multiply-add.
    assert.match(two.simd, /^relaxed SIMD, (fused multiply-adds|multiply-adds rounded twice)/);
    const one = await generate(browser, isolated.url, '&threads=1');
    assert.match(one.threads, /^1: one thread, as asked/);
    assert.match(one.simd, /^relaxed SIMD/);
    const bare = await generate(browser, plain.url, '');
    assert.equal(bare.isolated, false);
    assert.match(bare.threads, /^1: one thread: the page is not cross-origin isolated/);
    assert.match(bare.simd, /^relaxed SIMD/, 'the relaxed one-thread build needs no isolation');
    const simd128 = await generate(browser, isolated.url, '&threads=2&simd=simd128', { cli: true });
    assert.match(simd128.threads, /^2: 2 threads/);
    assert.equal(simd128.simd, 'SIMD128: as asked');
    assert.equal(simd128.env.EASEL_CPU_ARITHMETIC, 'page');
    // Each build's image is the CLI's in its arithmetic, at 64 px (where before the engine
    // took its exponentials, sines and sums from portable code, a few values were a level off).
    for (const run of [two, simd128]) {
      const d = maxDiff(run.pixels, run.cli);
      console.log(`# emoji-sd ${run.simd}: max |page - CLI with ${run.env.EASEL_CPU_ARITHMETIC}| = ${d} of 255`);
      assert.equal(d, 0, `${run.simd}: the page's image is the CLI's with EASEL_CPU_ARITHMETIC=${run.env.EASEL_CPU_ARITHMETIC}`);
    }
    assert.equal(maxDiff(two.pixels, one.pixels), 0, '2 threads draw what 1 thread draws');
    assert.equal(maxDiff(two.pixels, bare.pixels), 0, 'the threaded build draws what the one-thread build draws');
    const d = maxDiff(two.pixels, simd128.pixels);
    console.log(`# relaxed SIMD against SIMD128: max |difference| = ${d} of 255 (${two.pixels.filter((v, i) => v !== simd128.pixels[i]).length} of ${two.pixels.length} values)`);
    assert.ok(new Set(two.pixels).size > 8, 'a picture, not a flat fill');
    console.log(`emoji-sd ${FORM.size}x${FORM.size}, ${FORM.steps} steps, CPU backend: 2 threads ${two.ms} ms, 1 thread (threaded build) ${one.ms} ms, `
      + `one-thread build ${bare.ms} ms, 2 threads SIMD128 ${simd128.ms} ms: ${(one.ms / two.ms).toFixed(2)}x on 2 threads`);
  } finally {
    await browser.close();
  }
});

// ?precision=fast on the CPU backend: 3x3 convolutions over maps of 64x64 and up as Winograd
// F(2x2,3x3). emoji-sd at 128 px runs its UNet at 64x64 and its decoder up to 128x128. The
// picture is the CLI's with --precision fast in the page's arithmetic, bit for bit (the
// transforms only add and halve, in one order everywhere), and within a level of exact's.
test('the fast precision on the CPU: Winograd convolutions, said in the diagnostics, the CLI\'s pixels, a level from exact', async () => {
  const browser = await launch();
  const form = { ...FORM, size: 128 };
  try {
    const exact = await generate(browser, isolated.url, '&threads=2', { form });
    assert.equal(exact.cpuPrecision, 'exact');
    const fast = await generate(browser, isolated.url, '&threads=2&precision=fast', { form, cli: true, cliArgs: ['--precision', 'fast'] });
    assert.equal(fast.cpuPrecision, 'fast (Winograd 3x3 convolutions)');
    const cli = maxDiff(fast.pixels, fast.cli);
    const apart = maxDiff(fast.pixels, exact.pixels);
    const moved = fast.pixels.filter((v, i) => v !== exact.pixels[i]).length;
    console.log(`# emoji-sd 128 px fast: max |page - CLI --precision fast| = ${cli}; against exact: max ${apart} of 255 (${moved} of ${fast.pixels.length} values); `
      + `exact ${exact.ms} ms, fast ${fast.ms} ms`);
    assert.equal(cli, 0, `the page's fast image is the CLI's with --precision fast and EASEL_CPU_ARITHMETIC=${fast.env.EASEL_CPU_ARITHMETIC}`);
    assert.ok(apart <= 1, `${apart} levels from the exact picture`);
    assert.ok(new Set(fast.pixels).size > 8, 'a picture, not a flat fill');
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
// sd-tiny at 64 px, 8 steps, where a few values once differed by a level: std's exp, sin and
// cos are glibc's natively and Rust's libm in the page, and candle's vector sums run in
// another order on x86 than in SIMD128; the engine now takes them from portable code
// (clippy.toml forbids the others). That the relaxed build's GEMM fuses is the first test's
// `data-fused`.
const TINY = { prompt: '一只戴墨镜的柴犬 😎', seed: 7, steps: 8, size: 64, guidance: 4 };

test("each build's image is the CLI's in its arithmetic: relaxed SIMD's fused multiply-adds, SIMD128's rounded twice", async () => {
  const browser = await launch();
  try {
    const relaxed = await generate(browser, isolated.url, '&threads=2', { model: 'sd-tiny', form: TINY, cli: true });
    const simd128 = await generate(browser, isolated.url, '&threads=2&simd=simd128', { model: 'sd-tiny', form: TINY, cli: true });
    assert.equal(simd128.env.EASEL_CPU_ARITHMETIC, 'page');
    for (const [name, run] of Object.entries({ relaxed, simd128 })) {
      const d = maxDiff(run.pixels, run.cli);
      console.log(`# ${name} (${run.simd}): max |page - CLI with ${run.env.EASEL_CPU_ARITHMETIC}| = ${d} of 255`);
      assert.equal(d, 0, `${name}: the page's image is the CLI's with EASEL_CPU_ARITHMETIC=${run.env.EASEL_CPU_ARITHMETIC}`);
    }
    console.log(`# sd-tiny, relaxed SIMD against SIMD128: max |difference| = ${maxDiff(relaxed.pixels, simd128.pixels)} of 255`);
    assert.ok(new Set(relaxed.pixels).size > 8, 'a picture, not a flat fill');
  } finally {
    await browser.close();
  }
});

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
