// The latent walk / morph panel: N generations whose starting noise moves by slerp from the
// Seed field's noise (frame 1) to another seed's (frame N), or whose prompt conditioning
// moves toward another prompt's (a morph), shown as a strip, played back on the main canvas
// with a scrubber, and exported as an animated PNG (encoded by the engine's module in the
// worker). Each frame is an ordinary generation (`walk: {toSeed, t}` or `morph: {toPrompt,
// t}` in the generate options), so the end frames are exactly the ends' own images.

import { zipStored } from './zip.js';

const $ = (id) => document.getElementById(id);

export class LatentWalk {
  constructor(generator) {
    this.generator = generator;
    this.frames = [];
    this.timer = null;
    $('walk-start').onclick = () => this.run();
    $('walk-play').onclick = () => this.togglePlay();
    $('walk-scrub').oninput = () => this.show(Number($('walk-scrub').value));
    $('walk-to-prompt').oninput = () => ($('walk-start').textContent = $('walk-to-prompt').value.trim() || !this.walks ? 'Morph' : 'Walk');
  }

  /** The frames as one APNG (encoded by the engine's module), with the walk's settings as its text. */
  async exportAnimation(requests) {
    const first = requests[0];
    const to = first.morph ? `prompt "${first.morph.toPrompt}"` : `seed ${first.walk.toSeed}`;
    const text = { prompt: first.prompt, seed: String(first.seed), animation: `${this.kind} from prompt "${first.prompt}" at seed ${first.seed} to ${to}, ${this.frames.length} frames, 125 ms each` };
    const link = $('walk-download');
    try {
      const blob = await this.generator.easel.encodeApng(this.frames.map((f) => f.image), { delayMs: 125, text });
      if (link.href) URL.revokeObjectURL(link.href);
      link.href = URL.createObjectURL(blob);
      link.download = `easel-${this.kind}-${this.frames.length}-frames.png`;
      link.hidden = false;
      const comment = Object.entries(text).map(([k, v]) => `${k}: ${v}`).join('\n');
      const gif = await this.generator.easel.encodeGif(this.frames.map((f) => f.image), { delayMs: 125, comment });
      const gifLink = $('walk-gif');
      if (gifLink.href) URL.revokeObjectURL(gifLink.href);
      gifLink.href = URL.createObjectURL(gif);
      gifLink.download = `easel-${this.kind}-${this.frames.length}-frames.gif`;
      gifLink.hidden = false;
      // Every frame's own PNG (its settings in its text), as the CLI's frame-000.png ...
      const pngs = this.frames.filter((f) => f.png);
      if (pngs.length === this.frames.length) {
        const zip = $('walk-zip');
        if (zip.href) URL.revokeObjectURL(zip.href);
        zip.href = URL.createObjectURL(zipStored(pngs.map((f, i) => ({ name: `frame-${String(i).padStart(3, '0')}.png`, bytes: f.png }))));
        zip.download = `easel-${this.kind}-frames.zip`;
        zip.hidden = false;
      }
    } catch (e) {
      $('generate-note').textContent = `The animation could not be written: ${e.message}`;
    }
  }

  /** A model loaded: the panel shows for models that start from seeded noise (walks) or
   * read a prompt (morphs); aMUSEd only morphs. */
  setModel(defaults) {
    $('walk-panel').hidden = !defaults?.walk && !defaults?.morph;
    this.walks = Boolean(defaults?.walk);
    $('walk-to-seed').closest('label').hidden = !this.walks;
    $('walk-start').textContent = this.walks && !$('walk-to-prompt').value.trim() ? 'Walk' : 'Morph';
    this.reset();
  }

  reset() {
    this.stop();
    this.frames = [];
    $('walk-strip').replaceChildren();
    $('walk-download').hidden = $('walk-gif').hidden = $('walk-zip').hidden = true;
    $('walk-play').disabled = $('walk-scrub').disabled = true;
    $('walk-scrub').max = '0';
  }

  /** The walk's requests: the form's settings, batch 1, t from 0 to 1 in equal steps. */
  requests() {
    const n = Math.max(2, Math.min(60, Math.round(Number($('walk-frames').value)) || 8));
    const toSeed = $('walk-to-seed').value.trim();
    if (!/^[0-9]+$/.test(toSeed) || !Number.isSafeInteger(Number(toSeed))) throw new Error('To seed must be a whole number from 0 to 9007199254740991.');
    const base = { ...this.generator.request(), batch: 1 };
    const toPrompt = $('walk-to-prompt').value.trim();
    if (!toPrompt && !this.walks) throw new Error('This model has no starting noise to walk: give a To prompt to morph to.');
    this.kind = toPrompt ? 'morph' : 'walk';
    const at = (t) => (toPrompt ? { morph: { toPrompt, t } } : { walk: { toSeed: Number(toSeed), t } });
    return Array.from({ length: n }, (_, i) => ({ ...base, ...at(i / (n - 1)) }));
  }

  async run() {
    let requests;
    try {
      requests = this.requests();
    } catch (e) {
      $('generate-note').textContent = e.message;
      return;
    }
    this.reset();
    $('walk-start').disabled = true;
    try {
      for (const [i, request] of requests.entries()) {
        const result = await this.generator.start(request, `frame ${i + 1}/${requests.length}`);
        this.add(result.images[0].imageData, result.images[0].png);
      }
      const first = requests[0];
      const to = first.morph ? `prompt "${first.morph.toPrompt}"` : `seed ${first.walk.toSeed}`;
      $('generate-note').textContent = `${this.kind === 'morph' ? 'Morph' : 'Walk'} done: ${this.frames.length} frames to ${to}.`;
      await this.exportAnimation(requests);
    } catch {
      // Cancelled or failed: the generator's note says which; the frames made so far stay.
    } finally {
      $('walk-start').disabled = false;
    }
  }

  add(image, png = null) {
    const c = document.createElement('canvas');
    this.generator.draw(c, image);
    const index = this.frames.length;
    c.onclick = () => this.show(index);
    c.title = `frame ${index + 1}`;
    this.frames.push({ image, png, canvas: c });
    $('walk-strip').append(c);
    $('walk-scrub').max = String(this.frames.length - 1);
    $('walk-play').disabled = $('walk-scrub').disabled = this.frames.length < 2;
    this.show(index);
  }

  show(i) {
    const f = this.frames[i];
    if (!f) return;
    this.generator.draw($('canvas'), f.image);
    $('walk-scrub').value = String(i);
    for (const [k, g] of this.frames.entries()) g.canvas.classList.toggle('current', k === i);
  }

  togglePlay() {
    if (this.timer) return this.stop();
    $('walk-play').textContent = 'Stop';
    let i = Number($('walk-scrub').value);
    // Forth and back, 8 frames a second.
    let dir = 1;
    this.timer = setInterval(() => {
      if (i + dir < 0 || i + dir >= this.frames.length) dir = -dir;
      i += dir;
      this.show(i);
    }, 125);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    $('walk-play').textContent = 'Play';
  }
}
