// A TypeScript user of the npm package: checked with `tsc --noEmit --strict` against the
// installed package's types (tests/e2e/npm.test.mjs). Never run, only type-checked: a type
// that drifts from easel.js, or an example that stops compiling, fails the check.

import { Easel, EaselError, resolveModel, type AppliedLora, type GenerateResult, type LoadProgress, type ModelInfo } from 'easel-web';

export async function draw(canvas: HTMLCanvasElement, prompt: string): Promise<string> {
  const easel = await Easel.create({ backend: 'auto', onStarted: (v: string) => console.log('engine', v) });
  const info = easel.adapter();
  if (info.backend.kind === 'gpu' && info.report) console.log(info.report.name, info.report.limits.maxBufferSize);
  const off = easel.on('device-lost', ({ reason }) => console.warn('GPU lost:', reason));
  const offCrash = easel.on('engine-crashed', ({ reason, outOfMemory }) => console.warn('engine restarting after:', reason, outOfMemory ? `(asked for ${outOfMemory.requested} bytes)` : ''));
  const abort = new AbortController();
  const model: ModelInfo = await easel.load('emoji-dcgan', {
    signal: abort.signal,
    onProgress: (p: LoadProgress) => console.log(p.bytesDone / p.bytesTotal, p.shards.filter((s) => s.state === 'done').length, p.fit?.backend === 'gpu' ? p.fit.bytes / 1e9 : 0),
  });
  const size = model.defaults?.width ?? 512;
  try {
    const result: GenerateResult = await easel.generate({
      prompt,
      negativePrompt: 'blurry',
      steps: 20,
      guidance: 7.5,
      seed: 42,
      width: size,
      height: size,
      onStep: (s) => s.preview && canvas.getContext('2d')?.putImageData(s.preview, 0, 0),
      signal: abort.signal,
    });
    canvas.getContext('2d')?.putImageData(result.images[0].imageData, 0, 0);
    const blob: Blob | null = result.images[0].blob;
    console.log(blob?.size, result.timings.totalMs, result.params);
  } catch (e) {
    if (e instanceof EaselError && e.code === 'cancelled') return 'cancelled';
    if (e instanceof EaselError) return `${e.code}: ${e.message} ${e.details?.loaded ?? ''}`;
    throw e;
  } finally {
    off();
    offCrash();
  }
  const walk = await easel.generate({ prompt, seed: 1, walk: { toSeed: 2, t: 0.5 } });
  const apng: Blob = await easel.encodeApng([walk.images[0].imageData], { delayMs: 100 });
  const gif: Blob = await easel.encodeGif([walk.images[0].imageData], { delayMs: 100, comment: 'a walk' });
  console.log(gif.size);
  const loras: AppliedLora[] = await easel.addLora('https://example.org/loras/ink.safetensors', { scale: 0.8 });
  await easel.setLoraScale(loras[0].name, 0.5);
  await easel.removeLora(easel.loras[0].name);
  const cached = await easel.cache.list();
  for (const m of cached) if (m.bytes > 1e9) await easel.cache.delete(m.base);
  const where = resolveModel('stabilityai/sd-turbo');
  easel.dispose();
  return `${apng.type} ${'hub' in where ? where.hub.repo : where.url}`;
}
