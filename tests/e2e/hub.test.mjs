// Hub mode (www/hub.js) against local servers that behave as the Hugging Face Hub does today:
// the Hub origin lists a repository's files with the API's tree JSON and serves small files
// at /{repo}/resolve/{revision}/{path}, but answers a weights file with a 302 to a CDN on
// another origin (signed query) that serves Range reads, exposes no response header and
// refuses CORS preflights. The conversion equals `easel convert` of the same folder byte for
// byte, no preflight reaches either server, each weights byte is read once, a second load
// reads nothing, and each server fault gives its clear error with nothing left in the cache.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { hubTree, parseHubPath, parseTreePath, sendBytes, startCdn, startServer } from '../../scripts/serve.mjs';
import { ROOT, launch, artifactPath, runCli } from './browser.mjs';

const FIXTURES = join(ROOT, 'tests/fixtures');
const REPO = 'sd2-tiny';
// Small shards and ranges, so that tensors span shards and files take several requests.
const SHARD_MB = 1;
const CHUNK = 128 << 10;
const cli = {}; // quant -> { dir, text, manifest }
let pageServer, pageUrl, hubServer, hubBase, cdnServer, cdnUrl, directServer, directBase, browser;
let log = []; // every request the Hub-like servers saw: { server, method, path, range, status, bytes }
let fault = null; // (server, path, req, res) -> true when it answered

/** Logs every request of `server`, and lets the current fault answer it. */
const hook = (server) => async (req, res, path) => {
  const entry = { server, method: req.method, path, range: req.headers.range ?? null, status: 0, bytes: 0 };
  log.push(entry);
  res.on('finish', () => Object.assign(entry, { status: res.statusCode, bytes: Number(res.getHeader('content-length') ?? 0) }));
  return fault ? fault(server, path, req, res) : false;
};

