// Types of Easel's JS API (easel.js). Written from the module itself; tests/npm/usage.ts
// is checked against them with `tsc --noEmit` in .ci/run.

/** Stable error codes: branch on these, show the message. */
export type EaselErrorCode =
  | 'engine-load-failed'
  | 'no-webgpu'
  | 'network'
  | 'model-corrupt'
  | 'quota'
  | 'too-large'
  | 'unsupported-model'
  | 'not-loaded'
  | 'busy'
  | 'cancelled'
  | 'device-lost'
  | 'engine-crashed'
  | 'generation-failed'
  | 'origin-not-allowed'
  | 'bad-lora'
  | 'disposed';

/** Memory the engine could not get: the request's bytes, and the bytes it had then (a page's engine has at most 4 GB). */
export interface OutOfMemory {
  requested: number;
  memory: number;
}

export class EaselError extends Error {
  readonly name: 'EaselError' | 'LoadError';
  readonly code: EaselErrorCode;
  /** Per code: a cancelled load has { kept, total, loaded }; a failed load { loaded }; device-lost and engine-crashed { reason }; engine-crashed for memory { outOfMemory } too. */
  readonly details?: {
    kept?: number;
    total?: number;
    /** The model still loaded after a failed or cancelled load, or null. */
    loaded?: string | null;
    reason?: string;
    /** The engine ran out of memory: what it asked for and what it had, in bytes. */
    outOfMemory?: OutOfMemory;
    [key: string]: unknown;
  };
  constructor(code: EaselErrorCode, message: string, details?: EaselError['details']);
}

export type Backend = 'auto' | 'gpu' | 'cpu';

export interface AdapterReport {
  name: string;
  vendor: string;
  architecture: string;
  backend: string;
  deviceType: string;
  software: boolean;
  shaderF16: boolean;
  features: string[];
  limits: Record<string, number>;
  /** The GPU's matmul/conv kernels: workgroup-memory tiles, or the simple ones. */
  kernels: 'tiled' | 'simple';
  /** The GPU's arithmetic: 'exact', or 'fast (…)' with what the fast precision uses here. */
  precision: string;
}

/** What `Easel.create` opened: the backend that runs models, and why. */
export interface EngineInfo {
  version: string;
  backend: { kind: 'gpu' | 'cpu'; reason: string };
  /** The WebGPU adapter, or null on the CPU backend. */
  report: AdapterReport | null;
  /** Why there is no usable WebGPU, or null. */
  gpuError: string | null;
  /** The GPU's matmul check against the CPU, or null without a GPU. */
  selfTest: { shape: number[]; relativeError: number; millis: number } | null;
  selfTestError: string | null;
  /**
   * The CPU backend's threads: how many run, how many were wanted, and why that many; and
   * its build: relaxed SIMD or plain SIMD128, whether its GEMM's multiply-adds fuse, and why.
   */
  threads: { count: number; wanted: number; reason: string; simd: 'relaxed' | 'simd128'; fused: boolean; simdReason: string };
  /** The CPU backend's arithmetic: 'exact', or 'fast (Winograd 3x3 convolutions)' with `precision: 'fast'`. */
  cpuPrecision: string;
}

export interface ShardProgress {
  file: string;
  size: number;
  state: 'pending' | 'downloading' | 'done' | 'cached' | 'failed';
}

export interface LoadProgress {
  bytesDone: number;
  bytesTotal: number;
  fromCache: number;
  etaSeconds: number | null;
  shards: ShardProgress[];
  /** 'upload' while the verified shards go into the engine (then `shard` is the index). */
  stage?: 'upload';
  shard?: number;
  /** What the weights will need on the engine's backend (GPU buffers; on the CPU, memory
   * for the stored weights plus the largest as f32 while in use), checked from the
   * manifest before any shard is downloaded. */
  fit?: { bytes: number; backend: 'gpu' | 'cpu' };
}

