// Hub mode (www/hub.js) against a local server that serves the fixture repositories the way
// the Hugging Face Hub does (/{repo}/resolve/{revision}/{path}, Range, CORS) from another
// origin than the page: the conversion equals `easel convert` of the same folder byte for
// byte, weights come by Range only, a second load reads nothing from the network, and each
// server fault gives its clear error with nothing left in the cache.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { parseHubPath, sendBytes, startServer } from '../../scripts/serve.mjs';
import { ROOT, launch, artifactPath } from './browser.mjs';

const FIXTURES = join(ROOT, 'tests/fixtures');
const REPO = 'sd2-tiny';
// Small shards and ranges, so that tensors span shards and files take several requests.
const SHARD_MB = 1;
const CHUNK = 128 << 10;
const cli = {}; // quant -> { dir, text, manifest }
let pageServer, pageUrl, hubServer, hubBase, browser;
let log = []; // every request the hub server saw
let fault = null; // (path, req, res) -> true when it answered

before(async () => {
  for (const quant of ['f32', 'q8_0']) {
    const dir = mkdtempSync(join(tmpdir(), `easel-hub-${quant}-`));
    execFileSync('cargo', ['run', '--quiet', '--bin', 'easel', '--', 'convert', join(FIXTURES, REPO), '--out', dir, '--quant', quant, '--shard-mb', String(SHARD_MB)], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const text = readFileSync(join(dir, 'manifest.json'), 'utf8');
    cli[quant] = { dir, text, manifest: JSON.parse(text) };
  }
  ({ server: pageServer, url: pageUrl } = await startServer({ root: ROOT, port: 0 }));
  ({ server: hubServer, url: hubBase } = await startServer({
    root: mkdtempSync(join(tmpdir(), 'easel-hub-empty-')),
    hubRoot: FIXTURES,
    port: 0,
    onRequest: async (req, res, path) => {
      const entry = { path, range: req.headers.range ?? null, status: 0, bytes: 0 };
      log.push(entry);
      res.on('finish', () => Object.assign(entry, { status: res.statusCode, bytes: Number(res.getHeader('content-length') ?? 0) }));
      return fault ? fault(path, req, res) : false;
    },
  }));
  hubBase = hubBase.slice(0, -1);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  pageServer?.close();
  hubServer?.close();
});

async function harness(context) {
  const page = await context.newPage();
  await page.goto(`${pageUrl}tests/e2e/hub-harness.html`);
  await page.waitForFunction(() => window.ready === true);
  return page;
}

/** Loads in Hub mode in the page; returns the manifest text, each shard's sha256 and progress. */
async function hubLoad(page, options) {
  return page.evaluate(async (options) => {
    const hex = async (b) => Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', b)), (x) => x.toString(16).padStart(2, '0')).join('');
    let events = 0;
    let last = null;
    let monotonic = true;
    try {
      const start = performance.now();
      const model = await window.hub.loadHubModel({
        ...options,
        onProgress: (p) => {
          monotonic &&= !last || p.bytesDone >= last.bytesDone;
          events += 1;
          last = p;
        },
      });
      const ms = performance.now() - start;
      const shardSha = [];
      for (let i = 0; i < model.manifest.shards.length; i++) shardSha.push(await hex(await model.shard(i)));
      return { ok: true, manifestText: model.manifestText, shardSha, events, last, monotonic, ms };
    } catch (e) {
      return { ok: false, error: e.message, name: e.constructor.name };
    }
  }, options);
}

const options = (quant, extra = {}) => ({ base: hubBase, repo: REPO, quant, shardBytes: SHARD_MB << 20, chunkBytes: CHUNK, ...extra });
const cacheBase = (quant) => `${hubBase}/${REPO}/resolve/main/easel-${quant}/`;
const sha = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');
const cachedUrls = (page) => page.evaluate(async () => (await (await caches.open('easel-models-v1')).keys()).map((r) => r.url));

test('Hub mode makes what easel convert makes, by Range requests, then loads from the cache', async () => {
  const context = await browser.newContext();
  try {
    const page = await harness(context);
    for (const quant of ['f32', 'q8_0']) {
      const want = cli[quant];
      log = [];
      const first = await hubLoad(page, options(quant));
      assert.ok(first.ok, first.error);
      // Same tensors (names, shapes, storage, parts), configs, tokenizer entries, shard hashes.
      assert.equal(first.manifestText, want.text, `${quant}: the manifest differs from the CLI's`);
      assert.deepEqual(first.shardSha, want.manifest.shards.map((s) => sha(join(want.dir, s.file))));
      assert.ok(want.manifest.shards.length >= 2, 'the test wants several shards');

      // Weights only by Range: never a 200, never a whole file, data ranges within CHUNK.
      const weights = log.filter((e) => e.path.endsWith('.safetensors'));
      for (const e of weights) {
        assert.ok(e.range, `${e.path} was requested without Range`);
        assert.ok(e.status === 206 || e.status === 404, `${e.path}: status ${e.status}`);
        if (e.status === 206) {
          const size = statSync(join(FIXTURES, REPO, parseHubPath(e.path).path)).size;
          assert.ok(e.bytes < size, `${e.path}: the whole file was sent`);
          if (!e.range.startsWith('bytes=0-')) assert.ok(e.bytes <= CHUNK, `${e.path} ${e.range}: ${e.bytes} bytes`);
        }
      }
      const dataBytes = weights.filter((e) => e.status === 206 && !e.range.startsWith('bytes=0-')).reduce((a, e) => a + e.bytes, 0);
      assert.equal(dataBytes, first.last.bytesTotal, 'every data byte is fetched once');
      assert.equal(first.last.bytesDone, first.last.bytesTotal);
      assert.ok(first.monotonic && first.events > 10, `${first.events} progress events`);

      log = [];
      const second = await hubLoad(page, options(quant));
      assert.ok(second.ok, second.error);
      assert.deepEqual(log.map((e) => e.path), [], 'the second load must not touch the network');
      assert.equal(second.manifestText, want.text);
      assert.equal(second.last.fromCache, second.last.bytesTotal);
      const source = weights.filter((e) => e.status === 206).reduce((a, e) => a + e.bytes, 0);
      console.log(`Hub mode ${quant}: ${(source / 1e6).toFixed(2)} MB read in ${weights.length} Range requests, converted and cached in ${first.ms.toFixed(0)} ms; again from the cache in ${second.ms.toFixed(0)} ms`);
    }
    // Listed like converted models, tokenizer files counted with their model; deletable.
    const listed = await page.evaluate(() => window.loader.listCachedModels());
    const tokenizer = cli.q8_0.manifest.files.reduce((a, f) => a + f.size, 0);
    const q8 = listed.find((m) => m.base === cacheBase('q8_0'));
    assert.equal(listed.length, 2, JSON.stringify(listed));
    assert.deepEqual(q8, { base: cacheBase('q8_0'), shards: cli.q8_0.manifest.shards.length, bytes: cli.q8_0.manifest.shards.reduce((a, s) => a + s.size, 0) + tokenizer });
    await page.evaluate((base) => window.loader.deleteCachedModel(base), cacheBase('q8_0'));
    assert.deepEqual((await page.evaluate(() => window.loader.listCachedModels())).map((m) => m.base), [cacheBase('f32')]);
  } finally {
    await context.close();
  }
});

/** Runs a Hub-mode load under `faultFn` in a fresh context; returns the error and what stayed cached. */
async function failingLoad(faultFn, extra = {}) {
  fault = faultFn;
  const context = await browser.newContext();
  try {
    const page = await harness(context);
    const r = await hubLoad(page, options('q8_0', extra));
    assert.equal(r.ok, false, 'the load should fail');
    return { error: r.error, name: r.name, cached: await cachedUrls(page) };
  } finally {
    fault = null;
    await context.close();
  }
}

const fixtureBytes = (path) => readFileSync(join(FIXTURES, REPO, parseHubPath(path).path));

test('a server that ignores Range is named, and nothing is left in the cache', async () => {
  const r = await failingLoad((path, req, res) => {
    if (!path.endsWith('/model.safetensors')) return false;
    const bytes = fixtureBytes(path);
    res.writeHead(200, { 'Content-Length': bytes.length }).end(bytes);
    return true;
  });
  assert.equal(r.name, 'LoadError');
  assert.match(r.error, /text_encoder\/model\.safetensors: the server ignored the Range request and answered with the whole file \(HTTP 200\)/);
  assert.deepEqual(r.cached, []);
});

test('a missing repository or weights file is named (404)', async () => {
  let r = await failingLoad(null, { repo: 'no-such-repo' });
  assert.match(r.error, /\/no-such-repo\/resolve\/main\/model_index\.json was not found \(HTTP 404\)/);
  r = await failingLoad((path, req, res) => path.includes('/unet/') && path.endsWith('.safetensors') && (res.writeHead(404).end(), true));
  assert.match(r.error, /component 'unet' has no weights at .*\/sd2-tiny\/resolve\/main\/unet\/: none of diffusion_pytorch_model\.safetensors, model\.safetensors, .* exists \(HTTP 404\)/);
  assert.deepEqual(r.cached, []);
});

test('a safetensors header that lies about its offsets is refused by file and tensor', async () => {
  const file = '/sd2-tiny/resolve/main/vae/diffusion_pytorch_model.safetensors';
  const real = fixtureBytes(file);
  const n = Number(real.readBigUInt64LE(0));
  const header = JSON.parse(real.subarray(8, 8 + n).toString());
  const victim = Object.keys(header).filter((k) => k !== '__metadata__').sort()[0];
  const dataLen = real.length - 8 - n;
  header[victim].data_offsets[1] = dataLen + 4096;
  const json = Buffer.from(JSON.stringify(header));
  const lying = Buffer.concat([Buffer.alloc(8), json, real.subarray(8 + n)]);
  lying.writeBigUInt64LE(BigInt(json.length), 0);
  const r = await failingLoad((path, req, res) => path === file && (sendBytes(req, res, lying), true));
  assert.match(r.error, new RegExp(`vae/diffusion_pytorch_model\\.safetensors: tensor '${victim}': data ends at ${dataLen + 4096}, past the file's ${dataLen} data bytes`));
  assert.deepEqual(r.cached, []);
});

test('CORS failures say what the server must send', async () => {
  let r = await failingLoad((path, req, res) => path.endsWith('model_index.json') && (res.removeHeader('Access-Control-Allow-Origin'), false));
  assert.match(r.error, /Could not read .*model_index\.json: .*CORS: it must send Access-Control-Allow-Origin/);
  r = await failingLoad((path, req, res) => path.endsWith('.safetensors') && (res.removeHeader('Access-Control-Expose-Headers'), false));
  assert.match(r.error, /model\.safetensors: the answer to the Range request bytes=0-\d+ has no readable Content-Range/);
});

test('the page converts a repository in Hub mode, then loads it from the cache', async () => {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  try {
    for (const [backend, expectSource] of [['gpu', 'downloaded'], ['cpu', 'from the browser cache']]) {
      log = [];
      const page = await context.newPage();
      await page.goto(`${pageUrl}?backend=${backend}&model=none`);
      await page.locator('#diagnostics[data-state="ready"], #diagnostics[data-state="no-webgpu"]').waitFor({ timeout: 120_000 });
      await page.selectOption('#model', 'hub');
      await page.fill('#hub-base', hubBase);
      await page.fill('#hub-repo', REPO);
      await page.selectOption('#hub-quant', 'q8_0');
      await page.click('#load-hub');
      await page.locator('#download-progress[data-state="ready"], #download-progress[data-state="error"]').waitFor({ timeout: 120_000 });
      const text = await page.locator('#download-text').textContent();
      assert.equal(await page.locator('#download-progress').getAttribute('data-state'), 'ready', text);
      assert.match(text, new RegExp(`^${REPO}: \\d+\\.\\d MB ${expectSource}, on the ${backend.toUpperCase()}$`));
      if (backend === 'cpu') assert.equal(log.length, 0, 'the cached model needs no request');
      await page.screenshot({ path: await artifactPath(`page-hub-${backend}.png`) });
      await page.close();
    }
    const page = await context.newPage();
    await page.goto(`${pageUrl}?model=none`);
    const item = page.locator('#cached-models li');
    await item.first().waitFor();
    assert.match(await item.first().textContent(), /sd2-tiny\/resolve\/main\/easel-q8_0\/ — \d+\.\d MB in 1 shards/);
  } finally {
    await context.close();
  }
});
