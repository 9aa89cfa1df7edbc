// The framed page's side of the <easel-generator> widget (widget.js is the host's side).
//
// The page runs as ?embed=1 with the element's attributes in its address. It talks to its
// parent window only, by postMessage:
//   parent -> page  { easel: 'connect' }                 first; its origin becomes the only one answered
//                   { easel: 'generate', id, options }    fills the form with options, presses Generate
//                   { easel: 'cancel' }
//   page -> parent  { easel: 'hello' }                   on start, to any origin: please connect
//                   { easel: 'ready', model }            a model loaded (name, family, backend)
//                   { easel: 'progress', id, progress }   step progress ({stage, step, total})
//                   { easel: 'image', id, png, width, height, params }  one per image
//                   { easel: 'error', id, code, message }
// `id` is the parent's generate call, or null for a generation started in the frame's UI.

const $ = (id) => document.getElementById(id);

/** The page's settings from the widget's attributes (the frame's address). */
export function embedSettings(search = location.search) {
  const q = new URLSearchParams(search);
  const list = (v) => (v ?? '').split(/[\s,]+/).filter(Boolean);
  const controls = q.get('controls');
  return {
    model: q.get('model'),
    prompt: q.get('prompt'),
    steps: q.get('steps'),
    size: q.get('size'),
    theme: q.get('theme') ?? 'light',
    // null: every control; 'button': the Generate button only. Names: prompt, negative,
    // style, model, backend, steps, guidance, scheduler, size, batch, seed, init, lora, walk, vq.
    controls: controls === null ? null : controls === 'button' ? [] : list(controls),
    // The origins models may come from; Easel's own when the host names none.
    allowed: q.has('allowed') ? list(q.get('allowed')).map((o) => new URL(o).origin) : [location.origin],
  };
}

/** Where a model string would be fetched from (a Hub repository: the Hub's origin). */
export function modelOrigin(model, hubBase = 'https://huggingface.co') {
  if (typeof model === 'object' && model?.hub) return new URL(model.hub.base ?? hubBase).origin;
  if (/^[\w.-]+\/[\w.-]+$/.test(model) && !/^[./]/.test(model)) return new URL(hubBase).origin;
  return new URL(model, location.href).origin;
}

export class EmbedBridge {
  constructor(settings) {
    this.settings = settings;
    this.parentOrigin = null; // set by the parent's 'connect'
    this.queue = []; // messages waiting for 'connect'
    this.callId = null; // the parent's generate call now running
    this.applyLayout();
    window.addEventListener('message', (e) => this.receive(e));
    // Asks the parent to connect (it may have sent 'connect' before this page listened).
    // 'hello' carries nothing: any origin may see it.
    if (window.parent !== window) window.parent.postMessage({ easel: 'hello' }, '*');
  }

  /** Theme, which controls show, and the attribute's prompt, steps and size. */
  applyLayout() {
    const { theme, controls, prompt, steps, size } = this.settings;
    document.documentElement.dataset.theme = ['light', 'dark', 'auto'].includes(theme) ? theme : 'light';
    if (controls) {
      for (const el of document.querySelectorAll('[data-control]')) el.classList.toggle('embed-off', !controls.includes(el.dataset.control));
      // A settings box with none of its controls left goes too.
      for (const box of document.querySelectorAll('fieldset.settings')) {
        if (![...box.querySelectorAll('[data-control]')].some((el) => !el.classList.contains('embed-off')) && !box.dataset.control) box.classList.add('embed-off');
      }
    }
    if (prompt !== null) $('prompt').value = prompt;
    if (steps !== null) $('steps').value = steps;
    this.size = size;
  }

  /** The model's own size, unless the host asked for one ('512' or '512x768'). */
  applySize() {
    const m = /^(\d+)(?:x(\d+))?$/.exec(this.size ?? '');
    if (!m) return;
    $('width').value = m[1];
    $('height').value = m[2] ?? m[1];
  }

  /** Throws an EaselError-shaped error when `model` comes from an origin not allowed. */
  checkModel(model) {
    const origin = modelOrigin(model);
    if (this.settings.allowed.includes(origin)) return;
    const error = new Error(`This widget may load models from ${this.settings.allowed.join(', ')} only, not from ${origin} (the host sets allowed-models).`);
    error.code = 'origin-not-allowed';
    throw error;
  }

  post(message, transfer = []) {
    if (this.parentOrigin) window.parent.postMessage(message, this.parentOrigin, transfer);
    else this.queue.push([message, transfer]);
  }

  receive(e) {
    // The parent only: no other window, and after 'connect' no other origin.
    if (e.source !== window.parent || window.parent === window) return;
    const data = e.data;
    if (!data || typeof data !== 'object' || typeof data.easel !== 'string') return;
    if (data.easel === 'connect') {
      if (this.parentOrigin) return;
      this.parentOrigin = e.origin;
      for (const [m, t] of this.queue.splice(0)) window.parent.postMessage(m, this.parentOrigin, t);
      return;
    }
    if (e.origin !== this.parentOrigin) return;
    if (data.easel === 'generate') this.onGenerate?.(data.id ?? null, data.options ?? {});
    if (data.easel === 'cancel') $('cancel').click();
  }

  ready(info) {
    this.applySize();
    this.post({ easel: 'ready', model: { name: info.name, family: info.family, backend: info.backend } });
  }

  progress(p) {
    this.post({ easel: 'progress', id: this.callId, progress: { stage: p.stage, step: p.step, total: p.total } });
  }

  images(result) {
    for (const img of result.images) {
      const png = img.png ? img.png.slice().buffer : null;
      this.post({ easel: 'image', id: this.callId, png, width: img.width, height: img.height, seed: img.seed, index: img.index, params: result.params }, png ? [png] : []);
    }
    this.callId = null;
  }

  error(e, id = this.callId) {
    this.post({ easel: 'error', id, code: e.code ?? 'generation-failed', message: e.message });
    if (id === this.callId) this.callId = null;
  }
}

/** Sets the form from a parent's generate options (the fields a host may pass). */
export function fillForm(options) {
  const fields = { prompt: 'prompt', negativePrompt: 'negative-prompt', seed: 'seed', steps: 'steps', guidance: 'guidance', width: 'width', height: 'height' };
  for (const [key, id] of Object.entries(fields)) if (options[key] !== undefined && options[key] !== null) $(id).value = String(options[key]);
}
