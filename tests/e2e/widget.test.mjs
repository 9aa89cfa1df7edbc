// The embeddable widget as site owners use it: a page on another origin adds one script and
// one tag and gets a working generator (framed from Easel's origin), drives it with
// attributes, methods and events, under a strict Content-Security-Policy, and keeps control
// of where models come from.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../../scripts/serve.mjs';
import { ROOT, launch, artifactPath } from './browser.mjs';
import { pngText } from './png-text.mjs';

let ownCsp = null; // the policy Easel's page is served with (the strict-CSP test sets it)
let easel; // Easel's own origin: the page, the widget script, the bundled models
let other; // a third origin: models the host did not allow, and a hostile frame
const shardRequests = [];
const otherRequests = []; // paths asked of the third origin
const sites = [];

/** The CSP README's "Embed it" section gives for a host page and for Easel's own page. */
function documentedPolicies() {
  const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const at = text.indexOf('\n## Embed it\n');
  const host = /Host page: `([^`]+)`/.exec(text.slice(at))[1];
  const own = /Easel's page: `([^`]+)`/.exec(text.slice(at))[1];
  return { host: (origin) => host.replaceAll('https://easel.example', origin), own };
}

before(async () => {
  easel = await startServer({
    root: ROOT,
    port: 0,
    onRequest: (req, res, path) => {
      if (/\/shard-\d+\.bin$/.test(path)) shardRequests.push(path);
      // Easel's page runs under the policy README documents for it.
      if (path === '/index.html' && ownCsp) res.setHeader('Content-Security-Policy', ownCsp);
      return false;
    },
  });
  other = await startServer({ root: ROOT, port: 0, onRequest: (req, res, path) => (otherRequests.push(path), false) });
});

after(() => {
  easel?.server.close();
  other?.server.close();
  for (const s of sites) s.server.close();
});

/** Someone else's site serving `html` at / (with `csp`, if given), on an origin of its own. */
async function site(html, csp = null) {
  const s = await startServer({
    root: ROOT,
    port: 0,
    onRequest: (req, res, path) => {
      if (path !== '/') return false;
      res.writeHead(200, { 'content-type': 'text/html', ...(csp ? { 'content-security-policy': csp } : {}) });
      res.end(html);
      return true;
    },
  });
  sites.push(s);
  return s.url;
}

const origin = (url) => new URL(url).origin;

/** The host page's record of the element's events, gathered from the start. */
const RECORDER = `<script type="module" src="/tests/e2e/widget-recorder.js"></script>`;

const eventsOf = (page, name) => page.evaluate((n) => window.events.filter((e) => e.name === n), name);

test('one tag on another site embeds a working generator', async () => {
  const url = await site(`<!doctype html><title>My blog</title><h1>Make a picture</h1>
<script type="module" src="${easel.url}www/widget.js"></script>
<easel-generator model="${easel.url}www/models/sd-tiny/" backend="cpu" precision="fast" height="700"></easel-generator>`);
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    await page.goto(url);
    const frameEl = page.locator('easel-generator iframe');
    await frameEl.waitFor();
    const src = new URL(await frameEl.getAttribute('src'));
    assert.equal(src.origin, origin(easel.url), "the generator runs on Easel's origin");
    assert.equal(src.searchParams.get('model'), `${easel.url}www/models/sd-tiny/`);
    assert.equal(src.searchParams.get('precision'), 'fast', 'the precision attribute reaches the page');
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

test("README's 'Embed it' snippet, pasted into another site's page, draws its prompt", async () => {
  const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const snippet = /```html\n([\s\S]*?)```/.exec(text.slice(text.indexOf('\n## Embed it\n')))[1].replaceAll('https://easel.example/', easel.url);
  const url = await site(`<!doctype html>${RECORDER}\n${snippet}`);
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(url);
    await page.waitForFunction(() => window.events?.some((e) => e.name === 'easel-ready' || e.name === 'easel-error'), null, { timeout: 180_000 });
    const frame = page.frameLocator('easel-generator iframe');
    await frame.locator('#generate:not([disabled])').waitFor({ timeout: 60_000 });
    await frame.locator('#generate').click();
    await page.waitForFunction(() => window.events.some((e) => e.name === 'easel-image' || e.name === 'easel-error'), null, { timeout: 60_000 });
    const [image] = await eventsOf(page, 'easel-image');
    assert.ok(image, JSON.stringify(await eventsOf(page, 'easel-error')));
    assert.equal(pngText(Buffer.from(image.detail.png)).prompt, 'red heart');
  } finally {
    await browser.close();
  }
});

test('the host drives the widget by attributes, generate() and events; its CSS stays outside', async () => {
  // Host CSS that would wreck the generator if it reached inside.
  const url = await site(`<!doctype html><title>Shop</title>
<style>* { color: rgb(255, 0, 0) !important; font-family: monospace !important; } button, canvas { display: none !important; }</style>
${RECORDER}
<script type="module" src="${easel.url}www/widget.js"></script>
<easel-generator id="w" model="emoji-dcgan" prompt="red heart" controls="prompt,seed" theme="dark" height="600"></easel-generator>`);
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
    await page.goto(url);
    await page.waitForFunction(() => window.events?.some((e) => e.name === 'easel-ready' || e.name === 'easel-error'), null, { timeout: 180_000 });
    const [ready] = await eventsOf(page, 'easel-ready');
    assert.ok(ready, JSON.stringify(await page.evaluate(() => window.events)));
    assert.equal(ready.detail.model.name, 'emoji-dcgan');
    const frame = page.frameLocator('easel-generator iframe');
    // Only the controls the host named, in the dark theme, untouched by the host's CSS.
    assert.equal(await frame.locator('#prompt').inputValue(), 'red heart');
    assert.equal(await frame.locator('#prompt').isVisible(), true);
    assert.equal(await frame.locator('#seed').isVisible(), true);
    for (const id of ['#steps', '#width', '#model', '#negative-prompt', '#batch']) assert.equal(await frame.locator(id).isVisible(), false, `${id} is hidden`);
    assert.equal(await frame.locator('#generate').isVisible(), true, "the host's `button { display: none }` does not reach the frame");
    const style = await frame.locator('body').evaluate((b) => ({ bg: getComputedStyle(document.documentElement).backgroundColor, color: getComputedStyle(b).color }));
    assert.equal(style.bg, 'rgb(22, 22, 24)', 'dark theme');
    assert.notEqual(style.color, 'rgb(255, 0, 0)');

    const result = await page.evaluate(async () => {
      const r = await document.getElementById('w').generate({ seed: 7 });
      return { width: r.width, seed: r.seed, params: r.params, png: Array.from(new Uint8Array(await r.blob.arrayBuffer())) };
    });
    assert.equal(result.width, 32);
    const text = pngText(Buffer.from(result.png));
    assert.equal(text.prompt, 'red heart');
    assert.equal(text.seed, '7');
    await page.waitForFunction(() => window.events.some((e) => e.name === 'easel-image'));
    const [image] = await eventsOf(page, 'easel-image');
    assert.equal(image.detail.params.seed, 7);
    assert.ok((await eventsOf(page, 'easel-progress')).some((e) => e.detail.stage === 'step'), 'progress events');
    // A generation the visitor starts inside the frame reaches the host as an event too.
    await frame.locator('#seed').fill('8');
    await frame.locator('#generate').click();
    await page.waitForFunction(() => window.events.filter((e) => e.name === 'easel-image').length === 2, null, { timeout: 60_000 });
    assert.equal((await eventsOf(page, 'easel-image'))[1].detail.params.seed, 8);
    assert.deepEqual(await eventsOf(page, 'easel-error'), []);
  } finally {
    await browser.close();
  }
});

test('a model from an origin the host did not allow is refused with origin-not-allowed, and nothing is fetched from it', async () => {
  const url = await site(`<!doctype html>${RECORDER}
<script type="module" src="${easel.url}www/widget.js"></script>
<easel-generator id="a" model="${other.url}www/models/ddpm-tiny/"></easel-generator>
<easel-generator id="b" model="${other.url}www/models/emoji-dcgan/" allowed-models="${origin(other.url)}"></easel-generator>`);
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(url);
    await page.waitForFunction(() => window.events?.some((e) => e.target === 'a' && e.name === 'easel-error') && window.events.some((e) => e.target === 'b' && e.name === 'easel-ready'), null, { timeout: 180_000 });
    const [refused] = (await eventsOf(page, 'easel-error')).filter((e) => e.target === 'a');
    assert.equal(refused.detail.code, 'origin-not-allowed');
    assert.match(refused.detail.message, new RegExp(`not from ${origin(other.url)}`));
    assert.deepEqual(otherRequests.filter((p) => p.includes('ddpm-tiny')), [], 'nothing was fetched for the refused model');
    assert.ok(otherRequests.some((p) => p.includes('emoji-dcgan/shard-')), 'the widget that allows the origin loaded from it');
  } finally {
    await browser.close();
  }
});

