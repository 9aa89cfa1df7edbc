// The generator form: builds a request from the controls, sends it to the worker, and
// shows step progress, live previews, the images and their PNG downloads.

import { InitImage } from './mask.js';
import { StylePresets } from './styles.js';

const $ = (id) => document.getElementById(id);

export class Generator {
  constructor(worker) {
    this.worker = worker;
    this.model = null;
    this.running = false;
    this.styles = new StylePresets();
    this.init = new InitImage({
      fileInput: $('init-image'),
      area: $('init-area'),
      imageCanvas: $('init-canvas'),
      maskCanvas: $('mask-canvas'),
      brush: $('brush'),
      clearMask: $('clear-mask'),
      clearImage: $('clear-init'),
      onChange: () => this.init.resize(this.size().width, this.size().height),
      onNote: (text) => ($('generate-note').textContent = text),
    });
    $('generate').onclick = () => this.start().catch(() => {});
    $('cancel').onclick = () => {
      this.worker.postMessage({ type: 'cancel' });
      if (this.running) $('step-text').textContent = 'cancelling after this step…';
      else $('download-text').textContent = 'stopping the download…';
    };
    $('random-seed').onclick = () => ($('seed').value = String(Math.floor(Math.random() * 2 ** 32)));
    for (const id of ['width', 'height']) $(id).onchange = () => this.init.resize(this.size().width, this.size().height);
  }

  /** A download runs (Cancel stops it) or ended. Generations and downloads never overlap. */
  setDownloading(on) {
    this.downloading = on;
    if (!this.running) $('cancel').disabled = !on;
  }

  /** The engine lost its GPU and restarts: nothing to generate with until the model is back. */
  engineRestarting() {
    this.model = null;
    $('generate').disabled = true;
  }

  size() {
    return { width: Number($('width').value), height: Number($('height').value) };
  }

  /** A model finished loading: enable generation and take its default size. */
  setModel(summary) {
    if (summary.generatorError) {
      this.model = null;
      $('generate').disabled = true;
      $('generate-note').textContent = `This model cannot generate here: ${summary.generatorError}`;
      return;
    }
    const d = summary.defaults;
    const familyChanged = this.model?.defaults.family !== d.family;
    this.model = summary;
    $('width').value = d.width;
    $('height').value = d.height;
    // Only the controls this model reads: no prompt or guidance for an unconditional
    // model, no init image where it cannot take one; sizes in its own unit.
    $('prompt-controls').hidden = !d.conditional;
    $('unconditional-note').hidden = d.conditional;
    // A class-conditional GAN reads a name (no negative prompt, no guidance); a model
    // without a scheduler (GAN, VQ) runs one pass, so there are no steps to set.
    $('guidance-row').hidden = !d.conditional || d.classes;
    $('negative-label').hidden = $('negative-prompt').hidden = d.classes;
    $('steps-row').hidden = $('scheduler-row').hidden = !d.scheduler;
    $('init-fieldset').hidden = !d.init_image;
    // A model that makes one size only (a GAN: its unit is its whole side) locks the size.
    const fixedSize = d.size_multiple === d.width && d.size_multiple === d.height;
    for (const id of ['width', 'height']) {
      $(id).step = String(d.size_multiple);
      $(id).min = String(d.size_multiple);
      $(id).disabled = fixedSize;
      $(id).title = fixedSize ? `This model draws ${d.width}x${d.height} images only` : '';
    }
    if (familyChanged && this.previousFamily !== undefined) $('steps').value = String(d.steps);
    this.previousFamily = d.family;
    // A model that suggests settings (a prompt it knows, its steps and guidance) gets them,
    // unless the visitor has written a prompt of their own.
    if (d.prompt) {
      const prompt = $('prompt');
      if (!prompt.value.trim() || prompt.value === this.suggestedPrompt) prompt.value = d.prompt;
      prompt.placeholder = d.prompt;
      $('steps').value = String(d.steps);
      $('guidance').value = String(d.guidance);
    }
    this.suggestedPrompt = d.prompt;
    $('generate').disabled = this.running;
    const random = summary.name.includes('tiny') ? ' It has random weights, so its images are noise: load a converted real model for pictures.' : '';
    const what = d.roundtrip
      ? `a VQ model with ${d.codes} codes: Generate decodes random codes; the round-trip panel encodes your image`
      : d.classes
        ? 'a GAN: the prompt names one of its emoji in English, or is the emoji itself'
        : `default scheduler ${d.scheduler}`;
    this.readyNote = `Ready: ${summary.name} on the ${summary.backend.toUpperCase()} (${what}).${random}`;
    $('generate-note').textContent = this.readyNote;
  }

