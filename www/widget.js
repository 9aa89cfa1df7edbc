// The embeddable generator: one tag on any site.
//
//   <script type="module" src="https://easel-host/www/widget.js"></script>
//   <easel-generator model="emoji-dcgan" prompt="red heart" controls="prompt,seed"></easel-generator>
//
// It frames Easel's page (compact, ?embed=1) from the host that serves this script, so the
// engine, its worker and the model cache stay on Easel's origin: every widget on every site
// shares one download of a model. The host talks to it through the element:
//   attributes  model (URL, bundled name or Hub repo), prompt, steps, size, backend,
//               precision (exact, fast: the GPU's and CPU's arithmetic), controls ("prompt,seed"; "button": the Generate button only), theme
//               (light, dark, auto), allowed-models (origins models may come from; default
//               Easel's own), height (px)
//   events      easel-ready {model}, easel-progress {stage, step, total},
//               easel-image {blob, width, height, seed, params}, easel-error {code, message}
//   methods     generate(options) -> Promise<{blob, ...}>, cancel()
// Messages are exchanged with the frame only, checked by window and origin both ways
// (embed.js is the frame's side).

const PAGE = new URL('../index.html', import.meta.url);
const PASSED = ['model', 'prompt', 'steps', 'size', 'backend', 'precision', 'controls', 'theme', 'allowed-models'];

class EaselGenerator extends HTMLElement {
  static observedAttributes = [...PASSED, 'height'];

  #frame = null;
  #calls = new Map(); // generate id -> { resolve, reject }
  #next = 1;
  #onMessage = (e) => this.#receive(e);

  connectedCallback() {
    if (!this.#frame) {
      this.#frame = document.createElement('iframe');
      this.#frame.title = 'Easel image generator';
      // cross-origin-isolated: on a host served with COOP/COEP the frame may run wasm threads.
      this.#frame.allow = 'webgpu; cross-origin-isolated';
      this.#frame.style.cssText = 'width: 100%; border: 0; display: block;';
      // The host's CSS stops at the shadow root and cannot cross into the cross-origin frame.
      this.attachShadow({ mode: 'open' }).append(this.#frame);
    }
    window.addEventListener('message', this.#onMessage);
    this.#update();
  }

  disconnectedCallback() {
    window.removeEventListener('message', this.#onMessage);
  }

  attributeChangedCallback() {
    if (this.#frame) this.#update();
  }

  /**
   * Generates with `options` (prompt, negativePrompt, seed, steps, guidance, width, height)
   * in the frame's form; resolves to the first image's event detail, rejects with
   * {code, message}.
   */
  generate(options = {}) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#calls.set(id, { resolve, reject });
      this.#frame?.contentWindow?.postMessage({ easel: 'generate', id, options }, PAGE.origin);
    });
  }

  /** Stops the running generation after its step, or the running download. */
  cancel() {
    this.#frame?.contentWindow?.postMessage({ easel: 'cancel' }, PAGE.origin);
  }

  #update() {
    const url = new URL(PAGE);
    url.searchParams.set('embed', '1');
    for (const name of PASSED) {
      let value = this.getAttribute(name);
      if (value === null || value === '') continue;
      // A relative model URL is the host page's, not Easel's.
      if (name === 'model' && (/^[./]/.test(value) || value.endsWith('/'))) value = new URL(value, document.baseURI).href;
      url.searchParams.set(name === 'allowed-models' ? 'allowed' : name, value);
    }
    this.#frame.style.height = `${Number(this.getAttribute('height')) || 760}px`;
    if (this.#frame.src !== url.href) this.#frame.src = url.href;
  }

  #receive(e) {
    // Only our own frame, on Easel's origin.
    if (e.source !== this.#frame?.contentWindow || e.origin !== PAGE.origin) return;
    const data = e.data;
    if (!data || typeof data.easel !== 'string') return;
    const emit = (name, detail) => this.dispatchEvent(new CustomEvent(name, { detail, bubbles: true, composed: true }));
    // The page asks once it listens (every new address is a new page).
    if (data.easel === 'hello') this.#frame.contentWindow.postMessage({ easel: 'connect' }, PAGE.origin);
    if (data.easel === 'ready') emit('easel-ready', { model: data.model });
    if (data.easel === 'progress') emit('easel-progress', { ...data.progress, id: data.id });
    if (data.easel === 'image') {
      const detail = { blob: data.png ? new Blob([data.png], { type: 'image/png' }) : null, width: data.width, height: data.height, seed: data.seed, index: data.index, params: data.params };
      emit('easel-image', detail);
      if (data.index === 0) this.#settle(data.id, true, detail);
    }
    if (data.easel === 'error') {
      const detail = { code: data.code, message: data.message };
      emit('easel-error', detail);
      this.#settle(data.id, false, Object.assign(new Error(data.message), detail));
    }
  }

  #settle(id, ok, value) {
    const call = this.#calls.get(id);
    if (!call) return;
    this.#calls.delete(id);
    (ok ? call.resolve : call.reject)(value);
  }
}

if (!customElements.get('easel-generator')) customElements.define('easel-generator', EaselGenerator);
