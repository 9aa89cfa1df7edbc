// The browser model loader against a local server: a model converted by the CLI loads with
// progress, the second load comes from Cache Storage without fetching shards, and every bad
// input gives its clear error with nothing corrupt left in the cache.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { checksumHex } from '../../www/checksum.js';
import { startServer } from '../../scripts/serve.mjs';
import { ROOT, launch, artifactPath, runCli } from './browser.mjs';

const MODEL = '/models/sd2-tiny/';
let modelDir;
let manifest;
let server;
let url;
let browser;
const hits = new Map(); // path -> request count
let fault = null; // (path, req, res) -> boolean
let blockReaders = false; // serve no shard-reader.js (a site that blocks the workers)

before(async () => {
  modelDir = mkdtempSync(join(tmpdir(), 'easel-loader-'));
  // The CLI converts the fixture repository into 1 MiB shards (several of them).
  runCli(['convert', join(ROOT, 'tests/fixtures/sd2-tiny'), '--out', modelDir, '--quant', 'f32', '--shard-mb', '1']);
  manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8'));
  assert.ok(manifest.shards.length >= 3, 'the test needs several shards');
  ({ server, url } = await startServer({
    root: ROOT,
    port: 0,
    onRequest: async (req, res, path) => {
      if (path === '/www/shard-reader.js' && blockReaders) {
        res.writeHead(404);
        res.end();
        return true;
      }
      if (!path.startsWith(MODEL)) return false;
      hits.set(path, (hits.get(path) ?? 0) + 1);
      if (fault && fault(path, req, res)) return true;
      const bytes = readFileSync(join(modelDir, path.slice(MODEL.length)));
      res.writeHead(200, { 'Content-Length': bytes.length, 'Content-Type': 'application/octet-stream' });
      res.end(bytes);
      return true;
    },
  }));
  browser = await launch();
});

after(async () => {
  await browser?.close();
  server?.close();
});

const shardHits = () => [...hits].filter(([p]) => p.includes('shard-')).reduce((a, [, n]) => a + n, 0);

async function harness(context) {
  const page = await context.newPage();
  await page.goto(`${url}tests/e2e/loader-harness.html`);
  await page.waitForFunction(() => window.ready === true);
  return page;
}

async function load(page) {
  return page.evaluate(async (base) => {
    const events = [];
    try {
      const start = performance.now();
      const model = await window.loader.loadModel(base, { onProgress: (p) => events.push(p) });
      // Read (and re-verify) every shard, as the engine will.
      for (let i = 0; i < model.manifest.shards.length; i++) await model.shard(i);
      const ms = performance.now() - start;
      const first = await model.shard(0);
      const digest = Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', first)), (b) => b.toString(16).padStart(2, '0')).join('');
      return { ok: true, events, digest, ms };
    } catch (e) {
      return { ok: false, events, error: e.message, name: e.constructor.name };
    }
  }, url + MODEL.slice(1));
}

