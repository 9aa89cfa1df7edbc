// Bad input in the page, as a visitor types it: each gets its sentence beside the Generate
// button (asserted word for word), and the page still generates afterwards.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../../scripts/serve.mjs';
import { ROOT, launch } from './browser.mjs';

let server;
let url;
before(async () => ({ server, url } = await startServer({ root: ROOT, port: 0 })));
after(() => server?.close());

const GOOD = { prompt: 'a fox', steps: '2', guidance: '7.5', width: '16', height: '16', batch: '1', seed: '42', strength: '0.8' };

/** Fills the form with GOOD overridden by `fields`, clicks Generate, and waits for the outcome. */
async function attempt(page, fields) {
  for (const [id, value] of Object.entries({ ...GOOD, ...fields })) await page.fill(`#${id}`, value);
  await page.evaluate(() => {
    document.getElementById('generate-note').textContent = '';
    document.getElementById('canvas').dataset.state = 'empty';
  });
  await page.click('#generate');
  await page.waitForFunction(
    () => document.getElementById('generate-note').textContent !== '' || ['done', 'error'].includes(document.getElementById('canvas').dataset.state),
    null,
    { timeout: 120_000 },
  );
  await page.locator('#generate:not([disabled])').waitFor({ timeout: 120_000 });
  return { note: await page.locator('#generate-note').textContent(), state: await page.locator('#canvas').getAttribute('data-state') };
}

test('every bad field gets its own sentence, and the page still generates', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    // The bundled random-weight sd-tiny: fast, and the messages below name its sizes.
    await page.goto(`${url}?backend=cpu&model=www/models/sd-tiny/`);
    await page.locator('#generate:not([disabled])').waitFor({ timeout: 180_000 });
    const cases = [
      [{ seed: '-1' }, 'Seed must be a whole number from 0 to 9007199254740991.'],
      [{ seed: '1.5' }, 'Seed must be a whole number from 0 to 9007199254740991.'],
      [{ seed: '9007199254740993' }, 'Seed must be at most 9007199254740991 (2^53 - 1): larger numbers lose digits in JavaScript.'],
      [{ guidance: '' }, 'Guidance must be a number.'],
      [{ steps: '0' }, 'request: steps = 0 must be between 1 and 1000'],
      [{ steps: '10000' }, 'request: steps = 10000 must be between 1 and 1000'],
      [{ width: '12' }, 'request: size 12x16 must be positive multiples of 8'],
      [{ width: '0', height: '-8' }, 'height = -8 must be a whole number from 0 to 4294967295'],
      [{ batch: '1000' }, 'request: batch = 1000 must be between 1 and 16'],
      [{ batch: '0' }, 'request: batch = 0 must be between 1 and 16'],
      [{ guidance: '-1' }, 'request: guidance = -1 must be a number >= 0'],
    ];
    for (const [fields, want] of cases) {
      const { note, state } = await attempt(page, fields);
      assert.equal(note, want, JSON.stringify(fields));
      assert.notEqual(state, 'done', JSON.stringify(fields));
    }
    const big = await attempt(page, { width: '8192', height: '8192', guidance: '0' });
    assert.ok(big.note.startsWith("too large: 8192x8192 needs 8.0 GiB for the UNet's feed-forward activations (16777216 tokens x 128)"), big.note);
    assert.match(big.note, /the largest square size that fits is \d+x\d+$/);

    // Images from the file picker: a corrupt one is named; another size is resized and said so.
    const png = Buffer.from(
      await page.evaluate(async () => {
        const c = new OffscreenCanvas(40, 24);
        const g = c.getContext('2d');
        g.fillStyle = '#c84';
        g.fillRect(0, 0, 40, 24);
        return Array.from(new Uint8Array(await (await c.convertToBlob({ type: 'image/png' })).arrayBuffer()));
      }),
    );
    const corrupt = Buffer.concat([png.subarray(0, 16), Buffer.alloc(64, 7)]);
    await page.setInputFiles('#init-image', { name: 'corrupt.png', mimeType: 'image/png', buffer: corrupt });
    await page.waitForFunction(() => document.getElementById('generate-note').textContent.startsWith('corrupt.png is not an image this browser can open'));
    await page.setInputFiles('#init-image', { name: 'photo.png', mimeType: 'image/png', buffer: png });
    await page.locator('#init-area:not([hidden])').waitFor();
    const resized = await attempt(page, {});
    assert.deepEqual(resized, { note: 'The init image (40x24) was resized to 16x16.', state: 'done' });
    await page.click('#clear-init');

    // Far past the model's own size: said before the wait, and it still generates.
    assert.deepEqual(await attempt(page, { width: '128', height: '128', steps: '1' }), {
      note: "128x128 is 64 times the pixels of this model's own size (16x16): expect a long wait (the step line shows the time left; Cancel stops it) and a picture that repeats.",
      state: 'done',
    });

    // An empty prompt generates (unconditional, as diffusers does); a long one is cut and said so.
    assert.equal((await attempt(page, { prompt: '' })).state, 'done');
    const long = await attempt(page, { prompt: '一只戴墨镜的柴犬 '.repeat(40) });
    assert.equal(long.state, 'done');
    assert.equal(long.note, 'Note: the prompt was longer than 77 tokens and was cut.');

    // Switching the model while a generation runs stops the generation, loads the model,
    // and the next Generate works.
    for (const [id, value] of Object.entries({ ...GOOD, steps: '400' })) await page.fill(`#${id}`, value);
    await page.click('#generate');
    await page.waitForFunction(() => Number(document.getElementById('step-progress').value) >= 1, null, { timeout: 120_000 });
    await page.evaluate(() => {
      // Cleared first, so that 'Ready:' below is the new model's.
      document.getElementById('generate-note').textContent = '';
      document.getElementById('model').dispatchEvent(new Event('change'));
    });
    await page.locator('#canvas[data-state="cancelled"]').waitFor({ timeout: 120_000 });
    await page.locator('#generate:not([disabled])').waitFor({ timeout: 120_000 });
    await page.waitForFunction(() => document.getElementById('generate-note').textContent.startsWith('Ready:'), null, { timeout: 120_000 });
    assert.equal((await attempt(page, {})).state, 'done');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
