// Morphs and walks of a Stable Diffusion model in the page (bundled sd-tiny on the CPU
// backend): a prompt morph from a Chinese-and-emoji prompt to another, and a seed walk, each
// in 3 frames. The end frames equal Generate's images for the two ends, the middle frame is
// neither; every frame equals `easel morph`'s frame-00N.png; the ZIP of frames holds those
// PNGs with their settings, and the APNG has every frame.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { startServer } from '../../scripts/serve.mjs';
import { ROOT, pageArithmetic, launch, canvasPixels, pngPixels, maxDiff, runCli } from './browser.mjs';
import { pngText } from './png-text.mjs';

const FORM = { prompt: '一只戴墨镜的柴犬 😎', toPrompt: 'a red fox in the snow', seed: 5, toSeed: 6, steps: 2, size: 16 };

let server;
let url;
before(async () => ({ server, url } = await startServer({ root: ROOT, port: 0 })));
after(() => server?.close());

/** The entries of a ZIP whose files are stored (method 0), read from its local headers. */
function unzipStored(buf) {
  const files = [];
  for (let at = 0; buf.readUInt32LE(at) === 0x04034b50; ) {
    assert.equal(buf.readUInt16LE(at + 8), 0, 'stored');
    const size = buf.readUInt32LE(at + 18);
    const nameLen = buf.readUInt16LE(at + 26);
    const extra = buf.readUInt16LE(at + 28);
    const name = buf.toString('utf8', at + 30, at + 30 + nameLen);
    const start = at + 30 + nameLen + extra;
    files.push({ name, bytes: buf.subarray(start, start + size), crc: buf.readUInt32LE(at + 14) });
    at = start + size;
  }
  return files;
}

/** Every frame of an animated image, decoded in the page by WebCodecs' ImageDecoder. */
function decodeAll(page, bytes, type) {
  return page.evaluate(async ([b64, type]) => {
    const dec = new ImageDecoder({ data: Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)), type });
    await dec.tracks.ready;
    const frames = [];
    for (let i = 0; i < dec.tracks.selectedTrack.frameCount; i++) {
      const { image } = await dec.decode({ frameIndex: i });
      const c = new OffscreenCanvas(image.displayWidth, image.displayHeight);
      c.getContext('2d').drawImage(image, 0, 0);
      frames.push(Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data));
      image.close();
    }
    return frames;
  }, [Buffer.from(bytes).toString('base64'), type]);
}

/** The CLI's frames for the same morph or walk, computed with `page`'s arithmetic. */
async function cliFrames(page, extra) {
  const out = mkdtempSync(join(tmpdir(), 'easel-page-morph-'));
  runCli(['morph', '--model', 'www/models/sd-tiny', '--prompt', FORM.prompt, '--seed', String(FORM.seed), '--frames', '3', '--steps', String(FORM.steps),
    '--backend', 'cpu', ...extra, '--out', out], await pageArithmetic(page));
  return [0, 1, 2].map((i) => readFileSync(join(out, `frame-00${i}.png`)));
}

/** Opens the page on `model` (CPU backend) and waits until it can generate. */
async function openModel(browser, model) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${url}?backend=cpu&model=${model}`);
  await page.locator('#generate:not([disabled])').waitFor({ timeout: 120_000 });
  assert.equal(await page.locator('#walk-panel').isVisible(), true);
  return { page, errors };
}

/** One Generate of `prompt` (at `seed` when given): the canvas's size x size pixels. */
async function generateImage(page, size, prompt, seed = null) {
  await page.fill('#prompt', prompt);
  if (seed !== null) await page.fill('#seed', String(seed));
  await page.click('#generate');
  await page.locator('#canvas[data-state="done"], #canvas[data-state="error"]').waitFor({ timeout: 120_000 });
  assert.equal(await page.locator('#canvas').getAttribute('data-state'), 'done', await page.locator('#step-text').textContent());
  const p = await canvasPixels(page, 'canvas', size, size);
  await page.evaluate(() => (document.getElementById('canvas').dataset.state = 'empty'));
  return p;
}

/** Frame `i` of the walk strip, shown on the canvas. */
async function stripFrame(page, size, i) {
  await page.click(`#walk-strip canvas:nth-child(${i + 1})`);
  return canvasPixels(page, 'canvas', size, size);
}