before(async () => {
  for (const quant of ['f32', 'q8_0']) {
    const dir = mkdtempSync(join(tmpdir(), `easel-hub-${quant}-`));
    runCli(['convert', join(FIXTURES, REPO), '--out', dir, '--quant', quant, '--shard-mb', String(SHARD_MB)]);
    const text = readFileSync(join(dir, 'manifest.json'), 'utf8');
    cli[quant] = { dir, text, manifest: JSON.parse(text) };
  }
  ({ server: pageServer, url: pageUrl } = await startServer({ root: ROOT, port: 0 }));
  ({ server: cdnServer, url: cdnUrl } = await startCdn({ root: FIXTURES, onRequest: hook('cdn') }));
  const empty = mkdtempSync(join(tmpdir(), 'easel-hub-empty-'));
  ({ server: hubServer, url: hubBase } = await startServer({ root: empty, hubRoot: FIXTURES, hubCdn: cdnUrl, port: 0, onRequest: hook('hub') }));
  // `scripts/serve.mjs --hub`: the same API and files, weights served without a redirect.
  ({ server: directServer, url: directBase } = await startServer({ root: empty, hubRoot: FIXTURES, port: 0, onRequest: hook('direct') }));
  hubBase = hubBase.slice(0, -1);
  directBase = directBase.slice(0, -1);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  for (const s of [pageServer, hubServer, cdnServer, directServer]) s?.close();
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
const cacheBase = (quant, base = hubBase) => `${base}/${REPO}/resolve/main/easel-${quant}/`;
const sha = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');
const cachedUrls = (page) => page.evaluate(async () => (await (await caches.open('easel-models-v1')).keys()).map((r) => r.url));
/** The repository path of a Hub `resolve/` or CDN `/xet/` path. */
const repoPath = (path) => parseHubPath(path)?.path ?? /^\/xet\/[^/]+\/(.+)$/.exec(path)?.[1];
const fixtureBytes = (path) => readFileSync(join(FIXTURES, REPO, repoPath(path)));

/** What the log says of the weights reads: every byte of each file once, in ranges of at most CHUNK. */
function checkWeightsReads(server, bytesTotal) {
  const reads = log.filter((e) => e.server === server && e.path.endsWith('.safetensors'));
  const perFile = new Map();
  for (const e of reads) {
    assert.equal(e.method, 'GET', `${e.path}: ${e.method}`);
    assert.ok(e.range, `${e.path} was requested without Range`);
    assert.equal(e.status, 206, `${e.path} ${e.range}: status ${e.status}`);
    const [, a, b] = /^bytes=(\d+)-(\d+)$/.exec(e.range).map(Number);
    assert.equal(e.bytes, b - a + 1);
    assert.ok(e.bytes <= Math.max(CHUNK, 256 << 10), `${e.path} ${e.range}: ${e.bytes} bytes`);
    const file = repoPath(e.path);
    perFile.set(file, [...(perFile.get(file) ?? []), [a, b + 1]]);
  }
  let total = 0;
  for (const [file, ranges] of perFile) {
    const size = statSync(join(FIXTURES, REPO, file)).size;
    ranges.sort((x, y) => x[0] - y[0]);
    ranges.forEach(([a], i) => assert.equal(a, i ? ranges[i - 1][1] : 0, `${file}: ranges ${JSON.stringify(ranges)} leave a gap or overlap`));
    assert.equal(ranges.at(-1)[1], size, `${file}: read to its end`);
    total += size;
  }
  assert.equal(total, bytesTotal, 'progress counts the weights files');
  return reads.length;
}

test('Hub mode makes what easel convert makes through the redirect to a CDN, with no preflight, then loads from the cache', async () => {
  const context = await browser.newContext();
  try {
    const page = await harness(context);
    for (const [quant, base] of [['f32', hubBase], ['q8_0', hubBase], ['q8_0', directBase]]) {
      const want = cli[quant];
      const mode = base === hubBase ? 'via the CDN' : 'direct';
      log = [];
      const first = await hubLoad(page, options(quant, { base }));
      assert.ok(first.ok, first.error);
      // Same tensors (names, shapes, storage, parts), configs, tokenizer entries, shard hashes.
      assert.equal(first.manifestText, want.text, `${quant} ${mode}: the manifest differs from the CLI's`);
      assert.deepEqual(first.shardSha, want.manifest.shards.map((s) => sha(join(want.dir, s.file))));
      assert.ok(want.manifest.shards.length >= 2, 'the test wants several shards');

      assert.deepEqual(log.filter((e) => e.method !== 'GET'), [], 'only GETs: no preflight (OPTIONS), no HEAD');
      const api = log.filter((e) => parseTreePath(e.path));
      assert.equal(api.length, 1, 'one tree listing');
      if (base === hubBase) {
        // Every weights request met the Hub's 302 and was read from the CDN.
        const redirected = log.filter((e) => e.server === 'hub' && e.path.endsWith('.safetensors'));
        assert.ok(redirected.length > 0 && redirected.every((e) => e.status === 302), 'weights requests are redirected');
        const reads = checkWeightsReads('cdn', first.last.bytesTotal);
        assert.equal(reads, redirected.length);
      } else {
        checkWeightsReads('direct', first.last.bytesTotal);
      }
      assert.equal(log.filter((e) => e.status === 404).length, 0, 'nothing is probed: the tree says what exists');
      assert.equal(first.last.bytesDone, first.last.bytesTotal);
      assert.ok(first.monotonic && first.events > 10, `${first.events} progress events`);

      log = [];
      const second = await hubLoad(page, options(quant, { base }));
      assert.ok(second.ok, second.error);
      assert.deepEqual(log.map((e) => e.path), [], 'the second load must not touch the network');
      assert.equal(second.manifestText, want.text);
      assert.equal(second.last.fromCache, second.last.bytesTotal);
      console.log(`Hub mode ${quant} ${mode}: ${(first.last.bytesTotal / 1e6).toFixed(2)} MB of weights read, checked against their sha256, converted and cached in ${first.ms.toFixed(0)} ms; again from the cache in ${second.ms.toFixed(0)} ms`);
    }
    // Listed like converted models, tokenizer files counted with their model; deletable.
    const listed = await page.evaluate(() => window.loader.listCachedModels());
    const tokenizer = cli.q8_0.manifest.files.reduce((a, f) => a + f.size, 0);
    const q8 = listed.find((m) => m.base === cacheBase('q8_0'));
    assert.equal(listed.length, 3, JSON.stringify(listed));
    assert.deepEqual(q8, { base: cacheBase('q8_0'), shards: cli.q8_0.manifest.shards.length, bytes: cli.q8_0.manifest.shards.reduce((a, s) => a + s.size, 0) + tokenizer });
    await page.evaluate((base) => window.loader.deleteCachedModel(base), cacheBase('q8_0'));
    assert.deepEqual((await page.evaluate(() => window.loader.listCachedModels())).map((m) => m.base).sort(), [cacheBase('f32'), cacheBase('q8_0', directBase)].sort());
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

test('a CDN that ignores Range is named, and nothing is left in the cache', async () => {
  const r = await failingLoad((server, path, req, res) => {
    if (server !== 'cdn' || !path.endsWith('/model.safetensors')) return false;
    const bytes = fixtureBytes(path);
    res.writeHead(200, { 'Content-Length': bytes.length }).end(bytes);
    return true;
  });
  assert.equal(r.name, 'LoadError');
  assert.match(r.error, /text_encoder\/model\.safetensors: the server ignored the Range request and answered with the whole file \(HTTP 200\)/);
  assert.deepEqual(r.cached, []);
});

test('a missing repository, a listed file the CDN lacks, and a component without weights are named', async () => {
  let r = await failingLoad(null, { repo: 'no-such-repo' });
  assert.match(r.error, /\/api\/models\/no-such-repo\/tree\/main\?recursive=true was not found \(HTTP 404\)/);
  r = await failingLoad((server, path, req, res) => server === 'cdn' && path.includes('/unet/') && (res.writeHead(404).end(), true));
  assert.match(r.error, /sd2-tiny\/resolve\/main\/unet\/diffusion_pytorch_model\.safetensors was not found \(HTTP 404\)/);
  assert.deepEqual(r.cached, []);
  r = await failingLoad(async (server, path, req, res) => {
    if (server !== 'hub' || !parseTreePath(path)) return false;
    const tree = (await hubTree(join(FIXTURES, REPO))).filter((e) => !e.path.startsWith('unet/diffusion_pytorch_model'));
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(tree));
    return true;
  });
  assert.match(r.error, /component 'unet' has no weights at .*\/sd2-tiny\/resolve\/main\/unet\/: none of diffusion_pytorch_model\.safetensors, model\.safetensors, .* is in the repository/);
  assert.deepEqual(r.cached, []);
});

test('a safetensors header that lies about its offsets is refused by file and tensor', async () => {
  const file = '/xet/sd2-tiny/vae/diffusion_pytorch_model.safetensors';
  const real = fixtureBytes(file);
  const n = Number(real.readBigUInt64LE(0));
  const header = JSON.parse(real.subarray(8, 8 + n).toString());
  const victim = Object.keys(header).filter((k) => k !== '__metadata__').sort()[0];
  const dataLen = real.length - 8 - n;
  header[victim].data_offsets[1] = dataLen + 4096;
  const json = Buffer.from(JSON.stringify(header));
  const lying = Buffer.concat([Buffer.alloc(8), json, real.subarray(8 + n)]);
  lying.writeBigUInt64LE(BigInt(json.length), 0);
  const r = await failingLoad(async (server, path, req, res) => {
    if (server === 'cdn' && path === file) return sendBytes(req, res, lying), true;
    if (server !== 'hub' || !parseTreePath(path)) return false;
    // The Hub lists the file it serves.
    const tree = (await hubTree(join(FIXTURES, REPO))).map((e) => (e.path === repoPath(file) ? { ...e, size: lying.length, lfs: { ...e.lfs, size: lying.length } } : e));
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(tree));
    return true;
  });
  assert.match(r.error, new RegExp(`vae/diffusion_pytorch_model\\.safetensors: tensor '${victim}': data ends at ${dataLen + 4096}, past the file's ${dataLen} data bytes`));
  assert.deepEqual(r.cached, []);
});

test('bytes that do not match the Hub\'s sha256 are refused, and nothing is cached', async () => {
  const file = '/xet/sd2-tiny/unet/diffusion_pytorch_model.safetensors';
  const bad = Buffer.from(fixtureBytes(file));
  bad[bad.length - 5] ^= 0x40; // one bit of the last tensor's data
  const r = await failingLoad((server, path, req, res) => server === 'cdn' && path === file && (sendBytes(req, res, bad), true));
  assert.match(r.error, /unet\/diffusion_pytorch_model\.safetensors: the bytes read have sha256 [0-9a-f]{64}, but the Hub lists [0-9a-f]{64} \(the file is corrupt, or changed during the download\)/);
  assert.deepEqual(r.cached, []);
});

test('CORS failures say what the server must send', async () => {
  let r = await failingLoad((server, path, req, res) => server === 'hub' && parseTreePath(path) && (res.removeHeader('Access-Control-Allow-Origin'), false));
  assert.match(r.error, /Could not read .*\/api\/models\/sd2-tiny\/tree\/main\?recursive=true: .*CORS: every answer must send Access-Control-Allow-Origin/);
  r = await failingLoad((server, path, req, res) => server === 'cdn' && (res.removeHeader('Access-Control-Allow-Origin'), false));
  assert.match(r.error, /Could not read .*\/resolve\/main\/text_encoder\/model\.safetensors: the server \(or the server it redirects to\)/);
  assert.deepEqual(r.cached, []);
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
    assert.match(await item.first().textContent(), /sd2-tiny\/resolve\/main\/easel-q8_0\/ — \d+\.\d MB in 1 shardDelete$/);
  } finally {
    await context.close();
  }
});
