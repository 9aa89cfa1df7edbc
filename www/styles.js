// Style presets: words a style adds to the prompt and the negative prompt. The list is
// editable (one style per line: "name | prompt words | negative words") and kept in
// localStorage; the generation's prompt (and so the PNG's metadata) is the final text.

const $ = (id) => document.getElementById(id);
const KEY = 'easel-styles';

// The defaults are one list with the CLI's `--style` (src/pipelines/styles.rs reads it too).
const DEFAULTS_URL = new URL('./styles.txt', import.meta.url);

/** Parses the editable text into [{name, prompt, negative}], skipping lines without a name. */
export function parseStyles(text) {
  return text
    .split('\n')
    .map((line) => line.split('|').map((s) => s.trim()))
    .filter(([name]) => name)
    .map(([name, prompt = '', negative = '']) => ({ name, prompt, negative }));
}

/** `base` with `extra` after a comma (nothing added when either is empty). */
function join(base, extra) {
  if (!extra) return base;
  return base.trim() ? `${base.trim()}, ${extra}` : extra;
}

export class StylePresets {
  constructor() {
    this.styles = [];
    this.defaults = fetch(DEFAULTS_URL).then((r) => (r.ok ? r.text() : '')).catch(() => '');
    let saved = null;
    try {
      saved = localStorage.getItem(KEY);
    } catch {
      // Storage blocked (a sandboxed frame): the defaults, not saved.
    }
    /** Settles once the list is filled (the defaults arrive by fetch). */
    this.ready = (saved !== null ? Promise.resolve(saved) : this.defaults).then((text) => {
      $('style-list').value = text.trimEnd();
      this.fill();
    });
    $('style-list').onchange = () => {
      try {
        localStorage.setItem(KEY, $('style-list').value);
      } catch {
        // Not saved; still used for this visit.
      }
      this.fill();
    };
    $('style-reset').onclick = async () => {
      $('style-list').value = (await this.defaults).trimEnd();
      $('style-list').onchange();
    };
  }

  fill() {
    const keep = $('style').value;
    this.styles = parseStyles($('style-list').value);
    $('style').replaceChildren(new Option('None', ''), ...this.styles.map((s) => new Option(s.name, s.name)));
    $('style').value = this.styles.some((s) => s.name === keep) ? keep : '';
  }

  /** The prompt and negative prompt with the chosen style's words added. */
  apply(prompt, negative) {
    const s = this.styles.find((x) => x.name === $('style').value);
    return s ? { prompt: join(prompt, s.prompt), negativePrompt: join(negative, s.negative) } : { prompt, negativePrompt: negative };
  }
}
