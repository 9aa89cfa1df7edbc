// Shared set-up for page tests: Debian's Chromium driven by playwright-core, with a
// SwiftShader WebGPU adapter (no GPU on CI machines) and no background network traffic.

import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const ARTIFACTS = join(ROOT, 'tests', 'artifacts');

const QUIET = ['--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
export const WEBGPU_FLAGS = ['--no-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-webgpu-adapter=swiftshader', ...QUIET];
// Chromium with WebGPU switched off, to see what a visitor without it gets.
export const NO_WEBGPU_FLAGS = ['--no-sandbox', '--disable-features=WebGPU,Vulkan', ...QUIET];

export async function launch(args = WEBGPU_FLAGS) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args,
  });
}

export async function artifactPath(name) {
  await mkdir(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}

/** RGBA pixels of a canvas on the page. */
export function canvasPixels(page, id, width, height) {
  return page.evaluate(([id, w, h]) => Array.from(document.getElementById(id).getContext('2d').getImageData(0, 0, w, h).data), [id, width, height]);
}

/** RGBA pixels of PNG bytes, decoded by the browser (the same decoder the page's canvas uses). */
export function pngPixels(page, png) {
  return page.evaluate(async (b64) => {
    const bmp = await createImageBitmap(new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type: 'image/png' }));
    const c = new OffscreenCanvas(bmp.width, bmp.height);
    c.getContext('2d').drawImage(bmp, 0, 0);
    return Array.from(c.getContext('2d').getImageData(0, 0, bmp.width, bmp.height).data);
  }, Buffer.from(png).toString('base64'));
}

/** The page's engine worker (www/worker.js, with the test hooks), not its CPU thread workers: they never return to their event loop, so evaluating in one waits forever. */
export const engineWorker = (page) => page.workers().find((w) => w.url().endsWith('/www/worker.js'));

/** The largest absolute difference of two equally long pixel arrays. */
export function maxDiff(a, b) {
  if (a.length !== b.length) throw new Error(`${a.length} vs ${b.length} values`);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
}

let cliExecutable;

/**
 * The native `easel` CLI's path, built the way `cargo test` builds it: with the
 * dev-dependencies' features unified in, so after the native suite this is a no-op. (`cargo
 * run` resolves features without them and rebuilds wgpu, candle and the engine a second
 * time: minutes on 2 cores.)
 */
export function easelCli() {
  if (!cliExecutable) {
    const messages = execFileSync('cargo', ['test', '--locked', '--quiet', '--no-run', '--test', 'cli_native', '--message-format=json'], {
      cwd: ROOT,
      encoding: 'utf8',
      maxBuffer: 256 << 20,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    for (const line of messages.split('\n')) {
      if (!line.startsWith('{')) continue;
      const m = JSON.parse(line);
      if (m.reason === 'compiler-artifact' && m.target.name === 'easel' && m.target.kind.includes('bin') && m.executable) cliExecutable = m.executable;
    }
    if (!cliExecutable) throw new Error('cargo test --no-run did not report the easel binary');
  }
  return cliExecutable;
}

/** Runs the native `easel` CLI (debug build, see easelCli) with `args` (and `env` added). */
export function runCli(args, env = {}) {
  execFileSync(easelCli(), args, {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp', ...env },
  });
}

/**
 * The environment that has the native CPU backend do this page's arithmetic: linear layers
 * through Easel's own GEMM, and its multiply-adds fused or not as the page's build did
 * (relaxed SIMD where V8 fuses; natively linears default to candle's and the GEMM always
 * fuses, either of which can move a pixel by a level). For tests that hold the page's CPU
 * images to the CLI's exactly; the page must have started its engine.
 */
export async function pageArithmetic(page) {
  const fused = await page.locator('#diag-simd').getAttribute('data-fused');
  assert.ok(fused === 'true' || fused === 'false', `the diagnostics say whether the CPU backend fuses (${fused})`);
  return { EASEL_CPU_ARITHMETIC: fused === 'true' ? 'page-fused' : 'page' };
}
