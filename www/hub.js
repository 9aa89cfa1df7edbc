// Hub mode: reads a diffusers repository straight from a Hub-style server
// ({base}/{repo}/resolve/{revision}/{path}, e.g. https://huggingface.co) and converts it in
// the browser (wasm: src/api/hub.rs, the code `easel convert` runs) into the same manifest
// and shards the CLI would write. Weights arrive by HTTP Range: first each file's length and
// header, then its data in ranges of at most 32 MiB, streamed into the converter; full shards
// go to Cache Storage as they are made, the manifest last, so the model then lists, loads
// and deletes like any converted model, and a second load reads nothing from the network.
//
//   const model = await loadHubModel({ base, repo, revision, quant: 'q8_0', onProgress });
//   model.manifest, model.manifestText, model.shard(i)        (as loader.js's loadModel)

import init, { HubConverter } from '../pkg/easel.js';
import { CACHE_NAME, LoadError, cachedModel, checkStorage, openCachedModel } from './loader.js';

/** Largest Range request. */
export const MAX_CHUNK_BYTES = 32 << 20;
// The first read of a weights file: its length and, for most files, the whole header.
const PROBE_BYTES = 256 << 10;

/** The URL of `path` in a repository. */
export function hubFileUrl(base, repo, revision, path) {
  return `${base.replace(/\/+$/, '')}/${repo.replace(/^\/+|\/+$/g, '')}/resolve/${encodeURIComponent(revision)}/${path}`;
}

/** Where a conversion is cached: beside the repository's files, one folder per storage type. */
export function hubCacheBase(base, repo, revision, quant, preferFp16 = false) {
  return hubFileUrl(base, repo, revision, `easel-${quant}${preferFp16 ? '-fp16' : ''}/`);
}

