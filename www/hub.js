// Hub mode: reads a diffusers repository straight from a Hub-style server
// ({base}/{repo}/resolve/{revision}/{path}, e.g. https://huggingface.co) and converts it in
// the browser (wasm: src/api/hub.rs, the code `easel convert` runs) into the same manifest
// and shards the CLI would write. The file list, sizes and LFS sha256s come from the Hub's
// JSON API ({base}/api/models/{repo}/tree/{revision}?recursive=true); weights arrive by
// HTTP Range, each file read once from start to end in ranges of at most 32 MiB (first its
// header, then the rest), the converter fed the parts it plans, and the whole file checked
// against its sha256. Full shards go to Cache Storage as they are made, the manifest last, so
// the model then lists, loads and deletes like any converted model, and a second load reads
// nothing from the network.
//
// As the real Hub behaves: `resolve/` answers a weights file with a 302 to a CDN on another
// origin, which may expose no response headers and refuse CORS preflights. So every request
// is a simple GET (one `Range: bytes=a-b` at most, no other header, no HEAD) that needs no
// preflight, redirects are followed by the browser, and nothing is read from headers: a
// range's length is counted and the file's size comes from the API.
//
//   const model = await loadHubModel({ base, repo, revision, quant: 'q8_0', onProgress });
//   model.manifest, model.manifestText, model.shard(i)        (as loader.js's loadModel)

import { enginePackage } from './engine-pkg.js';
import { CACHE_NAME, LoadError, cacheEntry, cachedModel, checkStorage, openCachedModel } from './loader.js';

/** Largest Range request. */
export const MAX_CHUNK_BYTES = 32 << 20;
// The first read of a weights file: for most files, the whole header.
const PROBE_BYTES = 256 << 10;

/** The URL of `path` in a repository. */
export function hubFileUrl(base, repo, revision, path) {
  return `${base.replace(/\/+$/, '')}/${repo.replace(/^\/+|\/+$/g, '')}/resolve/${encodeURIComponent(revision)}/${path}`;
}

/** The Hub API's recursive file listing of a repository at a revision. */
export function hubTreeUrl(base, repo, revision) {
  return `${base.replace(/\/+$/, '')}/api/models/${repo.replace(/^\/+|\/+$/g, '')}/tree/${encodeURIComponent(revision)}?recursive=true`;
}

/** Where a conversion is cached: beside the repository's files, one folder per storage type. */
export function hubCacheBase(base, repo, revision, quant, preferFp16 = false) {
  return hubFileUrl(base, repo, revision, `easel-${quant}${preferFp16 ? '-fp16' : ''}/`);
}

/**
 * A GET that needs no CORS preflight (no header but one simple Range), redirects followed by
 * the browser, network and CORS failures turned into a sentence naming the URL.
 */
