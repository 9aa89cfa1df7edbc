// Model loader for the browser: fetches a converted model (manifest.json + shards) with
// progress, verifies every shard's sha256 before it is stored, keeps shards in the Cache
// Storage API so the next visit loads offline, and resumes after an interruption with the
// shards still missing. A corrupt or partial shard is never stored. Each later load reads
// the shards back and checks them against the fast checksum stored with them (checksum.js),
// so damage on disk is caught and that shard fetched again.
//
//   const model = await loadModel(baseUrl, { onProgress, parallel: 4 });
//   model.manifest, model.manifestText; model.shard(i) -> Promise<Uint8Array>   (one shard at a time: no giant buffer)
//
// Hub mode (www/hub.js) converts a diffusers repository in the browser and caches the
// result here in the same form, so both kinds of model list, load and delete alike.

import { CHECKSUM_HEADER, checksumHex } from './checksum.js';
import { EaselError } from './protocol.js';

export const CACHE_NAME = 'easel-models-v1';

/** A load failure with a sentence a person can act on, and its code (protocol.js CODES). */
export class LoadError extends EaselError {
  constructor(message, code = 'network') {
    super(code, message);
    this.name = 'LoadError';
  }
}

const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;

export async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

function shardUrl(base, file) {
  return new URL(file, base).href;
}

/** Downloads one shard into a buffer of its declared size, reporting bytes as they come. */
async function download(url, size, onBytes, signal) {
  const res = await fetch(url, { cache: 'no-store', signal });
  if (!res.ok) throw new LoadError(`HTTP ${res.status} ${res.statusText}`.trim());
  const out = new Uint8Array(size);
  let at = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (at + value.length > size) throw new LoadError(`the server sent more than the expected ${size} bytes`, 'model-corrupt');
    out.set(value, at);
    at += value.length;
    onBytes(value.length);
  }
  if (at !== size) throw new LoadError(`the download stopped after ${at} of ${size} bytes`);
  return out;
}

/** Fetches and verifies shard `entry`; a second try after a checksum failure, then an error. */
async function fetchVerified(base, entry, onBytes, signal) {
  const url = shardUrl(base, entry.file);
  for (let attempt = 1; ; attempt++) {
    let counted = 0;
    let bytes;
    try {
      bytes = await download(url, entry.size, (n) => {
        counted += n;
        onBytes(n);
      }, signal);
    } catch (e) {
      onBytes(-counted);
      if (e.name === 'AbortError') throw e;
      throw new LoadError(`shard ${entry.file}: ${e.message}. Reload the page to resume; finished shards are kept.`, e.code ?? 'network');
    }
    if ((await sha256Hex(bytes)) === entry.sha256) return bytes;
    onBytes(-counted);
    if (attempt === 2) throw new LoadError(`shard ${entry.file} is corrupt on the server (sha256 mismatch, twice); it was not stored.`, 'model-corrupt');
  }
}

/** Checks the browser can hold `needed` more bytes; asks for persistent storage. */
export async function checkStorage(needed) {
  if (!navigator.storage) return;
  if (navigator.storage.persist) await navigator.storage.persist().catch(() => false);
  if (!navigator.storage.estimate || needed === 0) return;
  const { quota, usage } = await navigator.storage.estimate();
  if (quota !== undefined && usage !== undefined && quota - usage < needed) {
    throw new LoadError(
      `This model needs ${mb(needed)} more of storage, but the browser allows only ${mb(Math.max(0, quota - usage))} more for this site. ` +
        'Free space on the disk or delete cached models, then reload.',
      'quota',
    );
  }
}

/**
 * Loads the model at `base` (a URL ending in '/'). `onProgress` gets
 * { bytesDone, bytesTotal, fromCache, etaSeconds, shards: [{ file, size, state }] }.
 * `check(manifestText)` throws when the model cannot run here (before any download);
 * `signal` aborts the download, keeping the shards already verified and cached.
 */