  request() {
    const { width, height } = this.size();
    return {
      // The chosen style's words are part of the prompt the model reads and the PNG records.
      ...this.styles.apply($('prompt').value, $('negative-prompt').value),
      steps: Number($('steps').value),
      guidance: Number($('guidance').value),
      scheduler: $('scheduler').value || null,
      seed: Number($('seed').value),
      width,
      height,
      batch: Number($('batch').value),
      strength: Number($('strength').value),
      previews: true,
      ...(this.model?.defaults.init_image === false ? {} : this.init.requestFields(width, height)),
    };
  }

  /**
   * What the form holds that JSON cannot carry to the engine: an empty or non-numeric field
   * (a number input then reads as ''), NaN, or a seed JavaScript cannot hold exactly. The
   * engine checks everything else and answers with its own sentence.
   */
  formProblem() {
    for (const [id, name] of [['steps', 'Steps'], ['guidance', 'Guidance'], ['width', 'Width'], ['height', 'Height'], ['batch', 'Batch'], ['strength', 'Strength']]) {
      const raw = $(id).value.trim();
      if (raw === '' || !Number.isFinite(Number(raw))) return `${name} must be a number.`;
    }
    const seed = $('seed').value.trim();
    if (!/^[0-9]+$/.test(seed)) return 'Seed must be a whole number from 0 to 9007199254740991.';
    if (!Number.isSafeInteger(Number(seed))) return 'Seed must be at most 9007199254740991 (2^53 - 1): larger numbers lose digits in JavaScript.';
    return null;
  }

  /**
   * Starts a generation of `request` (default: the form's). Resolves to the result when it
   * is done; rejects when it fails, is cancelled or cannot start. `label` prefixes the step
   * line ("frame 2/8").
   */
  start(request = null, label = '') {
    if (!this.model || this.running) return Promise.reject(new Error('busy'));
    const problem = this.formProblem();
    if (problem) {
      $('generate-note').textContent = problem;
      return Promise.reject(new Error(problem));
    }
    request ??= this.request();
    this.label = label ? `${label}: ` : '';
    // A fresh note for this run: the resize notice, a size far past the model's own, or the
    // model's ready line again.
    $('generate-note').textContent = this.init.sizeNote(request.width, request.height) ?? this.sizeWarning(request) ?? this.readyNote ?? '';
    this.running = true;
    this.lastRequest = request;
    $('generate').disabled = true;
    $('cancel').disabled = false;
    $('canvas').dataset.state = 'running';
    $('step-progress').value = 0;
    $('step-text').textContent = this.model.defaults.conditional ? 'encoding the prompt…' : 'starting…';
    $('downloads').replaceChildren();
    $('gallery').replaceChildren();
    this.worker.postMessage({ type: 'generate', request });
    return new Promise((resolve, reject) => (this.pending = { resolve, reject }));
  }

  /** Settles the promise `start` returned. */
  settle(ok, value) {
    const p = this.pending;
    this.pending = null;
    if (p) (ok ? p.resolve : p.reject)(value);
  }

  finish(state, text) {
    this.running = false;
    $('generate').disabled = !this.model;
    $('cancel').disabled = true;
    $('canvas').dataset.state = state;
    $('step-text').textContent = text;
  }

