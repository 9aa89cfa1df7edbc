// Model families through the page's own UI, each against the native CLI on the same
// model and seed: the bundled pixel-space DDPM (only the controls it reads), the VQGAN's
// round-trip panel (codes, reconstruction, brushed codes remixed) and aMUSEd with a
// Chinese-and-emoji prompt, and repainting a brushed part of an init image.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { startServer } from '../../scripts/serve.mjs';
import { ROOT, launch, artifactPath, canvasPixels, pngPixels, maxDiff, runCli } from './browser.mjs';

let server;
let url;
before(async () => ({ server, url } = await startServer({ root: ROOT, port: 0 })));
after(() => server?.close());

const DDPM = 'www/models/ddpm-tiny/';

/** A size x size diagonal gradient PNG drawn by the page's browser, as a visitor's file. */
async function gradientPng(page, size, from, to) {
  const bytes = await page.evaluate(
    async ([size, from, to]) => {
      const c = new OffscreenCanvas(size, size);
      const g = c.getContext('2d');
      const grad = g.createLinearGradient(0, 0, size, size);
      grad.addColorStop(0, from);
      grad.addColorStop(1, to);
      g.fillStyle = grad;
      g.fillRect(0, 0, size, size);
      return Array.from(new Uint8Array(await (await c.convertToBlob({ type: 'image/png' })).arrayBuffer()));
    },
    [size, from, to],
  );
  return Buffer.from(bytes);
}