test('under the documented strict CSP, two widgets on one page download the model once', async () => {
  shardRequests.length = 0;
  const { host, own } = documentedPolicies();
  ownCsp = own;
  const url = await site(
    `<!doctype html><script type="module" src="${easel.url}www/widget.js"></script>
<easel-generator id="one" model="emoji-dcgan" controls="button"></easel-generator>
<easel-generator id="two" model="emoji-dcgan" controls="button"></easel-generator>
<script type="module" src="${easel.url}tests/e2e/widget-recorder.js"></script>`,
    host(origin(easel.url)),
  );
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const violations = [];
    page.on('console', (m) => /Content Security Policy|Refused to/.test(m.text()) && violations.push(m.text()));
    await page.goto(url);
    await page.waitForFunction(() => window.events?.filter((e) => e.name === 'easel-ready').length === 2 || window.events?.some((e) => e.name === 'easel-error'), null, { timeout: 180_000 });
    assert.deepEqual(await eventsOf(page, 'easel-error'), []);
    const shards = JSON.parse(readFileSync(join(ROOT, 'www/models/emoji-dcgan/manifest.json'), 'utf8')).shards.length;
    assert.equal(shardRequests.length, shards, `each shard fetched once for two widgets: ${shardRequests.join(', ')}`);
    const detail = await page.evaluate(async () => {
      const r = await document.getElementById('two').generate({ prompt: 'grinning face', seed: 3 });
      return { width: r.width, type: r.blob.type };
    });
    assert.deepEqual(detail, { width: 32, type: 'image/png' });
    // In "button" mode the frame shows the Generate button and the picture only.
    const frame = page.frameLocator('#one >> iframe');
    assert.equal(await frame.locator('#prompt').isVisible(), false);
    assert.equal(await frame.locator('#generate').isVisible(), true);
    assert.deepEqual(violations, []);
  } finally {
    await browser.close();
  }
});

test("the frame answers only its parent, and the element only its frame", async () => {
  // A hostile frame on the same host page tries to drive the widget and to forge its events.
  const url = await site(`<!doctype html>${RECORDER}
<script type="module" src="${easel.url}www/widget.js"></script>
<easel-generator id="w" model="emoji-dcgan"></easel-generator>
<iframe id="evil" src="${other.url}tests/e2e/widget-evil.html"></iframe>`);
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(url);
    await page.waitForFunction(() => window.events?.some((e) => e.name === 'easel-ready'), null, { timeout: 180_000 });
    const evil = page.frames().find((f) => f.url().includes('widget-evil'));
    await evil.evaluate(() => window.attack());
    await page.waitForTimeout(3000);
    assert.deepEqual(await eventsOf(page, 'easel-image'), [], 'no generation from the hostile frame, no forged image event');
    assert.deepEqual(await eventsOf(page, 'easel-error'), [], 'no forged error event');
    assert.equal(await page.frameLocator('easel-generator iframe').locator('#canvas').getAttribute('data-state'), 'empty');
  } finally {
    await browser.close();
  }
});
