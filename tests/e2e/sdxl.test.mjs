// SDXL in the page as a visitor gets it: Hub mode converts the sdxl-tiny repository (two
// text encoders, two tokenizers) in the browser, the size fields take the model's own size,
// and Generate with a Chinese-and-emoji prompt draws the native CLI's image.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../scripts/serve.mjs';
import { ROOT, pageArithmetic, artifactPath, canvasPixels, launch, maxDiff, pngPixels, runCli } from './browser.mjs';

const PROMPT = '一只戴墨镜的柴犬 😎, a watercolor';
let hubRoot;
let page$;
let hub$;

before(async () => {
  // The fixture keeps no vocab.json / merges.txt: both are sd2-tiny's (the same CLIP
  // vocabulary, byte for byte; tests/fixtures/sdxl-tiny/SOURCE.md).
  hubRoot = mkdtempSync(join(tmpdir(), 'easel-sdxl-hub-'));
  cpSync(join(ROOT, 'tests/fixtures/sdxl-tiny'), join(hubRoot, 'sdxl-tiny'), { recursive: true });
  for (const tok of ['tokenizer', 'tokenizer_2']) {
    for (const f of ['vocab.json', 'merges.txt']) cpSync(join(ROOT, 'tests/fixtures/sd2-tiny/tokenizer', f), join(hubRoot, 'sdxl-tiny', tok, f));
  }
  page$ = await startServer({ root: ROOT, port: 0 });
  hub$ = await startServer({ root: hubRoot, hubRoot, port: 0 });
});

after(() => {
  page$?.server.close();
  hub$?.server.close();
  if (hubRoot) rmSync(hubRoot, { recursive: true, force: true });
});

test("Hub mode converts an SDXL repository, takes its size, and draws the CLI's image", async () => {
  const cli = await artifactPath('sdxl-cli.png');
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${page$.url}?backend=cpu&model=none`);
    await page.locator('#diagnostics[data-state="ready"], #diagnostics[data-state="no-webgpu"]').waitFor({ timeout: 120_000 });
    runCli(['generate', '--model', join(hubRoot, 'sdxl-tiny'), '--prompt', PROMPT, '--steps', '2', '--guidance', '5', '--seed', '11', '--backend', 'cpu', '--out', cli], await pageArithmetic(page));
    await page.selectOption('#model', 'hub');
    await page.fill('#hub-base', hub$.url);
    await page.fill('#hub-repo', 'sdxl-tiny');
    await page.selectOption('#hub-quant', 'f32');
    await page.click('#load-hub');
    await page.locator('#download-progress[data-state="ready"], #download-progress[data-state="error"]').waitFor({ timeout: 120_000 });
    assert.equal(await page.locator('#download-progress').getAttribute('data-state'), 'ready', await page.locator('#download-text').textContent());
    // The model's own size (sample_size 8 x its VAE's 2x), as for any model.
    assert.equal(await page.locator('#width').inputValue(), '16');
    assert.equal(await page.locator('#height').inputValue(), '16');
    await page.fill('#prompt', PROMPT);
    await page.fill('#negative-prompt', '');
    await page.fill('#steps', '2');
    await page.fill('#guidance', '5');
    await page.fill('#seed', '11');
    await page.click('#generate');
    await page.locator('#canvas[data-state="done"], #canvas[data-state="error"]').waitFor({ timeout: 120_000 });
    assert.equal(await page.locator('#canvas').getAttribute('data-state'), 'done', await page.locator('#step-text').textContent());
    const diff = maxDiff(await canvasPixels(page, 'canvas', 16, 16), await pngPixels(page, readFileSync(cli)));
    console.log(`# SDXL page (Hub mode, CPU) vs CLI: max |diff| = ${diff} of 255`);
    assert.ok(diff <= 1, `the page's SDXL image differs from the CLI's by ${diff} of 255`);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