test('a converted model loads with progress, then from the cache with no shard fetch', async () => {
  hits.clear();
  fault = null;
  const context = await browser.newContext();
  try {
    const page = await harness(context);
    const first = await load(page);
    assert.ok(first.ok, first.error);
    assert.equal(shardHits(), manifest.shards.length);
    const total = manifest.shards.reduce((a, s) => a + s.size, 0);
    const last = first.events.at(-1);
    assert.equal(last.bytesDone, total);
    assert.ok(last.shards.every((s) => s.state === 'done'));
    // Progress only grows.
    for (let i = 1; i < first.events.length; i++) assert.ok(first.events[i].bytesDone >= first.events[i - 1].bytesDone);
    assert.equal(first.digest, manifest.shards[0].sha256);

    hits.clear();
    const second = await load(await harness(context));
    assert.ok(second.ok, second.error);
    assert.equal(shardHits(), 0, 'the second load must not fetch shards');
    assert.equal(second.events.at(-1).fromCache, total);
    console.log(`loaded ${(total / 1e6).toFixed(2)} MB: network ${first.ms.toFixed(0)} ms, cache ${second.ms.toFixed(0)} ms (${((second.ms / total) * 1e8).toFixed(0)} ms per 100 MB from cache, checksum re-checked)`);
    // Every shard is cached with the XXH32 of the bytes the server sent (checksum.test.mjs
    // checks checksumHex against libxxhash).
    const stored = await storedChecksums(page);
    for (const s of manifest.shards) assert.equal(stored[s.file], checksumHex(readFileSync(join(modelDir, s.file))), s.file);

    const listed = await page.evaluate(() => window.loader.listCachedModels());
    assert.equal(listed.length, 1);
    // The tokenizer files travel with the shards and are cached with them.
    const files = (manifest.files ?? []).reduce((a, f) => a + f.size, 0);
    assert.equal(listed[0].bytes, total + files);
    await page.evaluate((base) => window.loader.deleteCachedModel(base), url + MODEL.slice(1));
    assert.deepEqual(await page.evaluate(() => window.loader.listCachedModels()), []);
  } finally {
    await context.close();
  }
});

/** file -> the checksum header of its cache entry (null where it has none). */
async function storedChecksums(page) {
  return page.evaluate(async (base) => {
    const cache = await caches.open('easel-models-v1');
    const out = {};
    for (const req of await cache.keys()) if (req.url.startsWith(base)) out[req.url.slice(base.length)] = (await cache.match(req)).headers.get('x-easel-xxh32');
    return out;
  }, url + MODEL.slice(1));
}

/**
 * Rewrites cached entry `file` with one bit flipped halfway in (`flip`) and/or without its
 * checksum header (`legacy`: as an Easel before the checksum cached it), same length.
 */
async function rewriteCached(page, file, { flip, legacy }) {
  await page.evaluate(
    async ({ u, flip, legacy }) => {
      const cache = await caches.open('easel-models-v1');
      const hit = await cache.match(u);
      const bytes = new Uint8Array(await hit.arrayBuffer());
      if (flip) bytes[bytes.length >> 1] ^= 0x40;
      const headers = new Headers(hit.headers);
      if (legacy) headers.delete('x-easel-xxh32');
      await cache.put(u, new Response(bytes, { headers }));
    },
    { u: url + MODEL.slice(1) + file, flip, legacy },
  );
}

for (const legacy of [false, true]) {
  const kind = legacy ? 'cached without a checksum (an earlier Easel), checked by sha256' : 'its checksum kept';
  test(`a cached shard damaged on disk (${kind}) is refused by name, dropped, and fetched again on the next load`, async () => {
    // The loader's check on reading a shard back is the only check of a cached shard: the
    // engine takes it with addVerifiedShard, checking only its size.
    await damagedShardIsRefetched(legacy);
  });
}

/** Runs `body(page)` in a fresh context, on a page that has loaded (and cached) the model. */
async function afterFirstLoad(body) {
  hits.clear();
  fault = null;
  const context = await browser.newContext();
  try {
    const page = await harness(context);
    const first = await load(page);
    assert.ok(first.ok, first.error);
    await body(page);
  } finally {
    await context.close();
  }
}

async function damagedShardIsRefetched(legacy) {
  await afterFirstLoad(async (page) => {
    const bad = manifest.shards[1].file;
    // Same length, one byte flipped, the headers as they were: only the bytes can tell.
    await rewriteCached(page, bad, { flip: true, legacy });
    hits.clear();
    const damaged = await load(page);
    assert.equal(damaged.ok, false);
    assert.equal(damaged.error, `cached shard ${bad} was damaged and has been removed; reload to fetch it again.`);
    assert.equal(shardHits(), 0, 'finding the damage fetches nothing');
    const cached = await page.evaluate(async () => (await (await caches.open('easel-models-v1')).keys()).map((r) => r.url));
    assert.ok(!cached.some((u) => u.endsWith(bad)), 'the damaged shard must be dropped from the cache');

    hits.clear();
    const again = await load(page);
    assert.ok(again.ok, again.error);
    assert.deepEqual([...hits.keys()].filter((p) => p.includes('shard-')), [MODEL + bad], 'only the dropped shard is fetched again');
  });
}