export async function loadModel(base, { onProgress = () => {}, parallel = 4, signal, check = () => {} } = {}) {
  if (!base.endsWith('/')) base += '/';
  const cache = await caches.open(CACHE_NAME);
  const manifestUrl = new URL('manifest.json', base).href;
  let res;
  try {
    res = await fetch(manifestUrl, { cache: 'no-cache', signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    // Offline: a model cached on an earlier visit still loads.
    res = await cache.match(manifestUrl);
    if (!res) throw new LoadError(`Could not reach ${manifestUrl} (${e.message}) and the model is not cached.`);
  }
  if (!res.ok) throw new LoadError(`${base}manifest.json: HTTP ${res.status}`);
  // Kept as text: the engine checks the content hash over exactly what was written.
  const manifestText = await res.text();
  let manifest;
  try {
    manifest = JSON.parse(manifestText);
  } catch {
    throw new LoadError(`${base}manifest.json is not JSON.`, 'model-corrupt');
  }
  if (manifest.format_version !== 1) {
    throw new LoadError(`${base}manifest.json has format version ${manifest.format_version}; this Easel reads version 1. Update Easel or re-convert the model.`, 'unsupported-model');
  }
  // Will it fit the engine's backend? Asked before any shard is fetched (throws why not).
  try {
    check(manifestText);
  } catch (e) {
    throw e instanceof LoadError ? e : new LoadError(e.message ?? String(e), 'too-large');
  }
  const shards = manifest.shards.map((s) => ({ file: s.file, size: s.size, state: 'pending' }));
  const bytesTotal = shards.reduce((a, s) => a + s.size, 0);
  let bytesDone = 0;
  let fromCache = 0;
  const started = performance.now();
  const report = () => {
    const fetched = bytesDone - fromCache;
    const rate = fetched / Math.max(1, performance.now() - started);
    const etaSeconds = rate > 0 ? (bytesTotal - bytesDone) / rate / 1000 : null;
    onProgress({ bytesDone, bytesTotal, fromCache, etaSeconds, shards: shards.map((s) => ({ ...s })) });
  };

  // Which shards are already cached (and intact)?
  const missing = [];
  for (const [i, entry] of manifest.shards.entries()) {
    const hit = await cache.match(shardUrl(base, entry.file));
    if (hit && Number(hit.headers.get('content-length') ?? entry.size) === entry.size) {
      shards[i].state = 'cached';
      bytesDone += entry.size;
      fromCache += entry.size;
    } else {
      missing.push(i);
    }
  }
  report();
  await checkStorage(missing.reduce((a, i) => a + manifest.shards[i].size, 0));
  await cache.put(manifestUrl, new Response(manifestText, { headers: { 'content-type': 'application/json' } }));

  const queue = [...missing];
  const worker = async () => {
    while (queue.length) {
      const i = queue.shift();
      const entry = manifest.shards[i];
      shards[i].state = 'downloading';
      report();
      const bytes = await fetchVerified(base, entry, (n) => {
        bytesDone += n;
        report();
      }, signal).catch((e) => {
        shards[i].state = 'failed';
        report();
        throw e;
      });
      await cache.put(shardUrl(base, entry.file), cacheEntry(bytes));
      shards[i].state = 'done';
      report();
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, Math.max(1, missing.length)) }, worker));
  // Small files that travel with the weights (tokenizer): verified and cached the same way.
  for (const entry of fileEntries(manifest)) {
    if (await cache.match(shardUrl(base, entry.file))) continue;
    const bytes = await fetchVerified(base, entry, () => {}, signal);
    await cache.put(shardUrl(base, entry.file), cacheEntry(bytes));
  }

  return cachedModel(cache, base, manifest, manifestText);
}

/** The manifest's `files` (tokenizer files) in the shape `fetchVerified` takes. */
function fileEntries(manifest) {
  return (manifest.files ?? []).map((f) => ({ file: f.path, size: f.size, sha256: f.sha256 }));
}

