// Easel's JS API: the engine in its own Web Worker, behind promises.
//
//   import { Easel } from './easel.js';
//   const easel = await Easel.create({ backend: 'auto' });
//   await easel.load('emoji-dcgan', { onProgress: (p) => console.log(p.bytesDone, p.bytesTotal) });
//   const { images } = await easel.generate({ prompt: 'red heart', seed: 42 });
//   document.body.append(Object.assign(new Image(), { src: URL.createObjectURL(images[0].blob) }));
//
// The page (main.js) and the widget are built on this module; types are in easel.d.ts.
// Every failure is an EaselError with a stable `code` (protocol.js CODES).

import { deleteAllCachedModels, deleteCachedModel, listCachedModels } from './loader.js';
import { EVENT, EaselError, OP, crashError } from './protocol.js';

export { EaselError } from './protocol.js';

/** The models that ship with Easel, by name (folders next to this file, in models/). */
export const BUNDLED_MODELS = Object.freeze(['emoji-dcgan', 'emoji-sd', 'emoji-amused', 'sd-tiny', 'amused-tiny', 'ddpm-tiny', 'vqgan-tiny']);

/**
 * What a model string names: a converted model's folder URL (has a scheme, starts with '/'
 * or '.', ends with '/', or has two or more slashes), a Hugging Face repository
 * ('owner/name'), or a bundled model's name ('emoji-dcgan').
 */
export function resolveModel(model, base = import.meta.url) {
  if (typeof model !== 'string' || !model.trim()) throw new EaselError('unsupported-model', 'A model is a converted model URL, a bundled model name, or a Hub repository (owner/name).');
  const m = model.trim();
  if (/^[a-z][a-z0-9+.-]*:/i.test(m) || /^[./]/.test(m) || m.endsWith('/')) return { url: folder(new URL(m, globalThis.location?.href ?? base).href) };
  if (/^[\w.-]+\/[\w.-]+$/.test(m)) return { hub: { repo: m } };
  if (/^[\w.-]+$/.test(m)) return { url: new URL(`models/${m}/`, base).href, bundled: m };
  // Anything else is a relative folder URL ('models/sd-turbo', 'a/b/c').
  return { url: folder(new URL(m, globalThis.location?.href ?? base).href) };
}

const folder = (url) => (url.endsWith('/') ? url : `${url}/`);

/** The engine's request fields from the API's (camelCase) generate options. */
export function toRequest(o) {
  const r = {};
  const copy = ['prompt', 'steps', 'guidance', 'scheduler', 'seed', 'width', 'height', 'batch', 'strength'];
  for (const k of copy) if (o[k] !== undefined && o[k] !== null) r[k] = o[k];
  if (o.negativePrompt !== undefined) r.negative_prompt = o.negativePrompt;
  if (o.initImage) {
    const img = o.initImage;
    const hw = img.width * img.height;
    const values = new Array(3 * hw);
    for (let p = 0; p < hw; p++) for (let c = 0; c < 3; c++) values[c * hw + p] = img.data[p * 4 + c] / 255;
    r.init_image = { shape: [1, 3, img.height, img.width], values };
  }
  if (o.mask) {
    const m = o.mask;
    // White (or any opaque red) repaints, as in diffusers; a plain array is 1 = repaint.
    const values = m.data ? Array.from({ length: m.width * m.height }, (_, p) => (m.data[p * 4 + 3] > 0 && m.data[p * 4] >= 128 ? 1 : 0)) : Array.from(m.values, Number);
    r.mask = { shape: [1, 1, m.height, m.width], values };
  }
  if (o.walk) r.walk = { to_seed: o.walk.toSeed, t: o.walk.t };
  if (o.morph) r.morph = { to_prompt: o.morph.toPrompt, t: o.morph.t };
  if (o.seed !== undefined && !(Number.isSafeInteger(o.seed) && o.seed >= 0)) throw new EaselError('generation-failed', `seed must be a whole number from 0 to 9007199254740991 (got ${o.seed})`);
  r.previews = Boolean(o.previews ?? o.onStep);
  return r;
}