/** A loaded model's settings: what `generate` uses when an option is left out. */
export interface ModelDefaults {
  family: string;
  width: number;
  height: number;
  steps: number;
  guidance: number;
  /** The scheduler class of the model's own config ('' for models without one). */
  scheduler: string;
  /** Sizes must be multiples of this. */
  size_multiple: number;
  /** Reads a prompt (and negative prompt, guidance). */
  conditional: boolean;
  /** Takes initImage and mask (img2img, inpainting). */
  init_image: boolean;
  /** What step previews show: 'latents', 'x0' or '' (none). */
  preview: string;
  /** A VQ model: vqEncode / vqDecode work. */
  roundtrip: boolean;
  /** Codebook size (VQ models; 0 otherwise). */
  codes: number;
  /** A prompt the model knows ('' when none). */
  prompt: string;
  /** Starts from seeded noise: walk works. */
  walk: boolean;
  /** The prompt names one of a fixed set of classes (a class-conditional GAN). */
  classes: boolean;
}

export interface ModelInfo {
  name: string;
  family: string;
  tensors: number;
  backend: 'gpu' | 'cpu';
  bytes: number;
  defaults?: ModelDefaults;
  /** Why this model cannot generate here (it loaded, but generate will fail). */
  generatorError?: string;
  progress: LoadProgress | null;
  /** The LoRAs applied to it (none right after a load). */
  loras: AppliedLora[];
}

/** A LoRA applied to the loaded model. */
export interface AppliedLora {
  /** The file's name without its extension (A1111's `<lora:name:scale>`). */
  name: string;
  /** sha256 of the file, hex. */
  sha256: string;
  scale: number;
}

export interface HubSource {
  repo: string;
  base?: string;
  revision?: string;
  quant?: 'q8_0' | 'q4_0' | 'f16' | 'f32';
  preferFp16?: boolean;
}

export interface LoadOptions {
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
  /** Hub mode: the weights' storage after conversion (default q8_0). */
  quant?: HubSource['quant'];
  revision?: string;
  preferFp16?: boolean;
  hubBase?: string;
}

/** RGBA pixels: an ImageData, or anything with its three fields. */
export interface Pixels {
  data: Uint8ClampedArray | Uint8Array;
  width: number;
  height: number;
}

export interface StepProgress {
  stage: 'text' | 'step' | 'decode';
  step?: number;
  total?: number;
  /** The prompt was cut at 77 tokens. */
  truncated?: boolean;
  /** Milliseconds since the generation started. */
  millis: number;
  /** A preview of the image so far (with `previews`, or whenever onStep is given). */
  preview?: ImageData;
  previewKind?: 'taesd' | 'latent';
  /** On 'decode' (Stable Diffusion): the decode's cost in UNet steps, its floating-point
   *  operations over one step's (SD's decoder at 512 px: over 3 steps of SD-Turbo's UNet);
   *  times the steps' pace, about how long the decode takes. */
  work?: number;
}

export interface GenerateOptions {
  prompt?: string;
  negativePrompt?: string;
  steps?: number;
  guidance?: number;
  /** euler, euler_a, ddim, dpmpp_2m, dpmpp_2m_karras, pndm, lcm, ddpm; default: the model's. */
  scheduler?: string | null;
  seed?: number;
  width?: number;
  height?: number;
  batch?: number;
  /** img2img / inpainting source, at width x height. */
  initImage?: Pixels;
  /** How much of initImage is re-noised (1 = all). */
  strength?: number;
  /** Inpainting: white repaints, black keeps (an ImageData at width x height). */
  mask?: Pixels;
  /** A latent walk: the starting noise `t` of the way (slerp) toward `toSeed`'s. */
  walk?: { toSeed: number; t: number };
  /** A prompt morph: the conditioning `t` of the way toward `toPrompt`'s. */
  morph?: { toPrompt: string; t: number };
  /** Send previews with step progress (default: when onStep is given). */
  previews?: boolean;
  onStep?: (progress: StepProgress) => void;
  signal?: AbortSignal;
}

