// A visitor's session, by hand rather than in CI (it takes minutes): the page at its own
// defaults, a Chinese-and-emoji prompt, an optional size, two Generates back to back (a
// double click, then another right after the first finishes). Prints each run's time,
// the step line, the note and the PNG's prompt; screenshots land in tests/artifacts/.
//
//   node scripts/tryout/visitor.mjs [--size 512] [--steps N] [--backend auto|cpu|gpu] [--precision exact|fast] [--model emoji-sd]
//   (after scripts/build.sh; the step line is printed every minute while a run lasts)

import { parseArgs } from 'node:util';
import { startServer } from '../serve.mjs';
import { ROOT, launch, artifactPath } from '../../tests/e2e/browser.mjs';
import { pngText } from '../../tests/e2e/png-text.mjs';

const { values } = parseArgs({ options: { size: { type: 'string' }, steps: { type: 'string' }, backend: { type: 'string', default: 'auto' }, precision: { type: 'string', default: 'exact' }, model: { type: 'string' } } });
const PROMPT = '一只戴墨镜的柴犬 😎';
const { server, url } = await startServer({ root: ROOT, port: 0 });
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  await page.goto(`${url}?backend=${values.backend}&precision=${values.precision}`);
  await page.locator('#generate:not([disabled])').waitFor({ timeout: 300_000 });
  if (values.model) {
    // Picked from the model menu, as a visitor would (a bundled model's folder).
    await page.selectOption('#model', `www/models/${values.model}/`);
    await page.waitForFunction((m) => document.getElementById('download-text').textContent.startsWith(`${m}:`), values.model, { timeout: 300_000 });
    await page.locator('#generate:not([disabled])').waitFor({ timeout: 300_000 });
  }
  const form = await page.evaluate(() => Object.fromEntries(['steps', 'guidance', 'width', 'height', 'batch', 'seed', 'scheduler'].map((id) => [id, document.getElementById(id).value])));
  console.log(`defaults: ${JSON.stringify(form)}; note: ${await page.locator('#generate-note').textContent()}`);
  await page.fill('#prompt', PROMPT);
  if (values.size) {
    // A model that draws one size only (the GAN) locks the fields: say so and keep its size.
    if (await page.locator('#width').isDisabled()) {
      console.log(`--size ${values.size}: the size fields are locked (${await page.locator('#width').getAttribute('title')}); generating at the model's size`);
    } else {
      for (const id of ['width', 'height']) await page.fill(`#${id}`, values.size);
    }
  }
  if (values.steps) await page.fill('#steps', values.steps);
  for (let run = 1; run <= 2; run++) {
    const t0 = Date.now();
    // Run 1: a double click (the second must be ignored); run 2: right after run 1.
    await (run === 1 ? page.dblclick('#generate') : page.click('#generate'));
    console.log(`run ${run} started; note: "${await page.locator('#generate-note').textContent()}"`);
    const ticker = setInterval(async () => console.log(`  ${((Date.now() - t0) / 1000).toFixed(0)} s: ${await page.locator('#step-text').textContent()}`), 60_000);
    await page.locator('#canvas[data-state="done"], #canvas[data-state="error"], #canvas[data-state="cancelled"]').waitFor({ timeout: 0 });
    clearInterval(ticker);
    const state = await page.locator('#canvas').getAttribute('data-state');
    const steps = await page.locator('#step-text').textContent();
    const note = await page.locator('#generate-note').textContent();
    let prompt = null;
    const href = await page.locator('#downloads a').first().getAttribute('href').catch(() => null);
    if (href) {
      const png = await page.evaluate(async (h) => Array.from(new Uint8Array(await (await fetch(h)).arrayBuffer())), href);
      prompt = pngText(Buffer.from(png)).prompt;
    }
    console.log(`run ${run}: ${state} in ${((Date.now() - t0) / 1000).toFixed(1)} s; "${steps}"; note "${note}"; PNG prompt ${JSON.stringify(prompt)} (${prompt === PROMPT ? 'exact' : 'DIFFERS'})`);
    await page.screenshot({ path: await artifactPath(`visitor-run${run}.png`), fullPage: true });
    await page.evaluate(() => (document.getElementById('canvas').dataset.state = 'empty'));
  }
} finally {
  await browser.close();
  server.close();
}
