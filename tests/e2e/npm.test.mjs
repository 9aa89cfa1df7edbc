// The npm package as a user meets it: scripts/pack.sh makes the tarball, a scratch project
// installs it, README's "Use it from JavaScript" page is pasted in as written and served from
// its own port, and headless Chromium loads the bundled model and generates. The image must
// be the native CLI's for the same prompt and seed; the package's types must compile a
// TypeScript user's code (tests/npm/usage.ts) with `tsc --strict`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../scripts/serve.mjs';
import { ROOT, artifactPath, launch, maxDiff, pngPixels, runCli } from './browser.mjs';
import { pngText } from './png-text.mjs';

/** The first ```html block under `heading` in a markdown file. */
function htmlBlock(file, heading) {
  const text = `\n${readFileSync(file, 'utf8')}`;
  const at = text.indexOf(`\n${heading}\n`);
  assert.ok(at >= 0, `${file} has no "${heading}" section`);
  const m = /```html\n([\s\S]*?)```/.exec(text.slice(at));
  assert.ok(m, `${file}'s "${heading}" has no html block`);
  return m[1];
}

let scratch;
let server;
let url;
let tarball;
before(async () => {
  tarball = execFileSync('scripts/pack.sh', { cwd: ROOT, encoding: 'utf8' }).trim().split('\n').pop();
  scratch = mkdtempSync(join(tmpdir(), 'easel-npm-'));
  writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }));
  // The package has no dependencies: installing the tarball needs no registry.
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error', tarball], { cwd: scratch, stdio: 'inherit' });
  writeFileSync(join(scratch, 'index.html'), htmlBlock(join(ROOT, 'README.md'), '## Use it from JavaScript'));
  ({ server, url } = await startServer({ root: scratch, port: 0 }));
});
after(() => {
  server?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

test('the npm README shows the same page as README.md', () => {
  assert.equal(htmlBlock(join(ROOT, 'npm', 'README.md'), '# easel-web'), htmlBlock(join(ROOT, 'README.md'), '## Use it from JavaScript'));
});

test("README's JavaScript example, pasted into a project that installed the tarball, generates the CLI's image", async () => {
  const cli = await artifactPath('npm-cli.png');
  runCli(['generate', '--model', 'www/models/emoji-dcgan', '--prompt', 'red heart', '--seed', '42', '--backend', 'cpu', '--out', cli]);
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const origins = new Set();
    const paths = [];
    page.on('request', (r) => {
      origins.add(new URL(r.url()).origin);
      paths.push(new URL(r.url()).pathname);
    });
    await page.goto(new URL('index.html', url).href);
    await page.waitForFunction(() => /^(done|failed)/.test(document.getElementById('status').textContent), null, { timeout: 180_000 });
    const status = await page.locator('#status').textContent();
    assert.match(status, /^done on the (GPU|CPU)$/, status);
    // The image the page shows: its PNG's pixels and settings.
    const png = Buffer.from(
      await page.evaluate(async () => {
        const blob = await (await fetch(document.querySelector('img').src)).blob();
        return Array.from(new Uint8Array(await blob.arrayBuffer()));
      }),
    );
    const text = pngText(png);
    assert.equal(text.prompt, 'red heart');
    assert.equal(text.seed, '42');
    const diff = maxDiff(await pngPixels(page, png), await pngPixels(page, readFileSync(cli)));
    console.log(`# npm package page vs CLI: max |diff| = ${diff} of 255 (${status})`);
    assert.ok(diff <= 2, `the package's image differs from the CLI's by ${diff} of 255`);
    assert.deepEqual([...origins], [new URL(url).origin], 'everything came from the scratch project');
    // Served cross-origin isolated, the package runs its threaded build, and its threads.
    assert.ok(paths.some((p) => p.endsWith('/easel-web/pkg/threads/easel_bg.wasm')), 'the threaded engine was loaded');
    assert.ok(paths.some((p) => p.endsWith('/easel-web/www/engine-thread.js')), 'a CPU thread worker was started');
    // Shards are read back from the cache by the package's reader workers (without the file
    // the loader would fall back, slower, to reading them on the engine's thread).
    assert.ok(paths.some((p) => p.endsWith('/easel-web/www/shard-reader.js')), 'a shard reader worker was started');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test("the package's types compile a TypeScript user's code (tsc --strict)", () => {
  copyFileSync(join(ROOT, 'tests', 'npm', 'usage.ts'), join(scratch, 'usage.ts'));
  const tsc = join(ROOT, 'node_modules', '.bin', 'tsc');
  const args = ['--noEmit', '--strict', '--target', 'es2022', '--module', 'esnext', '--moduleResolution', 'bundler', '--lib', 'es2022,dom', '--types', '', 'usage.ts'];
  execFileSync(tsc, args, { cwd: scratch, stdio: 'inherit' });
  // And a mistake is caught: the types are not `any`.
  writeFileSync(join(scratch, 'wrong.ts'), "import { Easel } from 'easel-web';\nexport const f = (e: Easel) => e.generate({ seed: 'forty-two' });\n");
  assert.throws(
    () => execFileSync(tsc, [...args.slice(0, -1), 'wrong.ts'], { cwd: scratch, stdio: 'pipe' }),
    (e) => /wrong\.ts.*string.*number/s.test(String(e.stdout)),
  );
});
