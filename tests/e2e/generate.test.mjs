// End-to-end generation: fill the form, click Generate, watch the steps advance, and check
// the canvas against the native CLI's image for the same seed (bundled sd-tiny model).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../../scripts/serve.mjs';
import { ROOT, launch, artifactPath, canvasPixels as pixelsOf, pngPixels, maxDiff, runCli } from './browser.mjs';
import { pngText } from './png-text.mjs';

let server;
let url;
before(async () => ({ server, url } = await startServer({ root: ROOT, port: 0 })));
after(() => server?.close());

// A user's prompt: Chinese with an emoji (a shiba in sunglasses), and a negative prompt with
// right-to-left text, a combining accent and a zero-width space.
const FORM = { prompt: '一只戴墨镜的柴犬 😎', negative: 'blurry, מטושטש, cafe\u0301\u200b', steps: 3, guidance: 7.5, seed: 1234 };

/** The native CLI's PNG for FORM (same model, seed and settings); made once per backend. */
async function cliImageBytes(backend, fresh = false) {
  const out = await artifactPath(`cli-${backend}.png`);
  if (!fresh) return readFileSync(out);
  runCli(['generate', '--model', 'www/models/sd-tiny', '--prompt', FORM.prompt,
    '--negative-prompt', FORM.negative, '--steps', String(FORM.steps), '--guidance', String(FORM.guidance), '--seed', String(FORM.seed),
    '--backend', backend, '--out', out]);
  return readFileSync(out);
}

async function openReady(page, query = '') {
  // The CLI images above are sd-tiny's (the page's default model is emoji-dcgan).
  await page.goto(url + (query ? `${query}&` : '?') + 'model=www/models/sd-tiny/');
  await page.locator('#generate:not([disabled])').waitFor({ timeout: 180_000 });
}

async function fillForm(page, steps = FORM.steps) {
  await page.fill('#prompt', FORM.prompt);
  await page.fill('#negative-prompt', FORM.negative);
  await page.fill('#steps', String(steps));
  await page.fill('#guidance', String(FORM.guidance));
  await page.fill('#seed', String(FORM.seed));
}

/** RGBA pixels of the 16x16 result canvas. */
const canvasPixels = (page) => pixelsOf(page, 'canvas', 16, 16);

for (const backend of ['cpu', 'gpu']) {
  test(`the page generates the CLI's image on the ${backend} backend`, async () => {
    const browser = await launch();
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await openReady(page, `?backend=${backend}`);
      assert.equal(await page.locator('#width').inputValue(), '16', 'the bundled model sets its own size');
      await fillForm(page);
      // Record every step the progress bar shows.
      await page.evaluate(() => {
        window.seenSteps = [];
        new MutationObserver(() => window.seenSteps.push(Number(document.getElementById('step-progress').value))).observe(document.getElementById('step-text'), { childList: true, characterData: true, subtree: true });
      });
      await page.click('#generate');
      await page.locator('#canvas[data-state="done"], #canvas[data-state="error"]').waitFor({ timeout: 300_000 });
      assert.equal(await page.locator('#canvas').getAttribute('data-state'), 'done', await page.locator('#step-text').textContent());
      const seen = await page.evaluate(() => window.seenSteps);
      for (let s = 1; s <= FORM.steps; s++) assert.ok(seen.includes(s), `progress showed step ${s}: ${seen}`);
      await page.screenshot({ path: await artifactPath(`generate-${backend}.png`), fullPage: true });

      const got = await canvasPixels(page);
      const want = await pngPixels(page, await cliImageBytes(backend, true));
      const diff = maxDiff(got, want);
      console.log(`# ${backend}: max |page - CLI| = ${diff} of 255`);
      assert.ok(diff <= 2, `page image differs from the CLI's by ${diff} levels`);
      assert.ok(new Set(got).size > 16, 'the image is not blank');

      // The PNG download records the settings.
      const href = await page.locator('#downloads a').first().getAttribute('href');
      const png = await page.evaluate(async (h) => Array.from(new Uint8Array(await (await fetch(h)).arrayBuffer())), href);
      const text = pngText(Buffer.from(png));
      assert.equal(text.prompt, FORM.prompt);
      assert.equal(text.negative_prompt, FORM.negative);
      assert.deepEqual([text.seed, text.steps, text.model, text.size], [String(FORM.seed), String(FORM.steps), 'sd2-tiny', '16x16']);
      assert.ok(
        text.parameters.startsWith(`${FORM.prompt}\nNegative prompt: ${FORM.negative}\nSteps: ${FORM.steps}, Sampler: `) &&
          text.parameters.includes(`, CFG scale: ${FORM.guidance}, Seed: ${FORM.seed}, Size: 16x16, Model: sd2-tiny`),
        text.parameters,
      );
      assert.equal(await page.locator('.download-error').count(), 0, 'no metadata error');
      // The CLI's PNG carries the same settings.
      assert.equal(pngText(await cliImageBytes(backend)).parameters, text.parameters);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
}

test('cancel stops a generation between steps', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await openReady(page);
    await fillForm(page, 400);
    await page.click('#generate');
    await page.waitForFunction(() => Number(document.getElementById('step-progress').value) >= 1, null, { timeout: 120_000 });
    await page.click('#cancel');
    await page.locator('#canvas[data-state="cancelled"]').waitFor({ timeout: 120_000 });
    const step = Number(await page.locator('#step-progress').inputValue().catch(() => 0)) || (await page.evaluate(() => document.getElementById('step-progress').value));
    assert.ok(step < 400, `stopped at step ${step} of 400`);
    assert.equal(await page.locator('#generate').isDisabled(), false, 'a new generation can start');
  } finally {
    await browser.close();
  }
});