async function hubFetch(url, { range, signal } = {}) {
  try {
    return await fetch(url, {
      cache: 'no-store',
      redirect: 'follow',
      referrerPolicy: 'no-referrer',
      signal,
      ...(range ? { headers: { Range: `bytes=${range[0]}-${range[1] - 1}` } } : {}),
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new LoadError(
      `Could not read ${url}: the server (or the server it redirects to) is unreachable or does not let this page read it ` +
        '(CORS: every answer must send Access-Control-Allow-Origin).',
    );
  }
}

function httpError(url, res) {
  if (res.status === 404) return new LoadError(`${url} was not found (HTTP 404): check the repository, the revision and the file name.`);
  if (res.status === 401 || res.status === 403) {
    return new LoadError(`${url}: HTTP ${res.status}. The repository is gated or private; Hub mode reads public repositories only.`);
  }
  return new LoadError(`${url}: HTTP ${res.status} ${res.statusText}`.trim());
}

/** A whole small file (configs, tokenizer). */
async function fetchSmall(url, signal) {
  const res = await hubFetch(url, { signal });
  if (!res.ok) throw httpError(url, res);
  return new Uint8Array(await res.arrayBuffer());
}

/**
 * The repository's files: path -> { size, sha256 } (sha256 of LFS files; null for files
 * kept in git), from the Hub API's recursive tree, following its pages.
 */
export async function fetchTree(base, repo, revision, signal) {
  const files = new Map();
  for (let url = hubTreeUrl(base, repo, revision); url; ) {
    const res = await hubFetch(url, { signal });
    if (res.status === 404) {
      throw new LoadError(`${url} was not found (HTTP 404): check the repository and the revision (Hub mode lists a repository's files with the Hub's API).`);
    }
    if (!res.ok) throw httpError(url, res);
    let entries;
    try {
      entries = await res.json();
    } catch {
      throw new LoadError(`${url}: the Hub API's answer is not JSON`);
    }
    if (!Array.isArray(entries)) throw new LoadError(`${url}: the Hub API's answer is not a list of files`);
    for (const e of entries) {
      if (e?.type !== 'file' || typeof e.path !== 'string' || !Number.isSafeInteger(e.size)) continue;
      files.set(e.path, { size: e.size, sha256: typeof e.lfs?.oid === 'string' ? e.lfs.oid : null });
    }
    // Large repositories come in pages, linked as the GitHub API does (when the header is readable).
    const next = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get('link') ?? '');
    url = next ? new URL(next[1], url).href : null;
  }
  return files;
}

/**
 * Bytes [start, end) of `url` (a file of `size` bytes) by one Range request, handed to
 * `onBytes` as they arrive. The length is counted, not read from headers: a CDN may expose
 * neither Content-Range nor Content-Length.
 */
async function fetchRange(url, start, end, size, onBytes, signal) {
  const res = await hubFetch(url, { range: [start, end], signal });
  const whole = start === 0 && end === size;
  if (res.status === 200 && !whole) {
    await res.body?.cancel();
    throw new LoadError(
      `${url}: the server ignored the Range request and answered with the whole file (HTTP 200). ` +
        'Hub mode reads weights in ranges of at most 32 MiB; use a server with HTTP Range support, as the Hugging Face Hub has.',
    );
  }
  if (res.status !== 206 && res.status !== 200) throw httpError(url, res);
  // Where the server does expose Content-Range, it must name the range asked for.
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
  if (m && (Number(m[1]) !== start || Number(m[2]) !== end - 1 || Number(m[3]) !== size)) {
    await res.body?.cancel();
    throw new LoadError(`${url}: the answer to the Range request bytes=${start}-${end - 1} of ${size} bytes has bytes ${m[1]}-${m[2]}/${m[3]} instead (the file changed on the server?)`, 'model-corrupt');
  }
  const length = end - start;
  let got = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    got += value.length;
    if (got > length) {
      await reader.cancel();
      throw new LoadError(`${url}: the server sent more than the ${length} bytes of range ${start}-${end - 1}`);
    }
    await onBytes(value);
  }
  if (got !== length) throw new LoadError(`${url}: the download stopped after ${got} of ${length} bytes (range ${start}-${end - 1} of a ${size}-byte file)`);
}

