// Shared set-up for page tests: Debian's Chromium driven by playwright-core, with a
// SwiftShader WebGPU adapter (no GPU on CI machines) and no background network traffic.

import { chromium } from 'playwright-core';
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
