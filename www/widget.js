// The embeddable generator: one tag on any site.
//
//   <script type="module" src="https://your-host/easel/www/widget.js"></script>
//   <easel-generator model="https://your-host/models/sd-turbo-q8/" backend="auto"></easel-generator>
//
// It frames Easel's page (compact, without the diagnostics column) from the host that
// serves this script, so the engine, its worker and the model cache stay on that origin.

const PAGE = new URL('../index.html', import.meta.url);

class EaselGenerator extends HTMLElement {
  static observedAttributes = ['model', 'backend', 'height'];

  connectedCallback() {
    if (!this.frame) {
      this.frame = document.createElement('iframe');
      this.frame.title = 'Easel image generator';
      this.frame.allow = 'webgpu';
      this.frame.style.cssText = 'width: 100%; border: 0; display: block;';
      this.attachShadow({ mode: 'open' }).append(this.frame);
    }
    this.update();
  }

  attributeChangedCallback() {
    if (this.frame) this.update();
  }

  update() {
    const url = new URL(PAGE);
    url.searchParams.set('embed', '1');
    for (const name of ['model', 'backend']) {
      const value = this.getAttribute(name);
      if (value) url.searchParams.set(name, name === 'model' ? new URL(value, document.baseURI).href : value);
    }
    this.frame.style.height = `${Number(this.getAttribute('height')) || 760}px`;
    if (this.frame.src !== url.href) this.frame.src = url.href;
  }
}

if (!customElements.get('easel-generator')) customElements.define('easel-generator', EaselGenerator);