/** `easel generate` with `args`, returning its PNG. */
async function cliImage(name, args) {
  const out = await artifactPath(`cli-${name}.png`);
  runCli(['generate', ...args, '--out', out]);
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
      const got = await canvasPixels(page, 'canvas', 16, 16);
      const want = await pngPixels(page, await cliImage(`ddpm-${backend}`, ['--model', DDPM, '--seed', '7', '--steps', '10', '--backend', backend]));
      const diff = maxDiff(got, want);
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

const VQGAN = 'www/models/vqgan-tiny/';

test('the bundled VQGAN round-trips an image as the CLI does, and brushed codes are remixed', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${url}?backend=cpu&model=${VQGAN}`);
    await page.locator('#generate:not([disabled])').waitFor({ timeout: 180_000 });
    assert.equal(await page.locator('#vq-panel').isVisible(), true);
    assert.equal(await page.locator('#prompt-controls').isHidden(), true);
    assert.equal(await page.locator('#width').inputValue(), '32', '16 codes of a 2x model');
    // A 32x32 gradient, as a visitor's file.
    const png = await gradientPng(page, 32, '#d33', '#36c');
    const input = await artifactPath('vq-input.png');
    writeFileSync(input, png);
    await page.setInputFiles('#vq-image', input);
    await page.locator('#vq-recon[data-state="done"], #vq-recon[data-state="error"]').waitFor({ timeout: 120_000 });
    assert.equal(await page.locator('#vq-note').textContent(), 'Encoded 32x32 into 16x16 codes (of 64 in the codebook) and decoded them again.');
    const indices = (await page.locator('#vq-codes').getAttribute('data-indices')).split(',').map(Number);
    assert.equal(indices.length, 256);

    // The CLI's encode of the same file gives the same codes, and its decode the same image.
    const codes = await artifactPath('vq-codes.safetensors');
    const out = await artifactPath('vq-cli.png');
    runCli(['vqgan', 'encode', '--model', VQGAN, '--image', input, '--out', codes, '--backend', 'cpu']);
    runCli(['vqgan', 'decode', '--model', VQGAN, '--codes', codes, '--out', out, '--backend', 'cpu']);
    const st = readFileSync(codes);
    const headerLen = Number(st.readBigUInt64LE(0));
    const header = JSON.parse(st.subarray(8, 8 + headerLen).toString());
    const { dtype, data_offsets: [begin, end] } = header.indices;
    const raw = st.subarray(8 + headerLen + begin, 8 + headerLen + end);
    const width = { I64: 8, I32: 4, U32: 4 }[dtype];
    const cliIndices = Array.from({ length: raw.length / width }, (_, i) => (width === 8 ? Number(raw.readBigInt64LE(i * 8)) : raw.readUInt32LE(i * 4)));
    assert.deepEqual(indices, cliIndices, 'page and CLI codes');
    const diff = maxDiff(await canvasPixels(page, 'vq-recon', 32, 32), await pngPixels(page, readFileSync(out)));
    console.log(`# vqgan: max |page - CLI| reconstruction = ${diff} of 255`);
    assert.ok(diff <= 2, `reconstruction differs from the CLI's by ${diff}`);

    // Brush the top-left 4x4 codes (the canvas shows 16 codes over 128 px) and randomize them.
    await page.locator('#vq-codes').scrollIntoViewIfNeeded();
    const box = await page.locator('#vq-codes').boundingBox();
    await page.mouse.move(box.x + 2, box.y + 2);
    await page.mouse.down();
    for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) await page.mouse.move(box.x + x * 8 + 4, box.y + y * 8 + 4);
    await page.mouse.up();
    await page.click('#vq-randomize');
    await page.waitForFunction(() => document.getElementById('vq-note').textContent.endsWith('randomized and decoded.'), null, { timeout: 120_000 });
    const after = (await page.locator('#vq-codes').getAttribute('data-indices')).split(',').map(Number);
    const changedOutside = after.filter((v, i) => (i % 16 >= 4 || i >= 64) && v !== indices[i]).length;
    assert.equal(changedOutside, 0, 'only brushed codes change');
    assert.ok(after.slice(0, 64).some((v, i) => i % 16 < 4 && v !== indices[i]), 'brushed codes were redrawn');
    assert.match(await page.locator('#vq-note').textContent(), /^16 codes randomized and decoded\.$/);
    // Generate on a VQ model: random codes, decoded.
    assert.equal(await page.locator('#canvas').getAttribute('data-state'), 'empty');
    await page.click('#generate');
    await page.locator('#canvas[data-state="done"], #canvas[data-state="error"]').waitFor({ timeout: 120_000 });
    assert.equal(await page.locator('#canvas').getAttribute('data-state'), 'done', await page.locator('#step-text').textContent());
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

const AMUSED = 'www/models/amused-tiny/';

test('the bundled aMUSEd draws a Chinese-and-emoji prompt in the page as the CLI does', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${url}?backend=cpu&model=${AMUSED}`);
    await page.locator('#generate:not([disabled])').waitFor({ timeout: 180_000 });
    assert.equal(await page.locator('#prompt-controls').isVisible(), true);
    assert.equal(await page.locator('#guidance-row').isVisible(), true);
    // aMUSEd repaints a brushed region of an init image (token-space inpainting).
    assert.equal(await page.locator('#init-fieldset').isVisible(), true);
    assert.equal(await page.locator('#vq-panel').isHidden(), true);
    assert.equal(await page.locator('#width').inputValue(), '16');
    const prompt = '一只戴墨镜的柴犬 😎';
    await page.fill('#prompt', prompt);
    await page.fill('#steps', '4');
    await page.fill('#guidance', '10');
    await page.fill('#seed', '5');
    await page.click('#generate');
    await page.locator('#canvas[data-state="done"], #canvas[data-state="error"]').waitFor({ timeout: 180_000 });
    assert.equal(await page.locator('#canvas').getAttribute('data-state'), 'done', await page.locator('#step-text').textContent());
    const got = await canvasPixels(page, 'canvas', 16, 16);
    const want = await pngPixels(page, await cliImage('amused', ['--model', AMUSED, '--prompt', prompt, '--steps', '4', '--guidance', '10', '--seed', '5', '--backend', 'cpu']));
    const diff = maxDiff(got, want);
    console.log(`# amused: max |page - CLI| = ${diff} of 255`);
    assert.ok(diff <= 2, `page image differs from the CLI's by ${diff} levels`);
    assert.ok(new Set(got).size > 16, 'the image is not blank');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test('aMUSEd repaints the brushed part of an init image in the page as the CLI does', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${url}?backend=cpu&model=${AMUSED}`);
    await page.locator('#generate:not([disabled])').waitFor({ timeout: 180_000 });
    // A 16x16 gradient as the visitor's init image.
    const png = await gradientPng(page, 16, '#e82', '#2a6');
    const input = await artifactPath('amused-init.png');
    writeFileSync(input, png);
    await page.setInputFiles('#init-image', input);
    await page.locator('#init-area').waitFor({ state: 'visible' });
    // Brush down the left side of the mask canvas with the widest brush.
    await page.fill('#brush', '64');
    await page.locator('#mask-canvas').scrollIntoViewIfNeeded();
    const box = await page.locator('#mask-canvas').boundingBox();
    await page.mouse.move(box.x + box.width * 0.15, box.y + 1);
    await page.mouse.down();
    for (let y = 0; y <= 8; y++) await page.mouse.move(box.x + box.width * 0.15, box.y + (box.height * y) / 8 - (y === 8 ? 1 : 0));
    await page.mouse.up();
    // The mask the page will send, as a PNG for the CLI (white = repaint).
    const { maskPng, painted } = await page.evaluate(async () => {
      const m = document.getElementById('mask-canvas');
      const a = m.getContext('2d').getImageData(0, 0, m.width, m.height).data;
      const c = new OffscreenCanvas(m.width, m.height);
      const g = c.getContext('2d');
      const img = g.createImageData(m.width, m.height);
      let painted = 0;
      for (let p = 0; p < m.width * m.height; p++) {
        const v = a[p * 4 + 3] > 0 ? 255 : 0;
        painted += v ? 1 : 0;
        img.data.set([v, v, v, 255], p * 4);
      }
      g.putImageData(img, 0, 0);
      return { maskPng: Array.from(new Uint8Array(await (await c.convertToBlob({ type: 'image/png' })).arrayBuffer())), painted };
    });
    assert.ok(painted >= 16 && painted <= 160, `the brush covers part of the 256 pixels (${painted})`);
    const mask = await artifactPath('amused-mask.png');
    writeFileSync(mask, Buffer.from(maskPng));
    const prompt = '一只戴墨镜的柴犬 😎';
    await page.fill('#prompt', prompt);
    await page.fill('#steps', '4');
    await page.fill('#seed', '5');
    const strength = await page.locator('#strength').inputValue();
    const guidance = await page.locator('#guidance').inputValue();
    await page.click('#generate');
    await page.locator('#canvas[data-state="done"], #canvas[data-state="error"]').waitFor({ timeout: 180_000 });
    assert.equal(await page.locator('#canvas').getAttribute('data-state'), 'done', await page.locator('#step-text').textContent());
    const got = await canvasPixels(page, 'canvas', 16, 16);
    const common = ['--model', AMUSED, '--prompt', prompt, '--steps', '4', '--guidance', guidance, '--seed', '5', '--backend', 'cpu'];
    const want = await pngPixels(page, await cliImage('amused-inpaint', [...common, '--init-image', input, '--strength', strength, '--mask', mask]));
    const diff = maxDiff(got, want);
    console.log(`# amused inpainting: ${painted} of 256 pixels brushed; max |page - CLI| = ${diff} of 255`);
    assert.ok(diff <= 2, `page image differs from the CLI's by ${diff} levels`);
    // The init image mattered: the same prompt and seed without it draw something else.
    const plain = await pngPixels(page, await cliImage('amused-plain', common));
    assert.ok(maxDiff(got, plain) > 8, 'the repaint keeps the unbrushed tokens of the init image');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
