// The generator form: builds generate options from the controls, runs them through the JS
// API (easel.js), and shows step progress, live previews, the images and their PNG downloads.

import { DecodePace } from './decode-pace.js';
import { InitImage } from './mask.js';
import { StylePresets } from './styles.js';

const $ = (id) => document.getElementById(id);

export class Generator {
  constructor(easel) {
    this.easel = easel;
    /** `report(kind, value)`: 'progress', 'images' or 'error' of every generation (the widget's bridge). */
    this.report = null;
    this.model = null;
    this.running = false;
    this.decodePace = new DecodePace();
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
      // Cancel stops whichever runs: the generation after its current step, or a download.
      if (this.running) {
        this.abort?.abort();
        $('step-text').textContent = 'cancelling after this step…';
      } else {
        this.onCancelDownload?.();
        $('download-text').textContent = 'stopping the download…';
      }
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
    this.decodePace.reset();
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
    this.perStep = 0;
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
    this.abort = new AbortController();
    return this.easel.generate({ ...request, signal: this.abort.signal, onStep: (p) => this.onStep(p) }).then(
      (result) => {
        this.done(result);
        this.report?.('images', result);
        return result;
      },
      (e) => {
        this.report?.('error', e);
        if (e.code === 'cancelled') {
          this.finish('cancelled', 'cancelled');
        } else {
          this.finish('error', `failed: ${e.message}`);
          $('generate-note').textContent = e.message;
        }
        throw e;
      },
    );
  }

  finish(state, text) {
    clearInterval(this.decodeTimer);
    if (state !== 'done') this.decodePace.abandon();
    this.running = false;
    $('generate').disabled = !this.model;
    $('cancel').disabled = true;
    $('canvas').dataset.state = state;
    $('step-text').textContent = text;
  }

  /** Draws an ImageData into `canvas`, sized to it. */
  draw(canvas, image) {
    canvas.width = image.width;
    canvas.height = image.height;
    canvas.getContext('2d').putImageData(image, 0, 0);
  }

  /**
   * One PNG download per image. A PNG the engine could not write is replaced by the
   * canvas's own (without the settings), and the reason shows beside it: the image itself
   * is never lost to a metadata problem.
   */
  showDownloads(images) {
    const errors = images.map((img) => img.pngError);
    const many = images.length > 1;
    const links = images.map((img, i) => {
      const a = document.createElement('a');
      a.download = `easel-${this.lastRequest.seed}${many ? `-${i}` : ''}.png`;
      a.textContent = `Download PNG${many ? ` ${i + 1}` : ''}`;
      if (img.blob) {
        a.href = URL.createObjectURL(img.blob);
      } else {
        const c = document.createElement('canvas');
        this.draw(c, img.imageData);
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

  /** A step's progress (with its preview) from the engine. */
  onStep(p) {
    this.report?.('progress', p);
    if (p.stage === 'text') {
      // The first step can take minutes at large sizes: say it has started.
      $('step-text').textContent = this.model?.defaults.conditional === false ? 'running the first step…' : 'prompt encoded; running the first step…';
      if (p.truncated) $('generate-note').textContent = 'Note: the prompt was longer than 77 tokens and was cut.';
    }
    if (p.stage === 'step') {
      $('step-progress').max = p.total;
      $('step-progress').value = p.step;
      const perStep = p.millis / p.step / 1000;
      const kind = { taesd: ', TAESD preview', latent: ', rough latent preview' }[p.previewKind] ?? '';
      const left = perStep * (p.total - p.step);
      const eta = p.step < p.total ? `, about ${left < 90 ? `${Math.ceil(left)} s` : `${Math.ceil(left / 60)} min`} left` : '';
      $('step-text').textContent = `${this.label}step ${p.step}/${p.total} (${perStep.toFixed(1)} s/step${eta}${kind})`;
      if (p.preview) this.draw($('canvas'), p.preview);
      this.perStep = perStep;
    }
    if (p.stage === 'decode') this.decoding(p.work);
  }

  /**
   * The decode's line, ticking each second: its time so far and, from its work in steps
   * (`work`: SD's decoder at 512 px is over three steps of SD-Turbo's UNet) at the steps'
   * pace as the last decode of this model corrects it (decode-pace.js), about how long it
   * takes in all. A decode of a second or two just says so.
   */
  decoding(work) {
    const began = performance.now();
    const about = this.decodePace.start(work, this.perStep, began);
    const tick = () => {
      const s = Math.floor((performance.now() - began) / 1000);
      $('step-text').textContent = about >= 3 ? `${this.label}decoding the image: ${s} s so far of about ${Math.ceil(about)} s` : `${this.label}decoding the image…`;
    };
    tick();
    clearInterval(this.decodeTimer);
    this.decodeTimer = setInterval(tick, 1000);
  }

  /** The finished generation: the first image on the canvas, a gallery for a batch. */
  done(result) {
    // The decode ended as its result arrived, before the drawing and the PNGs.
    this.decodePace.finish(performance.now());
    const { images } = result;
    this.draw($('canvas'), images[0].imageData);
    if (images.length > 1) {
      $('gallery').replaceChildren(
        ...images.map((img) => {
          const c = document.createElement('canvas');
          this.draw(c, img.imageData);
          c.onclick = () => this.draw($('canvas'), img.imageData);
          return c;
        }),
      );
    }
    this.showDownloads(images);
    // What a class-conditional model drew for the prompt ("draws: red heart ❤️ (twemoji)").
    if (result.note) $('generate-note').textContent = result.note;
    this.finish('done', `${this.label}done in ${(result.timings.totalMs / 1000).toFixed(1)} s (${result.scheduler})`);
  }
}