/**
 * What a verified shard or file is cached as: its bytes, their length, and their XXH32
 * (checksum.js), which every later load checks instead of the sha256.
 */
export function cacheEntry(bytes) {
  return new Response(bytes, { headers: { 'content-length': String(bytes.length), [CHECKSUM_HEADER]: checksumHex(bytes) } });
}

/**
 * A cached entry's bytes if they have `entry`'s size and the checksum stored with them; else
 * the entry is deleted (the next load fetches it again) and the answer is null. An entry an
 * earlier Easel cached without a checksum is checked by `entry.sha256` instead, once: it is
 * then cached again with its checksum. Read through a Blob: Chrome then reads the entry in one
 * piece, where `response.arrayBuffer()` streams it through a pipe (1.8x slower for 32 MiB
 * shards in Chromium 156).
 */
export async function readVerified(cache, url, entry) {
  const hit = await cache.match(url);
  const bytes = hit ? new Uint8Array(await (await hit.blob()).arrayBuffer()) : null;
  if (bytes && bytes.length === entry.size) {
    const stored = hit.headers.get(CHECKSUM_HEADER);
    if (stored !== null && checksumHex(bytes) === stored) return bytes;
    if (stored === null && (await sha256Hex(bytes)) === entry.sha256) {
      // Best effort: where the cache cannot take it now, the sha256 is checked next time too.
      await cache.put(url, cacheEntry(bytes)).catch(() => {});
      return bytes;
    }
  }
  await cache.delete(url);
  return null;
}

/** Reader workers (`ShardReaders`): how many cached shards are read back at once. */
export const SHARD_READERS = 3;

/**
 * Workers that read cached shards back (shard-reader.js). One JS thread reads a shard and
 * checks it in turn, never both at once; with two, one checks while the other reads (2.2 s
 * against 3.6 s for 1.5 GB, Chromium 156 on 2 cores, when the check was a sha256), and a
 * third still waited less for Cache Storage then (1.97-2.01 against 2.02-2.21 s per GB to
 * ready). With the XXH32 check, 2 and 3 readers are level (medians 1.86-1.97 s per GB each,
 * alternated, same machine).
 * Started on the first read, stopped when idle; where workers cannot start, shards are read
 * on the calling thread.
 */
class ShardReaders {
  static COUNT = SHARD_READERS;
  static IDLE_MS = 2000;
  static #shared = null;
  #workers = [];
  #pending = new Map(); // id -> { cache, url, entry, resolve, reject }
  #next = 0;
  #ids = 0;
  #idle = null;
  #failed = false; // a worker could not run here: read on the calling thread from then on

  static read(cache, url, entry) {
    if (typeof Worker === 'undefined') return readVerified(cache, url, entry);
    ShardReaders.#shared ??= new ShardReaders();
    return ShardReaders.#shared.#read(cache, url, entry);
  }

  #read(cache, url, entry) {
    if (this.#failed) return readVerified(cache, url, entry);
    clearTimeout(this.#idle);
    if (!this.#workers.length) {
      try {
        for (let i = 0; i < ShardReaders.COUNT; i++) this.#workers.push(this.#start());
      } catch {
        this.#failed = true;
        this.#stop();
        return readVerified(cache, url, entry);
      }
    }
    const worker = this.#workers[this.#next++ % this.#workers.length];
    const id = ++this.#ids;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { cache, url, entry, resolve, reject });
      worker.postMessage({ id, url, size: entry.size, sha256: entry.sha256 });
    });
  }

  #start() {
    const worker = new Worker(new URL('./shard-reader.js', import.meta.url), { type: 'module' });
    worker.onmessage = ({ data }) => {
      const p = this.#pending.get(data.id);
      this.#pending.delete(data.id);
      if (data.error) p.reject(new LoadError(`cached shard ${p.entry.file}: ${data.error}`, 'model-corrupt'));
      else p.resolve(data.damaged ? null : data.bytes);
      if (!this.#pending.size) this.#idle = setTimeout(() => this.#stop(), ShardReaders.IDLE_MS);
    };
    // A worker that cannot run (its script blocked or failed): every reader stops, and the
    // reads they were given go on this thread.
    worker.onerror = (e) => {
      e.preventDefault();
      this.#failed = true;
      this.#stop();
      const given = [...this.#pending.values()];
      this.#pending.clear();
      for (const p of given) readVerified(p.cache, p.url, p.entry).then(p.resolve, p.reject);
    };
    return worker;
  }

  #stop() {
    for (const w of this.#workers) w.terminate();
    this.#workers = [];
  }
}

