// The LoRA panel: add LoRAs to the loaded Stable Diffusion model by file or URL (URLs are
// kept in Cache Storage like models), a scale slider per LoRA that takes effect when it is
// released (the engine rewrites only the weights the LoRA changes: nothing reloads), and a
// Remove button that gives the model's own weights back exactly.

const $ = (id) => document.getElementById(id);

export class LoraPanel {
  constructor(easel, generator) {
    this.easel = easel;
    this.generator = generator;
    $('lora-file').onchange = () => {
      const file = $('lora-file').files[0];
      if (file) this.add(file, file.name).finally(() => ($('lora-file').value = ''));
    };
    $('lora-add').onclick = () => {
      const url = $('lora-url').value.trim();
      if (url) this.add(new URL(url, location.href).href, url);
    };
  }

  /** A model loaded: the panel shows for Stable Diffusion models, with no LoRA applied. */
  setModel(info) {
    $('lora-panel').hidden = !info?.defaults?.family?.startsWith('stable-diffusion');
    this.render(info?.loras ?? []);
    $('lora-note').textContent = 'A LoRA (diffusers / peft or kohya safetensors) changes the loaded weights in place; its scale changes without reloading the model.';
  }

  /** Runs one LoRA change with the panel and Generate held, then shows the result. */
  async change(what, f) {
    const panel = $('lora-panel');
    panel.dataset.state = 'applying';
    for (const el of panel.querySelectorAll('input, button')) el.disabled = true;
    const generate = $('generate');
    const wasDisabled = generate.disabled;
    generate.disabled = true;
    $('lora-note').textContent = `${what}…`;
    const started = performance.now();
    try {
      const loras = await f();
      this.render(loras);
      panel.dataset.state = 'ready';
      $('lora-note').textContent = `${what}: done in ${Math.round(performance.now() - started)} ms, no reload.`;
    } catch (e) {
      this.render(this.easel.loras);
      panel.dataset.state = 'error';
      $('lora-note').textContent = e.message;
    } finally {
      for (const el of panel.querySelectorAll('input, button')) el.disabled = false;
      generate.disabled = wasDisabled || !this.generator.model;
    }
  }

  add(source, label) {
    return this.change(`Applying ${label}`, () => this.easel.addLora(source, { scale: 1 }));
  }

  /** One row per applied LoRA: its name, a scale slider and Remove. */
  render(loras) {
    const rows = loras.map(({ name, sha256, scale }) => {
      const li = document.createElement('li');
      li.dataset.lora = name;
      const label = document.createElement('span');
      label.className = 'lora-name';
      label.textContent = name;
      label.title = `sha256 ${sha256}`;
      const slider = document.createElement('input');
      Object.assign(slider, { type: 'range', min: '-1', max: '2', step: '0.05', value: String(scale) });
      slider.setAttribute('aria-label', `scale of ${name}`);
      const value = document.createElement('output');
      value.textContent = scale.toFixed(2);
      slider.oninput = () => (value.textContent = Number(slider.value).toFixed(2));
      slider.onchange = () => this.change(`Scale of ${name} to ${Number(slider.value).toFixed(2)}`, () => this.easel.setLoraScale(name, Number(slider.value)));
      const remove = document.createElement('button');
      Object.assign(remove, { type: 'button', className: 'small', textContent: 'Remove' });
      remove.onclick = () => this.change(`Removing ${name}`, () => this.easel.removeLora(name));
      li.append(label, slider, value, remove);
      return li;
    });
    $('lora-list').replaceChildren(...rows);
  }
}
