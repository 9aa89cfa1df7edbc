#!/usr/bin/env node
// Static file server for the page: correct MIME types for wasm and JS modules, HTTP Range
// (shards, Hub-style reads), CORS and cross-origin isolation, bound to loopback. No dependencies.
//
//   node scripts/serve.mjs [--port N] [--root DIR] [--hub DIR] [--no-isolation]   (PORT env also works; default 8080)
//
// Responses carry COOP/COEP (cross-origin isolation: wasm threads for the CPU backend);
// --no-isolation serves without them, as a host that sets no headers would (one thread).
//
// --hub DIR also serves the diffusers repositories in DIR the way the Hugging Face Hub does:
// files at /{repo}/resolve/{revision}/{path} and the API's file list (sizes, LFS sha256s) at
// /api/models/{repo}/tree/{revision}: try Hub mode with base http://127.0.0.1:8080 and repo
// sd2-tiny after `--hub tests/fixtures`. Tests also run it as the Hub behaves today, with
// weights redirected to a CDN origin (`hubCdn`, `startCdn`).

import { createServer } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.safetensors': 'application/octet-stream',
  '.bin': 'application/octet-stream',
};

/** Parses a single `bytes=a-b` range against a file size; null when absent or unsatisfiable. */
export function parseRange(header, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header || '');
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start, end;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start <= end && start < size ? { start, end } : { unsatisfiable: true };
}

/** Answers a GET/HEAD for `size` bytes, honouring a single Range; `stream(start, end)` gives the body. */
function sendRanged(req, res, size, type, stream) {
  const headers = { 'Content-Type': type, 'Accept-Ranges': 'bytes', 'Cache-Control': 'no-cache' };
  const range = parseRange(req.headers.range, size);
  if (range?.unsatisfiable) {
    return res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}` }).end();
  }
  const { start, end } = range ?? { start: 0, end: size - 1 };
  const length = size === 0 ? 0 : end - start + 1;
  res.writeHead(range ? 206 : 200, {
    ...headers,
    'Content-Length': length,
    ...(range ? { 'Content-Range': `bytes ${start}-${end}/${size}` } : {}),
  });
  if (req.method === 'HEAD' || length === 0) return res.end();
  stream(start, end).pipe(res);
}

/** Sends bytes held in memory with Range support (tests serve doctored files this way). */
export function sendBytes(req, res, bytes, type = 'application/octet-stream') {
  sendRanged(req, res, bytes.length, type, (start, end) => Readable.from([bytes.subarray(start, end + 1)]));
}

/** Sends `file` under `base` (never outside it) with Range support; 404 when absent. */
async function sendFile(req, res, base, path) {
  let file = normalize(join(base, path));
  if (file !== base && !file.startsWith(base + sep)) return res.writeHead(403).end('forbidden');
  let info;
  try {
    info = await stat(file);
    if (info.isDirectory()) {
      file = join(file, 'index.html');
      info = await stat(file);
    }
  } catch {
    return res.writeHead(404, { 'Content-Type': 'text/plain' }).end(`not found: ${path}`);
  }
  sendRanged(req, res, info.size, MIME[extname(file)] ?? 'application/octet-stream', (start, end) => createReadStream(file, { start, end }));
}

/** `/{repo}/resolve/{revision}/{path}` -> { repo, revision, path }, or null. */
export function parseHubPath(path) {
  const m = /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(path);
  return m ? { repo: m[1], revision: m[2], path: m[3] } : null;
}

/** Files the Hub keeps in LFS (served through the CDN, listed with a sha256). */
const isLfs = (path) => /\.(safetensors|bin|ckpt|pt|onnx|msgpack)$/.test(path);

/** `/api/models/{repo}/tree/{revision}` -> { repo, revision }, or null. */
export function parseTreePath(path) {
  const m = /^\/api\/models\/(.+?)\/tree\/([^/]+)$/.exec(path);
  return m ? { repo: m[1], revision: m[2] } : null;
}

/** The Hub API's recursive tree of `dir`: [{ type, path, size, oid, lfs? }], files sorted. */
export async function hubTree(dir) {
  const out = [];
  const walk = async (rel) => {
    for (const entry of (await readdir(join(dir, rel), { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        out.push({ type: 'directory', path, oid: createHash('sha1').update(path).digest('hex'), size: 0 });
        await walk(path);
      } else if (entry.isFile()) {
        const bytes = await readFile(join(dir, path));
        const oid = createHash('sha1').update(bytes).digest('hex');
        const sha256 = createHash('sha256').update(bytes).digest('hex');
        out.push({ type: 'file', path, size: bytes.length, oid, ...(isLfs(path) ? { lfs: { oid: sha256, size: bytes.length, pointerSize: 134 } } : {}) });
      }
    }
  };
  await walk('');
  return out;
}

/** The decoded path of a request, or null (the caller answers 400) when it cannot be decoded. */
function requestPath(req) {
  try {
    return decodeURIComponent(new URL(req.url, 'http://x').pathname);
  } catch {
    return null;
  }
}

/**
 * Starts the server; resolves to { server, url }. Port 0 picks a free one. `onRequest(req,
 * res, path)` (tests) may answer a request itself by returning true. With `hubRoot`, paths
 * `/{repo}/resolve/{revision}/{file}` serve `hubRoot/{repo}/{file}` (any revision), the way
 * the Hugging Face Hub serves a repository, for Hub mode, and `/api/models/{repo}/tree/
 * {revision}` lists its files. With `hubCdn` (a `startCdn` server's URL) weights files
 * answer 302 to that origin with a signed-looking query, as the Hub's `resolve/` does.
 */
export function startServer({ root, port = 8080, host = '127.0.0.1', onRequest, hubRoot, hubCdn, isolate = true } = {}) {
  const base = resolve(root ?? join(fileURLToPath(import.meta.url), '..', '..'));
  const hubBase = hubRoot ? resolve(hubRoot) : null;
  const server = createServer(async (req, res) => {
    // Cross-origin isolation: what lets the page share wasm memory with worker threads
    // (the CPU backend on every core). Every response may also be embedded by an isolated
    // site (the widget, the npm package's files).
    if (isolate) {
      res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
      res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    }
    res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Allow-Headers', 'Range');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Length, Content-Range, Accept-Ranges');
    const path = requestPath(req);
    if (path === null) return res.writeHead(400).end('bad path');
    if (onRequest && (await onRequest(req, res, path))) return;
    if (req.method === 'OPTIONS') return res.writeHead(204).end();
    if (req.method !== 'GET' && req.method !== 'HEAD') return res.writeHead(405).end();
    const tree = hubBase && parseTreePath(path);
    if (tree) {
      const dir = normalize(join(hubBase, tree.repo));
      if (!dir.startsWith(hubBase + sep)) return res.writeHead(403).end('forbidden');
      try {
        if (!(await stat(dir)).isDirectory()) throw new Error('not a repository');
      } catch {
        return res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: 'Repository not found' }));
      }
      return res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(await hubTree(dir)));
    }
    const hub = hubBase && parseHubPath(path);
    if (hub && hubCdn && isLfs(hub.path)) {
      const signed = `X-Amz-Expires=3600&X-Amz-Signature=${randomBytes(16).toString('hex')}`;
      const location = `${hubCdn.replace(/\/+$/, '')}/xet/${hub.repo}/${hub.path.split('/').map(encodeURIComponent).join('/')}?${signed}`;
      return res.writeHead(302, { Location: location, 'Content-Type': 'text/plain' }).end(`Found. Redirecting to ${location}`);
    }
    if (hub) return sendFile(req, res, hubBase, `${hub.repo}/${hub.path}`);
    return sendFile(req, res, base, path);
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, host, () => ok({ server, url: `http://${host}:${server.address().port}/` }));
  });
}