test('a shard an earlier Easel cached without a checksum loads by its sha256 and is cached again with its checksum', async () => {
  await afterFirstLoad(async (page) => {
    const old = manifest.shards[2].file;
    await rewriteCached(page, old, { flip: false, legacy: true });
    assert.equal((await storedChecksums(page))[old], null);
    hits.clear();
    const r = await load(page);
    assert.ok(r.ok, r.error);
    assert.equal(shardHits(), 0, 'an intact shard is not fetched again');
    assert.equal((await storedChecksums(page))[old], checksumHex(readFileSync(join(modelDir, old))));
  });
});

test('where the shard reader workers cannot start, cached shards are read and verified on the calling thread', async () => {
  hits.clear();
  fault = null;
  blockReaders = true;
  const context = await browser.newContext();
  try {
    const page = await harness(context);
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const first = await load(page);
    assert.ok(first.ok, first.error);
    assert.equal(first.digest, manifest.shards[0].sha256);
    assert.deepEqual(errors, []);
  } finally {
    blockReaders = false;
    await context.close();
  }
});

test('a corrupt shard is fetched twice, refused by name, and never cached', async () => {
  hits.clear();
  const bad = manifest.shards[1].file;
  fault = (path, req, res) => {
    if (!path.endsWith(bad)) return false;
    const bytes = readFileSync(join(modelDir, bad));
    bytes[100] ^= 0x40;
    res.writeHead(200, { 'Content-Length': bytes.length });
    res.end(bytes);
    return true;
  };
  const context = await browser.newContext();
  try {
    const page = await harness(context);
    const r = await load(page);
    assert.equal(r.ok, false);
    assert.match(r.error, new RegExp(`shard ${bad} is corrupt on the server \\(sha256 mismatch, twice\\); it was not stored`));
    assert.equal(hits.get(MODEL + bad), 2);
    const cachedUrls = await page.evaluate(async () => (await (await caches.open('easel-models-v1')).keys()).map((r) => r.url));
    assert.ok(!cachedUrls.some((u) => u.endsWith(bad)), 'the corrupt shard must not be cached');
  } finally {
    fault = null;
    await context.close();
  }
});

test('a missing shard (404) and a truncated one are reported by name', async () => {
  const [gone, short] = [manifest.shards[2].file, manifest.shards[0].file];
  for (const [file, handler, pattern] of [
    [gone, (res) => res.writeHead(404).end('not found'), /HTTP 404/],
    [short, (res, bytes) => res.writeHead(200, { 'Content-Length': bytes.length - 7 }).end(bytes.subarray(0, bytes.length - 7)), /stopped after \d+ of \d+ bytes/],
  ]) {
    fault = (path, req, res) => path.endsWith(file) && (handler(res, readFileSync(join(modelDir, file))), true);
    const context = await browser.newContext();
    try {
      const r = await load(await harness(context));
      assert.equal(r.ok, false);
      assert.match(r.error, new RegExp(`shard ${file}: `));
      assert.match(r.error, pattern);
    } finally {
      fault = null;
      await context.close();
    }
  }
});