const stripUndefined = (o) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

const imageData = (img) => (typeof ImageData === 'function' ? new ImageData(new Uint8ClampedArray(img.rgba.buffer ?? img.rgba), img.width, img.height) : { data: new Uint8ClampedArray(img.rgba), width: img.width, height: img.height });

export class Easel {
  #worker;
  #next = 1;
  #pending = new Map(); // id -> { resolve, reject, onProgress }
  #listeners = new Map(); // event -> Set<fn>
  #info = null;
  #model = null;
  #disposed = false;
  // What a restart after a crash needs: how the engine was opened, the loaded model's
  // source, and its LoRAs [{ name, source: { url } | { file, blob }, scale }] in order.
  #options = null;
  #workerUrl = null;
  #source = null;
  #loraSources = [];
  #restarting = null; // the running restart after an engine crash
  #crashedAgain = false; // the engine crashed (again) while the restart ran
  #broken = null; // the error every call gets once a restart failed

  /**
   * Starts the engine in a Web Worker. `backend`: 'auto' (a real GPU, else the CPU), 'gpu'
   * (fails with code 'no-webgpu' without one) or 'cpu'. `threads`: how many threads the
   * CPU backend may use (default one per core); more than one needs a cross-origin isolated
   * page, else it runs on one and `info.threads.reason` says why. `kernels`: the GPU's
   * matmul/conv kernels, 'auto' (tiled on a hardware GPU, simple on a software one),
   * 'tiled' or 'simple'. `precision`: 'exact' (f32) or 'fast', which trades accuracy for
   * speed: on the GPU int8 dot products for q8_0 linears and f16 tiles where the GPU has
   * shader-f16, on the CPU Winograd 3x3 convolutions (`info.cpuPrecision` says so). `simd`: the CPU backend's build, 'auto' (relaxed SIMD, whose fused
   * multiply-adds are faster, where the browser has it and the page is cross-origin
   * isolated), 'relaxed' or 'simd128' (`info.threads.simdReason` says which runs and why).
   * `onStarted(version)` is called once the wasm module runs, before the GPU is opened and
   * tested.
   */
  static async create({ backend = 'auto', threads = null, kernels = 'auto', precision = 'exact', simd = 'auto', workerUrl = new URL('./worker.js', import.meta.url), onStarted } = {}) {
    const easel = new Easel();
    easel.#options = { backend, threads, kernels, precision, simd };
    easel.#workerUrl = workerUrl;
    const started = easel.on('started', ({ version }) => onStarted?.(version));
    try {
      easel.#info = await easel.#open();
    } finally {
      started();
    }
    return easel;
  }