/**
 * A CDN as the Hub's weights redirect to: `/xet/{repo}/{path}?{signature}` serves
 * `root/{repo}/{path}` with Range, lets any origin read the body but exposes no header
 * (no Content-Range, no Content-Length), and refuses CORS preflights with 403. Resolves to
 * { server, url }; `onRequest(req, res, path)` as for startServer.
 */
export function startCdn({ root, port = 0, host = '127.0.0.1', onRequest } = {}) {
  const base = resolve(root);
  const server = createServer(async (req, res) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    const path = requestPath(req);
    if (path === null) return res.writeHead(400).end('bad path');
    if (onRequest && (await onRequest(req, res, path))) return;
    if (req.method === 'OPTIONS') return res.writeHead(403, { 'Content-Type': 'text/plain' }).end('preflight requests are not allowed');
    if (req.method !== 'GET' && req.method !== 'HEAD') return res.writeHead(405).end();
    const m = /^\/xet\/(.+)$/.exec(path);
    if (!m || !new URL(req.url, 'http://x').searchParams.get('X-Amz-Signature')) return res.writeHead(403).end('unsigned');
    return sendFile(req, res, base, m[1]);
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, host, () => ok({ server, url: `http://${host}:${server.address().port}/` }));
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const port = Number(opt('--port') ?? process.env.PORT ?? 8080);
  const hubRoot = opt('--hub');
  startServer({ root: opt('--root'), port, hubRoot, isolate: !args.includes('--no-isolation') })
    .then(({ url }) => {
      console.log(`Easel is being served at ${url}  (Ctrl+C to stop)`);
      if (hubRoot) console.log(`Hub mode: base ${url.slice(0, -1)}, repositories from ${hubRoot} (e.g. repo sd2-tiny)`);
    })
    .catch((e) => {
      console.error(e.code === 'EADDRINUSE' ? `port ${port} is in use: pass --port N or set PORT` : e.message);
      process.exit(1);
    });
}