test('an SD prompt morph and seed walk in the page end on Generate\'s images and equal easel morph\'s frames', async () => {
  const browser = await launch();
  try {
    const { page, errors } = await openModel(browser, 'www/models/sd-tiny/');
    await page.fill('#steps', String(FORM.steps));
    const toPromptImage = await generateImage(page, FORM.size, FORM.toPrompt, FORM.seed);
    const a = await generateImage(page, FORM.size, FORM.prompt, FORM.seed);
    const toSeedImage = await generateImage(page, FORM.size, FORM.prompt, FORM.toSeed);
    await page.fill('#seed', String(FORM.seed));
    const frame = (i) => stripFrame(page, FORM.size, i);
    const fetchBytes = async (id) => Buffer.from(await page.evaluate(async (id) => Array.from(new Uint8Array(await (await fetch(document.getElementById(id).href)).arrayBuffer())), id));

    for (const kind of ['morph', 'walk']) {
      await page.fill('#walk-to-prompt', kind === 'morph' ? FORM.toPrompt : '');
      await page.fill('#walk-to-seed', String(FORM.toSeed));
      await page.fill('#walk-frames', '3');
      await page.click('#walk-start');
      await page.locator('#generate-note', { hasText: `${kind === 'morph' ? 'Morph' : 'Walk'} done: 3 frames` }).waitFor({ timeout: 120_000 });
      const frames = [await frame(0), await frame(1), await frame(2)];
      const end = kind === 'morph' ? toPromptImage : toSeedImage;
      assert.equal(maxDiff(frames[0], a), 0, `${kind}: the first frame is Generate's image`);
      assert.equal(maxDiff(frames[2], end), 0, `${kind}: the last frame is the other end's image`);
      assert.ok(maxDiff(frames[1], a) > 0 && maxDiff(frames[1], end) > 0, `${kind}: the middle frame is neither end`);
      const cli = await cliFrames(page, kind === 'morph' ? ['--to-prompt', FORM.toPrompt] : ['--to-seed', String(FORM.toSeed)]);
      for (let i = 0; i < 3; i++) {
        const d = maxDiff(frames[i], await pngPixels(page, cli[i]));
        console.log(`# ${kind} frame ${i}: max |page - easel morph| = ${d} of 255`);
        assert.equal(d, 0, `${kind} frame ${i} differs from the CLI's`);
      }
      // The frames' ZIP: frame-000.png ... with each frame's settings; the APNG: 3 frames.
      await page.locator('#walk-zip:not([hidden])').waitFor({ timeout: 30_000 });
      const files = unzipStored(await fetchBytes('walk-zip'));
      assert.deepEqual(files.map((f) => f.name), ['frame-000.png', 'frame-001.png', 'frame-002.png']);
      for (const [i, f] of files.entries()) {
        assert.equal(f.crc, crc32(f.bytes), `zip ${f.name}: CRC-32`);
        assert.equal(maxDiff(await pngPixels(page, f.bytes), frames[i]), 0, `zip ${f.name}`);
      }
      assert.equal(pngText(Buffer.from(files[0].bytes)).prompt, FORM.prompt);
      assert.equal(pngText(Buffer.from(files[2].bytes)).seed, String(FORM.seed));
      // The GIF, decoded by the browser's own decoder (WebCodecs ImageDecoder): every frame,
      // exact (a 16x16 frame has at most 256 colours, so its table holds them all).
      await page.locator('#walk-gif:not([hidden])').waitFor({ timeout: 30_000 });
      const gifFrames = await decodeAll(page, await fetchBytes('walk-gif'), 'image/gif');
      assert.equal(gifFrames.length, 3);
      for (let i = 0; i < 3; i++) assert.equal(maxDiff(gifFrames[i], frames[i]), 0, `GIF frame ${i}`);
      const apng = await fetchBytes('walk-download');
      const apngFrames = await decodeAll(page, apng, 'image/png');
      for (let i = 0; i < 3; i++) assert.equal(maxDiff(apngFrames[i], frames[i]), 0, `APNG frame ${i}`);
      assert.equal(apng.toString('latin1').split('fcTL').length - 1, 3);
      assert.match(pngText(apng).animation, kind === 'morph' ? /^morph from prompt ".+" at seed 5 to prompt "a red fox in the snow", 3 frames/ : /^walk from prompt ".+" at seed 5 to seed 6, 3 frames/);
    }
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test('the bundled aMUSEd morphs between prompts in the page (it has no noise to walk)', async () => {
  const browser = await launch();
  try {
    const { page, errors } = await openModel(browser, 'www/models/emoji-amused/');
    assert.equal(await page.locator('#walk-to-seed').isVisible(), false, 'no To seed for a model without starting noise');
    const size = Number(await page.inputValue('#width'));
    await page.fill('#steps', '4');
    const [a, b] = [await generateImage(page, size, 'red heart, twemoji style'), await generateImage(page, size, 'grinning face, noto style')];
    await page.fill('#prompt', 'red heart, twemoji style');
    await page.click('#walk-start');
    assert.equal(await page.textContent('#generate-note'), 'This model has no starting noise to walk: give a To prompt to morph to.');
    await page.fill('#walk-to-prompt', 'grinning face, noto style');
    await page.fill('#walk-frames', '3');
    await page.click('#walk-start');
    await page.locator('#generate-note', { hasText: 'Morph done: 3 frames' }).waitFor({ timeout: 120_000 });
    const frames = [await stripFrame(page, size, 0), await stripFrame(page, size, 1), await stripFrame(page, size, 2)];
    assert.equal(maxDiff(frames[0], a), 0, 'the morph starts on the prompt');
    assert.equal(maxDiff(frames[2], b), 0, 'the morph ends on the other prompt');
    assert.ok(maxDiff(frames[1], a) > 0 && maxDiff(frames[1], b) > 0, 'the middle frame is neither');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

// A GIF whose LZW stream fills the 4096-code table many times over (256x256 frames of 256
// scattered colours): the browser's own decoder reads every frame back exactly.
test('a large GIF decodes in the browser to its frames exactly', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`${url}tests/e2e/api-harness.html`);
    const r = await page.evaluate(async () => {
      const { Easel } = await import('/www/easel.js');
      const easel = await Easel.create({ backend: 'cpu' });
      const [w, h] = [256, 256];
      // 37, 91 and 173 are odd: 256 distinct colours.
      const palette = Array.from({ length: 256 }, (_, i) => [(i * 37) & 255, (i * 91) & 255, (i * 173) & 255]);
      let x = 1;
      const rand = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 16) & 255;
      const frames = [0, 1].map(() => {
        const d = new Uint8ClampedArray(w * h * 4);
        for (let p = 0; p < w * h; p++) d.set([...palette[rand()], 255], p * 4);
        return new ImageData(d, w, h);
      });
      const gif = await easel.encodeGif(frames, { delayMs: 100, comment: 'noise' });
      const dec = new ImageDecoder({ data: new Uint8Array(await gif.arrayBuffer()), type: 'image/gif' });
      await dec.tracks.ready;
      const diffs = [];
      for (let i = 0; i < dec.tracks.selectedTrack.frameCount; i++) {
        const { image } = await dec.decode({ frameIndex: i });
        const c = new OffscreenCanvas(w, h);
        c.getContext('2d').drawImage(image, 0, 0);
        const got = c.getContext('2d').getImageData(0, 0, w, h).data;
        diffs.push(got.reduce((m, v, j) => Math.max(m, Math.abs(v - frames[i].data[j])), 0));
        image.close();
      }
      easel.dispose();
      return { diffs, bytes: gif.size };
    });
    console.log(`# 2 frames of 256x256 in 256 colours: ${r.bytes} bytes of GIF`);
    assert.deepEqual(r.diffs, [0, 0], 'every decoded frame equals its source');
  } finally {
    await browser.close();
  }
});