/** A model whose shards are all in `cache` under `base`, read one shard at a time. */
export function cachedModel(cache, base, manifest, manifestText) {
  const files = fileEntries(manifest);
  return {
    manifest,
    manifestText,
    base,
    /** Shard i's bytes from the cache, verified again (a damaged cache entry is dropped). */
    async shard(i) {
      const entry = manifest.shards[i];
      const bytes = await ShardReaders.read(cache, shardUrl(base, entry.file), entry);
      if (bytes) return bytes;
      throw new LoadError(`cached shard ${entry.file} was damaged and has been removed; reload to fetch it again.`, 'model-corrupt');
    },
    /** The i-th entry of `manifest.files` ({ path, bytes }), from the cache, verified again. */
    async file(i) {
      const entry = files[i];
      const bytes = await readVerified(cache, shardUrl(base, entry.file), entry);
      if (bytes) return { path: entry.file, bytes };
      throw new LoadError(`cached file ${entry.file} was damaged and has been removed; reload to fetch it again.`, 'model-corrupt');
    },
  };
}

/** The model cached under `base` if its manifest and every shard are there, else null. */
export async function openCachedModel(base) {
  const cache = await caches.open(CACHE_NAME);
  const hit = await cache.match(new URL('manifest.json', base).href);
  if (!hit) return null;
  const manifestText = await hit.text();
  const manifest = JSON.parse(manifestText);
  for (const entry of [...manifest.shards, ...fileEntries(manifest)]) {
    const shard = await cache.match(shardUrl(base, entry.file));
    if (!shard || Number(shard.headers.get('content-length') ?? -1) !== entry.size) return null;
  }
  return cachedModel(cache, base, manifest, manifestText);
}

/** Cached models: [{ base, bytes, shards }]. Entries belong to the model whose manifest
 * folder holds them (Hub-mode models keep tokenizer files in subfolders). */
export async function listCachedModels() {
  const cache = await caches.open(CACHE_NAME);
  const requests = await cache.keys();
  const bases = requests.filter((r) => r.url.endsWith('/manifest.json')).map((r) => r.url.slice(0, -'manifest.json'.length));
  const models = new Map();
  for (const req of requests) {
    const owner = bases.filter((b) => req.url.startsWith(b)).sort((a, b) => b.length - a.length)[0];
    const base = owner ?? req.url.slice(0, req.url.lastIndexOf('/') + 1);
    const m = models.get(base) ?? { base, bytes: 0, shards: 0 };
    if (!req.url.endsWith('/manifest.json')) {
      const res = await cache.match(req);
      m.bytes += Number(res.headers.get('content-length') ?? 0);
      if (/\/shard-\d+\.bin$/.test(req.url)) m.shards += 1;
    }
    models.set(base, m);
  }
  return [...models.values()];
}

/** Removes one cached model (every entry under `base`). */
export async function deleteCachedModel(base) {
  if (!base.endsWith('/')) base += '/';
  const cache = await caches.open(CACHE_NAME);
  for (const req of await cache.keys()) if (req.url.startsWith(base)) await cache.delete(req);
}

/** Removes every cached model. */
export async function deleteAllCachedModels() {
  await caches.delete(CACHE_NAME);
}
