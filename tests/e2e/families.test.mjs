// Model families through the page's own UI: the bundled pixel-space DDPM shows only the
// controls it reads (no prompt, guidance or init image), samples with x0 previews, and its
// image equals the native CLI's for the same seed; switching back to Stable Diffusion
// brings the prompt back.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { startServer } from '../../scripts/serve.mjs';
import { ROOT, launch, artifactPath } from './browser.mjs';

let server;
let url;
before(async () => ({ server, url } = await startServer({ root: ROOT, port: 0 })));
after(() => server?.close());

const DDPM = 'www/models/ddpm-tiny/';

async function cliImage(backend, seed, steps) {
  const out = await artifactPath(`cli-ddpm-${backend}.png`);
  const args = ['run', '--quiet', '--bin', 'easel', '--', 'generate', '--model', DDPM, '--seed', String(seed), '--steps', String(steps), '--backend', backend, '--out', out];
  execFileSync('cargo', args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' } });
  return readFileSync(out);
}

for (const backend of ['cpu', 'gpu']) {
  test(`the bundled DDPM samples in the page as the CLI does (${backend})`, async () => {
    const browser = await launch();
    try {
      const page = await browser.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${url}?backend=${backend}&model=${DDPM}`);
      await page.locator('#generate:not([disabled])').waitFor({ timeout: 180_000 });
      // Only what an unconditional pixel model reads.
      for (const id of ['prompt-controls', 'guidance-row', 'init-fieldset']) assert.equal(await page.locator(`#${id}`).isHidden(), true, `#${id} hidden`);
      assert.equal(await page.locator('#unconditional-note').isVisible(), true);
      assert.equal(await page.locator('#width').inputValue(), '16');
      assert.equal(await page.locator('#width').getAttribute('step'), '2', 'sizes in the model unit (2 for a 2-level UNet)');
      await page.fill('#steps', '10');
      await page.fill('#seed', '7');
      await page.click('#generate');
      await page.locator('#canvas[data-state="done"], #canvas[data-state="error"]').waitFor({ timeout: 180_000 });
      assert.equal(await page.locator('#canvas').getAttribute('data-state'), 'done', await page.locator('#step-text').textContent());
      const got = await page.evaluate(() => Array.from(document.getElementById('canvas').getContext('2d').getImageData(0, 0, 16, 16).data));
      const png = await cliImage(backend, 7, 10);
      const want = await page.evaluate(async (b64) => {
        const bmp = await createImageBitmap(new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type: 'image/png' }));
        const c = new OffscreenCanvas(bmp.width, bmp.height);
        c.getContext('2d').drawImage(bmp, 0, 0);
        return Array.from(c.getContext('2d').getImageData(0, 0, bmp.width, bmp.height).data);
      }, png.toString('base64'));
      const diff = got.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i])), 0);
      console.log(`# ddpm ${backend}: max |page - CLI| = ${diff} of 255`);
      assert.ok(diff <= 2, `page image differs from the CLI's by ${diff} levels`);
      assert.ok(new Set(got).size > 16, 'the image is not blank');
      // Back to Stable Diffusion: the prompt returns.
      await page.selectOption('#model', 'www/models/sd-tiny/');
      await page.waitForFunction(() => !document.getElementById('prompt-controls').hidden, null, { timeout: 180_000 });
      assert.equal(await page.locator('#init-fieldset').isVisible(), true);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
}