  draw(canvas, image) {
    canvas.width = image.width;
    canvas.height = image.height;
    canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(image.rgba), image.width, image.height), 0, 0);
  }

  /**
   * One PNG download per image. A PNG the engine could not write is replaced by the
   * canvas's own (without the settings), and the reason shows beside it: the image itself
   * is never lost to a metadata problem.
   */
  showDownloads(images, pngs, result) {
    const errors = images.map((_, i) => result.pngErrors?.[i] ?? (pngs[i] ? null : result.pngError ?? 'the PNG could not be written'));
    const many = images.length > 1;
    const links = images.map((img, i) => {
      const a = document.createElement('a');
      a.download = `easel-${this.lastRequest.seed}${many ? `-${i}` : ''}.png`;
      a.textContent = `Download PNG${many ? ` ${i + 1}` : ''}`;
      if (pngs[i]) {
        a.href = URL.createObjectURL(new Blob([pngs[i]], { type: 'image/png' }));
      } else {
        const c = document.createElement('canvas');
        this.draw(c, img);
        c.toBlob((blob) => (a.href = URL.createObjectURL(blob)), 'image/png');
      }
      return a;
    });
    const notes = errors.filter(Boolean).map((e) => {
      const span = document.createElement('span');
      span.className = 'download-error';
      span.textContent = e;
      return span;
    });
    $('downloads').replaceChildren(...links, ...notes);
  }

  /**
   * Models are trained at one size; far past it each step costs more than the pixels suggest
   * (self-attention grows with their square) and pictures repeat. Said before the wait.
   */
  sizeWarning({ width, height }) {
    const own = this.model?.defaults;
    if (!own) return null;
    const times = (width * height) / (own.width * own.height);
    if (times < 16) return null;
    return `${width}x${height} is ${Math.round(times)} times the pixels of this model's own size (${own.width}x${own.height}): expect a long wait (the step line shows the time left; Cancel stops it) and a picture that repeats.`;
  }

  /** Messages from the worker about the running generation. */
  onMessage(data) {
    switch (data.type) {
      case 'gen-progress': {
        const p = data.progress;
        if (p.stage === 'text') {
          // The first step can take minutes at large sizes: say it has started.
          $('step-text').textContent = this.model?.defaults.conditional === false ? 'running the first step…' : 'prompt encoded; running the first step…';
          if (p.truncated) $('generate-note').textContent = 'Note: the prompt was longer than 77 tokens and was cut.';
        }
        if (p.stage === 'step') {
          $('step-progress').max = p.total;
          $('step-progress').value = p.step;
          const perStep = data.millis / p.step / 1000;
          const kind = { taesd: ', TAESD preview', latent: ', rough latent preview' }[p.previewKind] ?? '';
          const left = perStep * (p.total - p.step);
          const eta = p.step < p.total ? `, about ${left < 90 ? `${Math.ceil(left)} s` : `${Math.ceil(left / 60)} min`} left` : '';
          $('step-text').textContent = `${this.label}step ${p.step}/${p.total} (${perStep.toFixed(1)} s/step${eta}${kind})`;
          if (p.preview) this.draw($('canvas'), p.preview);
        }
        if (p.stage === 'decode') $('step-text').textContent = 'decoding the image…';
        break;
      }
      case 'gen-done': {
        const { images, pngs } = data.result;
        this.draw($('canvas'), images[0]);
        if (images.length > 1) {
          $('gallery').replaceChildren(
            ...images.map((img) => {
              const c = document.createElement('canvas');
              this.draw(c, img);
              c.onclick = () => this.draw($('canvas'), img);
              return c;
            }),
          );
        }
        this.showDownloads(images, pngs, data.result);
        // What a class-conditional model drew for the prompt ("draws: red heart ❤️ (twemoji)").
        if (data.result.note) $('generate-note').textContent = data.result.note;
        this.finish('done', `${this.label}done in ${(data.millis / 1000).toFixed(1)} s (${data.result.scheduler})`);
        this.settle(true, data.result);
        break;
      }
      case 'gen-cancelled':
        this.finish('cancelled', 'cancelled');
        this.settle(false, new Error('cancelled'));
        break;
      case 'gen-error':
        this.finish('error', `failed: ${data.message}`);
        $('generate-note').textContent = data.message;
        this.settle(false, new Error(data.message));
        break;
    }
  }
}
