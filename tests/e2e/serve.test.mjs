// The static server: MIME types the browser insists on, Range reads, cross-origin isolation,
// and no path escapes.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { parseHubPath, parseRange, sendBytes, startCdn, startServer } from '../../scripts/serve.mjs';

let server;
let url;
let root;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'easel-serve-'));
  await writeFile(join(root, 'm.wasm'), Buffer.from([0, 97, 115, 109, 1, 0, 0, 0]));
  await writeFile(join(root, 'digits.txt'), '0123456789');
  // A Hub-style repository "org/model" with one file in a component folder.
  await mkdir(join(root, 'hub', 'org', 'model', 'unet'), { recursive: true });
  await writeFile(join(root, 'hub', 'org', 'model', 'unet', 'w.safetensors'), 'abcdefghij');
  ({ server, url } = await startServer({
    root,
    port: 0,
    hubRoot: join(root, 'hub'),
    onRequest: (req, res, path) => path === '/memory.bin' && (sendBytes(req, res, Buffer.from('0123456789')), true),
  }));
});

after(() => server?.close());

test('wasm is served as application/wasm (required for streaming compile)', async () => {
  const res = await fetch(`${url}m.wasm`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/wasm');
  assert.equal((await res.arrayBuffer()).byteLength, 8);
});

test('every response is cross-origin isolated (wasm threads) and embeddable, unless isolation is off', async () => {
  for (const path of ['digits.txt', 'missing.txt', 'org/model/resolve/main/unet/w.safetensors']) {
    const res = await fetch(`${url}${path}`);
    assert.equal(res.headers.get('cross-origin-opener-policy'), 'same-origin', path);
    assert.equal(res.headers.get('cross-origin-embedder-policy'), 'require-corp', path);
    assert.equal(res.headers.get('cross-origin-resource-policy'), 'cross-origin', path);
  }
  const plain = await startServer({ root, port: 0, isolate: false });
  try {
    const res = await fetch(`${plain.url}digits.txt`);
    assert.equal(await res.text(), '0123456789');
    assert.equal(res.headers.get('cross-origin-opener-policy'), null);
    assert.equal(res.headers.get('cross-origin-embedder-policy'), null);
    assert.equal(res.headers.get('cross-origin-resource-policy'), 'cross-origin');
  } finally {
    plain.server.close();
  }
});

test('range requests return exactly the asked bytes', async () => {
  const res = await fetch(`${url}digits.txt`, { headers: { Range: 'bytes=2-5' } });
  assert.equal(res.status, 206);
  assert.equal(res.headers.get('content-range'), 'bytes 2-5/10');
  assert.equal(await res.text(), '2345');
  const tail = await fetch(`${url}digits.txt`, { headers: { Range: 'bytes=-3' } });
  assert.equal(await tail.text(), '789');
  const past = await fetch(`${url}digits.txt`, { headers: { Range: 'bytes=20-' } });
  assert.equal(past.status, 416);
});

test('parseRange handles open and suffix ranges', () => {
  assert.deepEqual(parseRange('bytes=0-', 10), { start: 0, end: 9 });
  assert.deepEqual(parseRange('bytes=8-100', 10), { start: 8, end: 9 });
  assert.deepEqual(parseRange('bytes=-4', 10), { start: 6, end: 9 });
  assert.equal(parseRange(undefined, 10), null);
});

test('paths cannot escape the served folder', async () => {
  const res = await fetch(`${url}..%2f..%2fetc%2fpasswd`);
  assert.ok(res.status === 403 || res.status === 404, `status ${res.status}`);
  assert.equal((await fetch(`${url}missing.bin`)).status, 404);
});

test('Hub-style paths serve repository files with Range and CORS, any revision', async () => {
  assert.deepEqual(parseHubPath('/org/model/resolve/main/unet/w.safetensors'), { repo: 'org/model', revision: 'main', path: 'unet/w.safetensors' });
  assert.equal(parseHubPath('/org/model/unet/w.safetensors'), null);
  const res = await fetch(`${url}org/model/resolve/v1.0/unet/w.safetensors`, { headers: { Range: 'bytes=3-5' } });
  assert.equal(res.status, 206);
  assert.equal(res.headers.get('content-range'), 'bytes 3-5/10');
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
  assert.match(res.headers.get('access-control-expose-headers'), /Content-Range/);
  assert.equal(await res.text(), 'def');
  assert.equal((await fetch(`${url}org/model/resolve/main/unet/missing.safetensors`)).status, 404);
  assert.ok([403, 404].includes((await fetch(`${url}org/model/resolve/main/..%2f..%2f..%2fetc%2fpasswd`)).status));
});

test('bytes held in memory are served with Range too', async () => {
  const res = await fetch(`${url}memory.bin`, { headers: { Range: 'bytes=7-' } });
  assert.equal(res.status, 206);
  assert.equal(res.headers.get('content-range'), 'bytes 7-9/10');
  assert.equal(await res.text(), '789');
  assert.equal(await (await fetch(`${url}memory.bin`)).text(), '0123456789');
});

test('the Hub API lists a repository with sizes and LFS sha256s', async () => {
  const res = await fetch(`${url}api/models/org/model/tree/main?recursive=true`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
  const sha = createHash('sha256').update('abcdefghij').digest('hex');
  assert.deepEqual(
    (await res.json()).map(({ type, path, size, lfs }) => ({ type, path, size, sha256: lfs?.oid })),
    [
      { type: 'directory', path: 'unet', size: 0, sha256: undefined },
      { type: 'file', path: 'unet/w.safetensors', size: 10, sha256: sha },
    ],
  );
  assert.equal((await fetch(`${url}api/models/org/none/tree/main`)).status, 404);
});

test('the CDN serves signed paths by Range, exposes no header and refuses preflights', async () => {
  const { server: cdn, url: cdnUrl } = await startCdn({ root: join(root, 'hub') });
  try {
    const res = await fetch(`${cdnUrl}xet/org/model/unet/w.safetensors?X-Amz-Signature=ab`, { headers: { Range: 'bytes=3-5' } });
    assert.equal(res.status, 206);
    assert.equal(await res.text(), 'def');
    assert.equal(res.headers.get('access-control-expose-headers'), null);
    assert.equal((await fetch(`${cdnUrl}xet/org/model/unet/w.safetensors`)).status, 403, 'unsigned');
    assert.equal((await fetch(`${cdnUrl}xet/org/model/unet/w.safetensors?X-Amz-Signature=ab`, { method: 'OPTIONS' })).status, 403);
  } finally {
    cdn.close();
  }
});