/** fetch, with network and CORS failures turned into a sentence naming the URL. */
async function hubFetch(url, init = {}) {
  try {
    return await fetch(url, { cache: 'no-store', ...init });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new LoadError(
      `Could not read ${url}: the server is unreachable or does not let this page read it ` +
        '(CORS: it must send Access-Control-Allow-Origin, allow the Range header and expose Content-Range).',
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

/** A whole small file (configs, tokenizer), or null when the server has no such file. */
async function fetchSmall(url, signal) {
  const res = await hubFetch(url, { signal });
  if (res.status === 404) return null;
  if (!res.ok) throw httpError(url, res);
  return new Uint8Array(await res.arrayBuffer());
}

/**
 * Bytes [start, end) of `url` by a Range request, handed to `onBytes` as they arrive (the
 * server may send fewer when the file is shorter). Resolves to { size, length } from
 * Content-Range, or null on 404.
 */
async function fetchRange(url, start, end, onBytes, signal) {
  const res = await hubFetch(url, { headers: { Range: `bytes=${start}-${end - 1}` }, signal });
  if (res.status === 404) return null;
  if (res.status === 200) {
    await res.body?.cancel();
    throw new LoadError(
      `${url}: the server ignored the Range request and answered with the whole file (HTTP 200). ` +
        'Hub mode reads weights in ranges of at most 32 MiB; use a server with HTTP Range support, as the Hugging Face Hub has.',
    );
  }
  if (res.status !== 206) throw httpError(url, res);
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
  if (!m || Number(m[1]) !== start || Number(m[2]) >= end) {
    await res.body?.cancel();
    throw new LoadError(
      `${url}: the answer to the Range request bytes=${start}-${end - 1} has ` +
        (m ? `bytes ${m[1]}-${m[2]} instead` : 'no readable Content-Range (a server answering other sites must expose it with Access-Control-Expose-Headers)'),
    );
  }
  const length = Number(m[2]) - start + 1;
  let got = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    got += value.length;
    if (got > length) throw new LoadError(`${url}: the server sent more than the ${length} bytes of range ${start}-${end - 1}`);
    await onBytes(value);
  }
  if (got !== length) throw new LoadError(`${url}: the download stopped after ${got} of ${length} bytes`);
  return { size: Number(m[3]), length };
}

/** A weights file's size and header bytes, or null when the server has no such file. */
async function readHeader(url, signal) {
  const parts = [];
  const first = await fetchRange(url, 0, PROBE_BYTES, (b) => parts.push(b), signal);
  if (!first) return null;
  let bytes = concat(parts);
  const n = wasmCall(() => HubConverter.headerLength(url, bytes.subarray(0, 8), first.size));
  if (8 + n > bytes.length) {
    const rest = [bytes];
    await fetchRange(url, bytes.length, 8 + n, (b) => rest.push(b), signal);
    bytes = concat(rest);
  }
  return { size: first.size, header: bytes.subarray(8, 8 + n) };
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
function wasmCall(f) {
  try {
    return f();
  } catch (e) {
    throw new LoadError(e.message ?? String(e));
  }
}

async function removeEntries(cache, base) {
  for (const req of await cache.keys()) if (req.url.startsWith(base)) await cache.delete(req);
}

/**
 * Loads `repo` at `revision` from `base` converted to `quant` (f32, f16, q8_0, q4_0): from
 * the cache when converted before, else by converting it now. `onProgress` gets
 * { bytesDone, bytesTotal, fromCache, etaSeconds, shards: [{ file, size, state }] } where
 * bytes count the source weights and `shards` are the source files. `preferFp16` reads
 * `*.fp16.safetensors` first (half the download; the CLI reads full precision first).
 * `shardBytes`/`chunkBytes` (tests) shrink shards and Range requests. `check(manifestText)`
 * (a cached model) and `checkConversion(converter)` (once every header is planned) throw
 * when the model cannot run here: before any weight byte is downloaded.
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
  if (!repo) throw new LoadError('Hub mode needs a repository name, such as stabilityai/sd-turbo.');
  const url = (path) => hubFileUrl(base, repo, revision, path);
  const cacheBase = hubCacheBase(base, repo, revision, quant, preferFp16);
  const cached = await openCachedModel(cacheBase);
  if (cached) {
    check(cached.manifestText);
    const total = cached.manifest.shards.reduce((a, s) => a + s.size, 0);
    const shards = cached.manifest.shards.map((s) => ({ file: s.file, size: s.size, state: 'cached' }));
    onProgress({ bytesDone: total, bytesTotal: total, fromCache: total, etaSeconds: 0, shards });
    return cached;
  }
  await init();
  const cache = await caches.open(CACHE_NAME);
  await removeEntries(cache, cacheBase); // whatever an interrupted conversion left
  const index = await fetchSmall(url('model_index.json'), signal);
  if (!index) throw new LoadError(`${url('model_index.json')} was not found (HTTP 404): check the repository and the revision.`);
  // Named like `easel convert` names a folder (its file stem), so both manifests agree.
  const name = repo.split('/').filter(Boolean).pop().replace(/(.)\.[^.]*$/, '$1');
  const decoder = new TextDecoder();
  const conv = wasmCall(() => new HubConverter(url(''), name, decoder.decode(index), quant, shardBytes, preferFp16));
  try {
    const files = [];
    let extraBytes = 0;
    for (const comp of JSON.parse(conv.plan())) {
      for (const file of comp.configs) {
        const bytes = await fetchSmall(url(`${comp.name}/${file}`), signal);
        if (!bytes) continue;
        wasmCall(() => conv.addConfig(comp.name, url(`${comp.name}/${file}`), decoder.decode(bytes)));
        break;
      }
      for (const file of comp.files) {
        const path = `${comp.name}/${file}`;
        const bytes = await fetchSmall(url(path), signal);
        if (!bytes) continue;
        wasmCall(() => conv.addFile(path, bytes));
        await cache.put(new URL(path, cacheBase).href, new Response(bytes, { headers: { 'content-length': String(bytes.length) } }));
        extraBytes += bytes.length;
      }
      let found = null;
      for (const file of comp.weights) {
        const head = await readHeader(url(`${comp.name}/${file}`), signal);
        if (head) {
          found = { file: `${comp.name}/${file}`, ...head };
          break;
        }
      }
      if (!found && comp.weights_required) {
        throw new LoadError(`component '${comp.name}' has no weights at ${url(comp.name + '/')}: none of ${comp.weights.join(', ')} exists (HTTP 404).`);
      }
      if (found) {
        const ranges = JSON.parse(wasmCall(() => conv.addWeights(comp.name, url(found.file), found.header, found.size, Math.min(chunkBytes, MAX_CHUNK_BYTES))));
        files.push({ ...found, ranges, state: 'pending' });
      }
    }
    wasmCall(() => checkConversion(conv));
    await checkStorage(conv.outputBytes() + extraBytes);

    const bytesTotal = files.reduce((a, f) => a + f.ranges.reduce((b, [s, e]) => b + e - s, 0), 0);
    let bytesDone = 0;
    const started = performance.now();
    const report = () => {
      const rate = bytesDone / Math.max(1, performance.now() - started);
      const etaSeconds = rate > 0 ? (bytesTotal - bytesDone) / rate / 1000 : null;
      onProgress({ bytesDone, bytesTotal, fromCache: 0, etaSeconds, shards: files.map((f) => ({ file: f.file, size: f.size, state: f.state })) });
    };
    const storeShards = async () => {
      for (let s = conv.takeShard(); s; s = conv.takeShard()) {
        const [file, bytes] = [s.file, s.takeBytes()];
        s.free();
        await cache.put(new URL(file, cacheBase).href, new Response(bytes, { headers: { 'content-length': String(bytes.length) } }));
      }
    };
    report();
    for (const f of files) {
      f.state = 'downloading';
      for (const [start, end] of f.ranges) {
        const got = await fetchRange(url(f.file), start, end, async (bytes) => {
          wasmCall(() => conv.feed(bytes));
          bytesDone += bytes.length;
          report();
          await storeShards();
        }, signal);
        if (!got) throw new LoadError(`${url(f.file)} disappeared during the conversion (HTTP 404).`);
      }
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