/** A weights file's first bytes, up to the end of its safetensors header. */
async function readHeader(url, size, signal) {
  const parts = [];
  await fetchRange(url, 0, Math.min(PROBE_BYTES, size), size, (b) => parts.push(b), signal);
  let bytes = concat(parts);
  // The engine's classes come from the package the worker runs (one instance).
  const { HubConverter } = await enginePackage();
  const n = wasmCall(() => HubConverter.headerLength(url, bytes.subarray(0, 8), size), 'model-corrupt');
  if (8 + n > bytes.length) {
    const rest = [bytes];
    await fetchRange(url, bytes.length, 8 + n, size, (b) => rest.push(b), signal);
    bytes = concat(rest);
  }
  return { head: bytes, header: bytes.subarray(8, 8 + n) };
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Runs a converter call, turning its errors (sentences from Rust) into LoadErrors. */
function wasmCall(f, code = 'unsupported-model') {
  try {
    return f();
  } catch (e) {
    throw new LoadError(e.message ?? String(e), code);
  }
}

async function removeEntries(cache, base) {
  for (const req of await cache.keys()) if (req.url.startsWith(base)) await cache.delete(req);
}

/**
 * Reads weights file `f` from its start to its end, hashing every byte and feeding the
 * converter the parts inside its planned ranges (in order). `onBytes(n)` counts progress.
 */
async function streamFile(f, conv, chunkBytes, onBytes, signal) {
  const { FileHasher } = await enginePackage();
  const hasher = new FileHasher();
  let next = 0; // the first planned range not yet fed completely
  const take = (bytes, at) => {
    hasher.update(bytes);
    const end = at + bytes.length;
    while (next < f.ranges.length && f.ranges[next][0] < end) {
      const [s, e] = f.ranges[next];
      const from = Math.max(s, at);
      const to = Math.min(e, end);
      if (to > from) wasmCall(() => conv.feed(bytes.subarray(from - at, to - at)), 'model-corrupt');
      if (e > end) break; // the rest of this range comes with the next bytes
      next += 1;
    }
  };
  try {
    take(f.head, 0);
    for (let at = f.head.length; at < f.size; ) {
      const end = Math.min(f.size, at + chunkBytes);
      let pos = at;
      await fetchRange(f.url, at, end, f.size, async (bytes) => {
        take(bytes, pos);
        pos += bytes.length;
        await onBytes(bytes.length);
      }, signal);
      at = end;
    }
    const digest = hasher.hexDigest();
    if (f.sha256 && digest !== f.sha256) {
      throw new LoadError(`${f.url}: the bytes read have sha256 ${digest}, but the Hub lists ${f.sha256} (the file is corrupt, or changed during the download)`, 'model-corrupt');
    }
  } finally {
    hasher.free();
  }
}

/**
 * Loads `repo` at `revision` from `base` converted to `quant` (f32, f16, q8_0, q4_0): from
 * the cache when converted before, else by converting it now. `onProgress` gets
 * { bytesDone, bytesTotal, fromCache, etaSeconds, shards: [{ file, size, state }] } where
 * bytes count the source weights files and `shards` are those files. `preferFp16` reads
 * `*.fp16.safetensors` first (half the download; the CLI reads full precision first).
 * `shardBytes`/`chunkBytes` (tests) shrink shards and Range requests. `check(manifestText)`
 * (a cached model) and `checkConversion(converter)` (once every header is planned) throw
 * when the model cannot run here: before any weight byte past the headers is downloaded.
 */
export async function loadHubModel({
  base = 'https://huggingface.co',
  repo,
  revision = 'main',
  quant = 'q8_0',
  preferFp16 = false,
  shardBytes = 0,
  chunkBytes = MAX_CHUNK_BYTES,
  onProgress = () => {},
  signal,
  check = () => {},
  checkConversion = () => {},
} = {}) {
  if (!repo) throw new LoadError('Hub mode needs a repository name, such as stabilityai/sd-turbo.', 'unsupported-model');
  const url = (path) => hubFileUrl(base, repo, revision, path);
  const cacheBase = hubCacheBase(base, repo, revision, quant, preferFp16);
  const cached = await openCachedModel(cacheBase);
  if (cached) {
    wasmCall(() => check(cached.manifestText), 'too-large');
    const total = cached.manifest.shards.reduce((a, s) => a + s.size, 0);
    const shards = cached.manifest.shards.map((s) => ({ file: s.file, size: s.size, state: 'cached' }));
    onProgress({ bytesDone: total, bytesTotal: total, fromCache: total, etaSeconds: 0, shards });
    return cached;
  }
  const { HubConverter } = await enginePackage();
  const cache = await caches.open(CACHE_NAME);
  await removeEntries(cache, cacheBase); // whatever an interrupted conversion left
  const tree = await fetchTree(base, repo, revision, signal);
  if (!tree.has('model_index.json')) throw new LoadError(`${url('model_index.json')} is not in the repository: Hub mode reads diffusers pipelines (check the repository and the revision).`, 'unsupported-model');
  const index = await fetchSmall(url('model_index.json'), signal);
  // Named like `easel convert` names a folder (its file stem), so both manifests agree.
  const name = repo.split('/').filter(Boolean).pop().replace(/(.)\.[^.]*$/, '$1');
  const decoder = new TextDecoder();
  const conv = wasmCall(() => new HubConverter(url(''), name, decoder.decode(index), quant, shardBytes, preferFp16));
  chunkBytes = Math.min(chunkBytes, MAX_CHUNK_BYTES);
  try {
    const files = [];
    let extraBytes = 0;
    for (const comp of JSON.parse(conv.plan())) {
      const config = comp.configs.find((file) => tree.has(`${comp.name}/${file}`));
      if (config) {
        const path = `${comp.name}/${config}`;
        const bytes = await fetchSmall(url(path), signal);
        wasmCall(() => conv.addConfig(comp.name, url(path), decoder.decode(bytes)));
      }
      for (const file of comp.files) {
        const path = `${comp.name}/${file}`;
        if (!tree.has(path)) continue;
        const bytes = await fetchSmall(url(path), signal);
        wasmCall(() => conv.addFile(path, bytes));
        await cache.put(new URL(path, cacheBase).href, cacheEntry(bytes));
        extraBytes += bytes.length;
      }
      const weights = comp.weights.find((file) => tree.has(`${comp.name}/${file}`));
      if (!weights && comp.weights_required) {
        throw new LoadError(`component '${comp.name}' has no weights at ${url(comp.name + '/')}: none of ${comp.weights.join(', ')} is in the repository.`, 'unsupported-model');
      }
      if (weights) {
        const file = `${comp.name}/${weights}`;
        const { size, sha256 } = tree.get(file);
        const { head, header } = await readHeader(url(file), size, signal);
        const ranges = JSON.parse(wasmCall(() => conv.addWeights(comp.name, url(file), header, size, chunkBytes)));
        files.push({ file, url: url(file), size, sha256, head, ranges, state: 'pending' });
      }
    }
    wasmCall(() => checkConversion(conv), 'too-large');
    await checkStorage(conv.outputBytes() + extraBytes);

    // Every byte of each weights file is read once (the headers already are).
    const bytesTotal = files.reduce((a, f) => a + f.size, 0);
    let bytesDone = files.reduce((a, f) => a + f.head.length, 0);
    const started = performance.now();
    const startBytes = bytesDone;
    const report = () => {
      const rate = (bytesDone - startBytes) / Math.max(1, performance.now() - started);
      const etaSeconds = rate > 0 ? (bytesTotal - bytesDone) / rate / 1000 : null;
      onProgress({ bytesDone, bytesTotal, fromCache: 0, etaSeconds, shards: files.map((f) => ({ file: f.file, size: f.size, state: f.state })) });
    };
    const storeShards = async () => {
      for (let s = conv.takeShard(); s; s = conv.takeShard()) {
        const [file, bytes] = [s.file, s.takeBytes()];
        s.free();
        await cache.put(new URL(file, cacheBase).href, cacheEntry(bytes));
      }
    };
    report();
    for (const f of files) {
      f.state = 'downloading';
      await streamFile(f, conv, chunkBytes, async (n) => {
        bytesDone += n;
        report();
        await storeShards();
      }, signal);
      f.state = 'done';
    }
    const manifestText = wasmCall(() => conv.finish());
    await storeShards();
    // The manifest goes in last: a model without one is never taken for a cached model.
    await cache.put(new URL('manifest.json', cacheBase).href, new Response(manifestText, { headers: { 'content-type': 'application/json' } }));
    report();
    return cachedModel(cache, cacheBase, JSON.parse(manifestText), manifestText);
  } catch (e) {
    await removeEntries(cache, cacheBase);
    throw e instanceof LoadError || e.name === 'AbortError' ? e : new LoadError(e.message ?? String(e));
  } finally {
    conv.free();
  }
}
