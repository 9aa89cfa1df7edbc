// The embeddable widget: a page on another origin adds one script and one tag, and gets a
// working generator (framed from Easel's origin, with the model it names).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../../scripts/serve.mjs';
import { ROOT, launch, artifactPath } from './browser.mjs';

let easel;
let site;

before(async () => {
  easel = await startServer({ root: ROOT, port: 0 });
  // Someone else's site: one script tag and one element, nothing else from Easel.
  const html = `<!doctype html><title>My blog</title><h1>Make a picture</h1>
<script type="module" src="${easel.url}www/widget.js"></script>
<easel-generator model="${easel.url}www/models/sd-tiny/" backend="cpu" height="700"></easel-generator>`;
  site = await startServer({
    root: ROOT,
    port: 0,
    onRequest: (req, res, path) => {
      if (path !== '/') return false;
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(html);
      return true;
    },
  });
});

after(() => {
  easel?.server.close();
  site?.server.close();
});

test('one tag on another site embeds a working generator', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    await page.goto(site.url);
    const frameEl = page.locator('easel-generator iframe');
    await frameEl.waitFor();
    const src = new URL(await frameEl.getAttribute('src'));
    assert.equal(src.origin, new URL(easel.url).origin, 'the generator runs on Easel\'s origin');
    assert.equal(src.searchParams.get('model'), `${easel.url}www/models/sd-tiny/`);
    const frame = page.frameLocator('easel-generator iframe');
    await frame.locator('#generate:not([disabled])').waitFor({ timeout: 180_000 });
    assert.equal(await frame.locator('#diagnostics').isVisible(), false, 'embedded pages hide the diagnostics');
    await frame.locator('#prompt').fill('a lighthouse');
    await frame.locator('#steps').fill('2');
    await frame.locator('#generate').click();
    await frame.locator('#canvas[data-state="done"], #canvas[data-state="error"]').waitFor({ timeout: 180_000 });
    assert.equal(await frame.locator('#canvas').getAttribute('data-state'), 'done', await frame.locator('#step-text').textContent());
    assert.match(await frame.locator('#generate-note').textContent(), /on the CPU/);
    await page.screenshot({ path: await artifactPath('widget.png'), fullPage: true });
  } finally {
    await browser.close();
  }
});