test('a connection dropped mid-shard fails, and a reload resumes with only the missing shards', async () => {
  const victim = manifest.shards[1].file;
  let dropped = false;
  fault = (path, req, res) => {
    if (!path.endsWith(victim) || dropped) return false;
    dropped = true;
    const bytes = readFileSync(join(modelDir, victim));
    res.writeHead(200, { 'Content-Length': bytes.length });
    res.write(bytes.subarray(0, bytes.length >> 1), () => res.socket.destroy());
    return true;
  };
  const context = await browser.newContext();
  try {
    const r1 = await load(await harness(context));
    assert.equal(r1.ok, false);
    assert.match(r1.error, new RegExp(`shard ${victim}: .*Reload the page to resume`));
    hits.clear();
    const r2 = await load(await harness(context));
    assert.ok(r2.ok, r2.error);
    // Only the victim (and any shard that was still in flight when the error hit) is fetched again.
    assert.ok(hits.get(MODEL + victim) === 1);
    assert.ok(shardHits() < manifest.shards.length, `resume fetched ${shardHits()} of ${manifest.shards.length} shards`);
  } finally {
    fault = null;
    await context.close();
  }
});

test('a full storage quota is reported before any download', async () => {
  hits.clear();
  const context = await browser.newContext();
  await context.addInitScript(() => {
    navigator.storage.estimate = async () => ({ quota: 1_000_000, usage: 900_000 });
  });
  try {
    const r = await load(await harness(context));
    assert.equal(r.ok, false);
    assert.match(r.error, /needs \d+\.\d MB more of storage, but the browser allows only 0\.1 MB more/);
    assert.equal(shardHits(), 0);
  } finally {
    await context.close();
  }
});

test('the manifest format version is checked', async () => {
  fault = (path, req, res) => {
    if (!path.endsWith('manifest.json')) return false;
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ ...manifest, format_version: 9 }));
    return true;
  };
  const context = await browser.newContext();
  try {
    const r = await load(await harness(context));
    assert.equal(r.ok, false);
    assert.match(r.error, /format version 9; this Easel reads version 1/);
  } finally {
    fault = null;
    await context.close();
  }
});


test('the page loads a converted model with a progress bar, then from the cache', async () => {
  hits.clear();
  fault = null;
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  try {
    for (const [backend, expectSource] of [['gpu', 'downloaded'], ['cpu', 'from the browser cache']]) {
      const page = await context.newPage();
      await page.goto(`${url}?backend=${backend}&model=none`);
      await page.locator('#diagnostics[data-state="ready"], #diagnostics[data-state="no-webgpu"]').waitFor({ timeout: 120_000 });
      await page.selectOption('#model', 'url');
      await page.fill('#model-url', `${url}${MODEL.slice(1)}`);
      await page.click('#load-model');
      const bar = page.locator('#download-progress');
      await page.locator('#download-progress[data-state="ready"], #download-progress[data-state="error"]').waitFor({ timeout: 120_000 });
      const text = await page.locator('#download-text').textContent();
      assert.equal(await bar.getAttribute('data-state'), 'ready', text);
      assert.match(text, new RegExp(`^sd2-tiny: \\d+\\.\\d MB ${expectSource}, on the ${backend.toUpperCase()}$`));
      assert.equal(await bar.evaluate((b) => b.value === b.max), true);
      await page.screenshot({ path: await artifactPath(`page-model-${backend}.png`) });
      await page.close();
    }
    // The second visit (CPU backend) fetched the manifest only.
    assert.equal(shardHits(), manifest.shards.length);
    // The cache panel lists the model; deleting it empties the list.
    const page = await context.newPage();
    await page.goto(`${url}?model=none`);
    const item = page.locator('#cached-models li');
    await item.first().waitFor();
    assert.match(await item.first().textContent(), new RegExp(`models/sd2-tiny/ — \\d+\\.\\d MB in ${manifest.shards.length} shardsDelete$`));
    // The diagnostics column is narrow: the URL wraps, the Delete button keeps one line
    // (as tall as the one-line "Delete all cached models" button below the list).
    const heights = await page.evaluate(() => [...document.querySelectorAll('#cached-models button, #delete-all-models')].map((b) => b.getBoundingClientRect().height));
    assert.equal(heights[0], heights[1], `button heights ${heights}`);
    await page.click('#delete-all-models');
    await page.locator('#cached-models', { hasText: 'none' }).waitFor();
  } finally {
    await context.close();
  }
});