  /** Starts the worker and its engine; resolves to the engine's description. */
  async #open() {
    let worker;
    try {
      worker = new Worker(this.#workerUrl, { type: 'module' });
    } catch (e) {
      throw new EaselError('engine-load-failed', `This browser cannot start module workers (${e.message}). Use a current Chrome, Edge, Firefox or Safari.`);
    }
    this.#worker = worker;
    worker.onmessage = ({ data }) => this.#receive(data);
    const failed = new Promise((_, reject) => {
      worker.onerror = (e) => {
        const error = new EaselError('engine-load-failed', `The engine worker failed to start: ${e.message || 'see the console'}. Was pkg/ built? Run ./scripts/run.sh`);
        reject(error);
        this.#failAll(error);
      };
    });
    try {
      return await Promise.race([this.#call(OP.init, this.#options, { internal: true }), failed]);
    } catch (e) {
      worker.terminate();
      throw e;
    }
  }

  /**
   * The engine crashed (a panic in the wasm module, or memory it could not get): its worker is unusable. Fail what was
   * pending, start a new worker, and bring back the model and its LoRAs from the browser
   * cache, with the same events as after a GPU device loss ('engine', then 'model' or
   * 'model-error'). If bringing the model back crashes the new engine too, the next one
   * starts without it.
   */
  #restart(reason, outOfMemory) {
    if (this.#disposed) return;
    this.#worker.terminate();
    this.#failAll(crashError(reason, outOfMemory, Boolean(this.#source)));
    // A crash during a restart: the running restart sees its own calls fail (failAll).
    this.#crashedAgain = true;
    this.#restarting ??= this.#reopen().finally(() => (this.#restarting = null));
  }

  async #reopen() {
    const asError = (e) => (e instanceof EaselError ? e : new EaselError('engine-load-failed', e?.message ?? String(e)));
    for (;;) {
      this.#crashedAgain = false;
      try {
        const info = await this.#open();
        if (this.#disposed) return this.#worker.terminate();
        this.#emit(EVENT.engine, { info });
      } catch (e) {
        this.#broken = asError(e);
        this.#model = null;
        this.#emit(EVENT.modelError, { error: this.#broken.toJSON() });
        return;
      }
      if (!this.#source) return;
      try {
        let info = await this.#call(OP.load, { source: this.#source }, { internal: true });
        for (const l of this.#loraSources) {
          const args = l.source.url ? { url: l.source.url } : { file: l.source.file, bytes: await l.source.blob.arrayBuffer() };
          const loras = await this.#call(OP.loraAdd, { ...args, scale: l.scale }, { internal: true, transfer: args.bytes ? [args.bytes] : [] });
          info = { ...info, loras };
        }
        this.#emit(EVENT.model, { info });
        return;
      } catch (e) {
        this.#model = null;
        this.#emit(EVENT.modelError, { error: asError(e).toJSON() });
        if (!this.#crashedAgain) return;
        this.#source = null;
        this.#loraSources = [];
      }
    }
  }

  /**
   * Subscribes to engine events; returns the unsubscribe function. 'started' {version},
   * 'device-lost' {reason}, 'engine-crashed' {reason} (a panic; a new worker starts),
   * 'engine' {info} (the engine reopened after either), 'model' {info} (the model is back),
   * 'model-error' {error}.
   */
  on(name, fn) {
    if (!this.#listeners.has(name)) this.#listeners.set(name, new Set());
    this.#listeners.get(name).add(fn);
    return () => this.#listeners.get(name)?.delete(fn);
  }

  /** The engine's description: backend {kind, reason}, adapter report, self-test, version. */
  adapter() {
    return this.#info;
  }

  /** The loaded model's description (name, family, backend, bytes, defaults), or null. */
  get model() {
    return this.#model;
  }

  /**
   * Loads a model: a converted model's folder URL, a bundled model name, a Hub repository
   * ('owner/name', converted in the browser), or `{ hub: { repo, base, revision, quant,
   * preferFp16 } }`. Shards are verified and kept in Cache Storage: the next load is offline.
   * `onProgress({ bytesDone, bytesTotal, fromCache, etaSeconds, shards, stage })`. Resolves
   * to the model's description; `generatorError` says why a loaded model cannot generate.
   * A failed load's error has `details.loaded`: the name of the model still loaded, if any.
   */
  async load(model, { onProgress, signal, quant = 'q8_0', revision = 'main', preferFp16 = false, hubBase = 'https://huggingface.co' } = {}) {
    const source = typeof model === 'object' && model?.hub ? { hub: { ...model.hub } } : resolveModel(model);
    if (source.hub) source.hub = { base: hubBase, revision, quant, preferFp16, ...source.hub };
    delete source.bundled;
    try {
      this.#model = await this.#call(OP.load, { source }, { onProgress, signal });
      this.#source = source;
      this.#loraSources = [];
    } catch (e) {
      // A download that failed or was cancelled leaves the previous model loaded; after a
      // crash the restart brings the previous one back.
      if (!e.details?.loaded && e.code !== 'engine-crashed') {
        this.#model = null;
        this.#source = null;
        this.#loraSources = [];
      }
      throw e;
    }
    return this.#model;
  }

  /**
   * One generation with the loaded model; a left-out size, steps or guidance is the model's
   * own. Options: prompt, negativePrompt, steps, guidance,
   * scheduler, seed, width, height, batch, initImage (ImageData), strength, mask (ImageData:
   * white repaints), walk {toSeed, t}, morph {toPrompt, t}, onStep(progress), signal.
   * Resolves to { images: [{ blob, imageData, png, seed, index, width, height }], params,
   * timings: { totalMs }, scheduler, note, truncated }.
   */
  async generate(options = {}) {
    // Left-out settings are the loaded model's own (its size, steps and guidance).
    const d = this.#model?.defaults;
    const own = d ? { width: d.width, height: d.height, steps: d.steps, guidance: d.guidance } : {};
    const request = toRequest({ ...own, ...stripUndefined(options) });
    const onProgress = options.onStep ? (p) => options.onStep(p.preview ? { ...p, preview: imageData(p.preview) } : p) : undefined;
    const result = await this.#call(OP.generate, { request }, { onProgress, signal: options.signal });
    const images = result.images.map((img, index) => {
      const png = result.pngs[index] ?? null;
      return {
        index,
        seed: request.seed ?? 0,
        width: img.width,
        height: img.height,
        imageData: imageData(img),
        png,
        blob: png ? new Blob([png], { type: 'image/png' }) : null,
        pngError: result.pngErrors?.[index] ?? (png ? null : (result.pngError ?? 'the PNG could not be written')),
      };
    });
    return { images, params: request, timings: { totalMs: result.millis }, scheduler: result.scheduler, note: result.note ?? null, truncated: result.truncated };
  }

  /**
   * Applies a LoRA to the loaded Stable Diffusion model without reloading it. `lora`: a URL
   * (fetched once, then kept in Cache Storage) or a File / Blob / ArrayBuffer / Uint8Array
   * (`name` then names it; a File's own name is the default). LoRAs stack; the images'
   * metadata records each one's name, hash and scale. Resolves to the applied LoRAs
   * [{ name, sha256, scale }]. A file that does not fit the model fails with code 'bad-lora'
   * and changes nothing. Loading another model drops every LoRA.
   */
  async addLora(lora, { scale = 1, name, signal } = {}) {
    let args;
    let source; // kept to apply it again after a crash (a Blob: the browser may keep it on disk)
    if (typeof lora === 'string' || lora instanceof URL) {
      args = { url: new URL(lora, globalThis.location?.href).href };
      source = { url: args.url };
    } else {
      const blob = lora instanceof Blob ? lora : new Blob([lora]);
      args = { file: name ?? lora.name ?? 'lora.safetensors', bytes: await blob.arrayBuffer() };
      source = { file: args.file, blob };
    }
    const loras = await this.#call(OP.loraAdd, { ...args, scale: Number(scale) }, { signal, transfer: args.bytes ? [args.bytes] : [] });
    this.#loraSources.push({ name: loras.at(-1).name, source, scale: Number(scale) });
    return this.#setLoras(loras);
  }

  /** Changes an applied LoRA's scale (by its name); the model is not reloaded. */
  async setLoraScale(name, scale) {
    const loras = await this.#call(OP.loraScale, { name, scale: Number(scale) });
    for (const l of this.#loraSources) if (l.name === name) l.scale = Number(scale);
    return this.#setLoras(loras);
  }

  /** Removes an applied LoRA: the weights it changed are the model's own again, exactly. */
  async removeLora(name) {
    const loras = await this.#call(OP.loraRemove, { name });
    this.#loraSources = this.#loraSources.filter((l) => l.name !== name);
    return this.#setLoras(loras);
  }

  /** The LoRAs applied to the loaded model: [{ name, sha256, scale }]. */
  get loras() {
    return this.#model?.loras ?? [];
  }

  #setLoras(loras) {
    if (this.#model) this.#model = { ...this.#model, loras };
    return loras;
  }

  /** A VQ model's round trip: the image's codes and the image decoded from them. */
  vqEncode(image, { signal } = {}) {
    const rgba = new Uint8Array(image.data);
    return this.#call(OP.vqEncode, { rgba: rgba.buffer, width: image.width, height: image.height }, { signal, transfer: [rgba.buffer] });
  }

  /** A VQ model's image for a grid of codes. */
  vqDecode(indices, gridWidth, gridHeight, { signal } = {}) {
    return this.#call(OP.vqDecode, { indices: Array.from(indices), gridWidth, gridHeight }, { signal });
  }

  /** Frames (ImageData or {data, width, height}, one size) as one animated PNG Blob. */
  async encodeApng(frames, { delayMs = 125, text = {} } = {}) {
    const { width, height } = frames[0];
    const rgba = new Uint8Array(width * height * 4 * frames.length);
    frames.forEach((f, i) => rgba.set(f.data, i * width * height * 4));
    const bytes = await this.#call(OP.encodeApng, { width, height, rgba: rgba.buffer, delay: delayMs, text }, { transfer: [rgba.buffer] });
    return new Blob([bytes], { type: 'image/apng' });
  }

  /** The same frames as a looping GIF Blob (256 colours a frame), `comment` in its comment block. */
  async encodeGif(frames, { delayMs = 125, comment = '' } = {}) {
    const { width, height } = frames[0];
    const rgba = new Uint8Array(width * height * 4 * frames.length);
    frames.forEach((f, i) => rgba.set(f.data, i * width * height * 4));
    const bytes = await this.#call(OP.encodeGif, { width, height, rgba: rgba.buffer, delay: delayMs, comment }, { transfer: [rgba.buffer] });
    return new Blob([bytes], { type: 'image/gif' });
  }

  /** The models in this origin's browser cache. */
  cache = Object.freeze({
    list: () => listCachedModels(),
    /** `model`: a `base` from list(), a model URL, or a bundled model's name. */
    delete: (model) => deleteCachedModel(resolveModel(model).url ?? model),
    clear: () => deleteAllCachedModels(),
  });

  /** Stops the worker; the instance cannot be used afterwards. */
  dispose() {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#worker.terminate();
    this.#failAll(new EaselError('disposed', 'This Easel instance was disposed.'));
  }

  #call(op, args, { onProgress, signal, transfer = [], internal = false } = {}) {
    if (this.#disposed) return Promise.reject(new EaselError('disposed', 'This Easel instance was disposed.'));
    if (this.#broken) return Promise.reject(this.#broken);
    if (this.#restarting && !internal) return Promise.reject(new EaselError('busy', 'The engine is restarting after a crash: try again when the model is ready.'));
    if (signal?.aborted) return Promise.reject(new EaselError('cancelled', 'cancelled'));
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      const abort = () => this.#worker.postMessage({ op: OP.cancel, target: id });
      signal?.addEventListener('abort', abort, { once: true });
      const cleanup = () => signal?.removeEventListener('abort', abort);
      this.#pending.set(id, {
        onProgress,
        resolve: (v) => (cleanup(), resolve(v)),
        reject: (e) => (cleanup(), reject(e)),
      });
      this.#worker.postMessage({ op, id, ...args }, transfer);
    });
  }

  #receive(data) {
    if (data.reply === 'event') {
      if (data.event === EVENT.model) this.#model = data.info;
      if (data.event === EVENT.engine) this.#info = data.info;
      for (const fn of this.#listeners.get(data.event) ?? []) fn(data);
      if (data.event === EVENT.crashed) this.#restart(data.reason, data.outOfMemory);
      return;
    }
    const call = this.#pending.get(data.id);
    if (!call) return;
    if (data.reply === 'progress') return call.onProgress?.(data.progress);
    this.#pending.delete(data.id);
    if (data.reply === 'done') call.resolve(data.result);
    else call.reject(EaselError.from(data.error));
  }

  /** An event of this instance's own (a restart's), as if the worker had sent it. */
  #emit(name, fields) {
    this.#receive({ reply: 'event', event: name, ...fields });
  }

  #failAll(error) {
    for (const call of this.#pending.values()) call.reject(error);
    this.#pending.clear();
  }
}