export interface GeneratedImage {
  index: number;
  seed: number;
  width: number;
  height: number;
  imageData: ImageData;
  /** The PNG with the settings in its text chunks (A1111 `parameters` too), or null. */
  png: Uint8Array | null;
  blob: Blob | null;
  /** Why this image has no PNG (the pixels are still there), or null. */
  pngError: string | null;
}

export interface GenerateResult {
  images: GeneratedImage[];
  /** The request the engine ran (its own field names). */
  params: Record<string, unknown>;
  timings: { totalMs: number };
  scheduler: string;
  /** What a class-conditional model drew for the prompt. */
  note: string | null;
  truncated: boolean;
}

export interface VqImage {
  width: number;
  height: number;
  rgba: Uint8ClampedArray;
}

export interface VqEncoded {
  indices: Uint32Array;
  gridWidth: number;
  gridHeight: number;
  codes: number;
  image: VqImage;
}

export interface CachedModel {
  base: string;
  bytes: number;
  shards: number;
}

export interface EaselEvents {
  started: { version: string };
  'device-lost': { reason: string };
  /** The engine panicked (`reason`: the panic's message) or ran out of memory (`outOfMemory`); a new worker is starting. */
  'engine-crashed': { reason: string; outOfMemory?: OutOfMemory };
  engine: { info: EngineInfo };
  model: { info: ModelInfo };
  'model-error': { error: { code: EaselErrorCode; message: string } };
}

export const BUNDLED_MODELS: readonly string[];

/** What a model string names: a URL, a Hub repository or a bundled model. */
export function resolveModel(model: string, base?: string): { url: string; bundled?: string } | { hub: { repo: string } };

export class Easel {
  private constructor();
  static create(options?: { backend?: Backend; threads?: number | null; kernels?: 'auto' | 'tiled' | 'simple'; precision?: 'exact' | 'fast'; simd?: 'auto' | 'relaxed' | 'simd128'; workerUrl?: string | URL; onStarted?: (version: string) => void }): Promise<Easel>;
  on<K extends keyof EaselEvents>(name: K, fn: (event: EaselEvents[K]) => void): () => void;
  adapter(): EngineInfo;
  readonly model: ModelInfo | null;
  /** A converted model's URL, a bundled model name, a Hub repository 'owner/name', or { hub }. */
  load(model: string | { hub: HubSource }, options?: LoadOptions): Promise<ModelInfo>;
  generate(options?: GenerateOptions): Promise<GenerateResult>;
  vqEncode(image: Pixels, options?: { signal?: AbortSignal }): Promise<VqEncoded>;
  vqDecode(indices: ArrayLike<number>, gridWidth: number, gridHeight: number, options?: { signal?: AbortSignal }): Promise<VqImage>;
  encodeApng(frames: Pixels[], options?: { delayMs?: number; text?: Record<string, string> }): Promise<Blob>;
  /** The same as a looping GIF (256 colours a frame). */
  encodeGif(frames: Pixels[], options?: { delayMs?: number; comment?: string }): Promise<Blob>;
  /** A LoRA by URL (cached), or a file's bytes; stacks on the others. Fails with 'bad-lora' when it does not fit. */
  addLora(lora: string | URL | Blob | ArrayBuffer | Uint8Array, options?: { scale?: number; name?: string; signal?: AbortSignal }): Promise<AppliedLora[]>;
  /** A new scale for an applied LoRA, without reloading the model. */
  setLoraScale(name: string, scale: number): Promise<AppliedLora[]>;
  /** Removes a LoRA; the model's own weights come back exactly. */
  removeLora(name: string): Promise<AppliedLora[]>;
  readonly loras: AppliedLora[];
  readonly cache: {
    list(): Promise<CachedModel[]>;
    delete(model: string): Promise<void>;
    clear(): Promise<void>;
  };
  dispose(): void;
}
