// The one message protocol between the JS API (easel.js, main thread) and the engine's
// worker (worker.js). Both sides import this file, so every message kind and error code
// is spelled in one place.
//
//   API -> worker   { op, id, ...arguments }            one of OP
//   worker -> API   { id, reply: 'progress', progress } zero or more per request
//                   { id, reply: 'done', result }       exactly one of done / error
//                   { id, reply: 'error', error: { code, message, details } }
//                   { reply: 'event', event, ... }      not tied to a request: one of EVENT

/** Requests the API sends. Each gets its own id; 'cancel' names the id it stops. */
export const OP = Object.freeze({
  init: 'init', // { backend } -> engine info
  load: 'load', // { source: { url } | { hub: { base, repo, revision, quant, preferFp16 } } } -> model info
  generate: 'generate', // { request } -> { images, pngs, ... }
  cancel: 'cancel', // { target }: stops that request's download or generation
  vqEncode: 'vq-encode', // { rgba, width, height } -> { indices, grid..., image }
  vqDecode: 'vq-decode', // { indices, gridWidth, gridHeight } -> image
  encodeApng: 'encode-apng', // { width, height, rgba, delay, text } -> Uint8Array
  encodeGif: 'encode-gif', // { width, height, rgba, delay, comment } -> Uint8Array
  loraAdd: 'lora-add', // { url } | { file, bytes }, scale -> the applied LoRAs [{ name, sha256, scale }]
  loraScale: 'lora-scale', // { name, scale } -> the applied LoRAs
  loraRemove: 'lora-remove', // { name } -> the applied LoRAs
});

/** Events the worker sends on its own. */
export const EVENT = Object.freeze({
  started: 'started', // { version }: the wasm module is loaded
  engine: 'engine', // { info }: an engine (re)opened after a GPU device loss or a crash
  deviceLost: 'device-lost', // { reason }
  crashed: 'engine-crashed', // { reason, outOfMemory? }: the engine stopped on a panic or ran out of memory; easel.js restarts the worker
  model: 'model', // { info }: the model is back after a restart
  modelError: 'model-error', // { error }: the model could not be reloaded after a restart
});

/**
 * Stable error codes: programs branch on these, people read the message.
 * `details` carries what a code has to add (for 'cancelled' loads: bytes kept).
 */
export const CODES = Object.freeze([
  'engine-load-failed', // the wasm module could not be fetched or instantiated
  'no-webgpu', // backend 'gpu' was asked for and there is no usable WebGPU
  'network', // a download failed (HTTP error, connection lost, unreachable and not cached)
  'model-corrupt', // a manifest or shard is malformed or fails its checksum twice
  'quota', // the browser will not store the model
  'too-large', // the model (or this size) does not fit this device's limits or memory
  'unsupported-model', // a model this engine cannot run
  'not-loaded', // generate before any model is loaded
  'busy', // the engine is loading a model or restarting
  'cancelled', // the caller's signal aborted the request
  'device-lost', // the GPU device was lost during the request (the engine restarts itself)
  'engine-crashed', // the engine stopped on an internal error or ran out of memory during the request (it restarts itself)
  'generation-failed', // the engine refused or failed the request (the message says why)
  'origin-not-allowed', // the widget was asked to load a model from an origin it may not use
  'bad-lora', // a LoRA file that is malformed or does not fit the loaded model (nothing changed)
  'disposed', // the Easel instance was disposed
]);

/** An error with a stable `code` (one of CODES), a readable message, and `details`. */
export class EaselError extends Error {
  constructor(code, message, details = undefined) {
    super(message);
    this.name = 'EaselError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }

  /** The error as plain data, to cross a postMessage. */
  toJSON() {
    return { code: this.code, message: this.message, details: this.details };
  }

  static from(data) {
    return new EaselError(data.code, data.message, data.details);
  }
}

/**
 * Why a crashed engine stopped, in words: memory it could not get (`outOfMemory`: the
 * bytes it asked for and the bytes it had, from the engine's allocator), or else a panic.
 */
export function outOfMemoryReason({ requested, memory }) {
  const mb = (bytes) => `${Math.round(bytes / 2 ** 20)} MB`;
  return `it asked for ${mb(requested)} more with ${mb(memory)} in use; an engine in a web page has at most 4 GB`;
}

/**
 * The error of a request the engine crashed in: `reason` from the worker's crash event,
 * `outOfMemory` when memory ran out, `reloading` when the restart brings a model back.
 */
export function crashError(reason, outOfMemory, reloading = false) {
  const restart = `It is restarting${reloading ? ' and reloading the model from the browser cache' : ''}`;
  const message = outOfMemory
    ? `The engine ran out of memory (${reason}). ${restart}; try a smaller size or fewer images when it is ready.`
    : `The engine stopped with an internal error (${reason}). ${restart}; try again when it is ready.`;
  return new EaselError('engine-crashed', message, outOfMemory ? { reason, outOfMemory } : { reason });
}
