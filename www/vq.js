// The VQGAN round-trip panel: an image through the codebook (encode, then decode the codes),
// the code grid drawn one colour per code, and a brush that selects codes to randomize.

const $ = (id) => document.getElementById(id);

/** A distinct colour per code index (hue around the wheel). */
function codeColour(index, codes) {
  return `hsl(${Math.round((index * 360) / Math.max(1, codes))}, 70%, 55%)`;
}

export class VqPanel {
  constructor(easel, getSize) {
    this.easel = easel;
    this.getSize = getSize;
    this.grid = null; // { width, height, codes, indices: Uint32Array }
    this.selected = null; // Uint8Array, one per code
    $('vq-image').onchange = () => this.load($('vq-image').files[0]);
    $('vq-randomize').onclick = () => this.randomize();
    $('vq-clear').onclick = () => {
      this.selected?.fill(0);
      this.drawCodes();
    };
    const canvas = $('vq-codes');
    let painting = false;
    canvas.onpointerdown = (e) => {
      painting = true;
      canvas.setPointerCapture?.(e.pointerId);
      this.brush(e);
    };
    canvas.onpointermove = (e) => painting && this.brush(e);
    canvas.onpointerup = () => (painting = false);
  }

  /** Shown for VQ models only. */
  show(on) {
    $('vq-panel').hidden = !on;
  }

  async load(file) {
    if (!file) return;
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch (e) {
      $('vq-note').textContent = `${file.name} is not an image this browser can open: ${e.message}`;
      return;
    }
    const { width, height } = this.getSize();
    const input = $('vq-input');
    input.width = width;
    input.height = height;
    const g = input.getContext('2d');
    g.drawImage(bitmap, 0, 0, width, height);
    const image = g.getImageData(0, 0, width, height);
    const resized = bitmap.width !== width || bitmap.height !== height ? ` (resized from ${bitmap.width}x${bitmap.height})` : '';
    this.pendingNote = `Encoded ${width}x${height}${resized}`;
    $('vq-recon').dataset.state = 'running';
    $('vq-note').textContent = 'encoding…';
    this.easel.vqEncode(image).then((r) => this.encoded(r), (e) => this.failed(e));
  }

  brush(e) {
    if (!this.grid) return;
    const canvas = $('vq-codes');
    const rect = canvas.getBoundingClientRect();
    const x = Math.floor(((e.clientX - rect.left) / rect.width) * this.grid.width);
    const y = Math.floor(((e.clientY - rect.top) / rect.height) * this.grid.height);
    if (x < 0 || y < 0 || x >= this.grid.width || y >= this.grid.height) return;
    this.selected[y * this.grid.width + x] = 1;
    this.drawCodes();
  }

  randomize() {
    if (!this.grid) return;
    const { indices, codes } = this.grid;
    let changed = 0;
    for (let i = 0; i < indices.length; i++) {
      if (!this.selected[i]) continue;
      indices[i] = Math.floor(Math.random() * codes);
      changed += 1;
    }
    if (!changed) {
      $('vq-note').textContent = 'Brush over some codes first.';
      return;
    }
    this.pendingNote = `${changed} code${changed === 1 ? '' : 's'} randomized`;
    $('vq-recon').dataset.state = 'running';
    this.easel.vqDecode(indices, this.grid.width, this.grid.height).then((image) => this.decoded(image), (e) => this.failed(e));
  }

  drawImage(image) {
    const c = $('vq-recon');
    c.width = image.width;
    c.height = image.height;
    c.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(image.rgba), image.width, image.height), 0, 0);
    c.dataset.state = 'done';
  }

  drawCodes() {
    const { width, height, codes, indices } = this.grid;
    const cell = 8;
    const c = $('vq-codes');
    c.width = width * cell;
    c.height = height * cell;
    const g = c.getContext('2d');
    for (let i = 0; i < indices.length; i++) {
      const [x, y] = [i % width, Math.floor(i / width)];
      g.fillStyle = codeColour(indices[i], codes);
      g.fillRect(x * cell, y * cell, cell, cell);
      if (this.selected[i]) {
        g.strokeStyle = '#fff';
        g.strokeRect(x * cell + 1, y * cell + 1, cell - 2, cell - 2);
      }
    }
    // The grid as text, for tests and for anyone who wants the numbers.
    c.dataset.indices = Array.from(indices).join(',');
    $('vq-randomize').disabled = !this.selected.some((s) => s);
    $('vq-clear').disabled = $('vq-randomize').disabled;
  }

  encoded(r) {
    this.grid = { width: r.gridWidth, height: r.gridHeight, codes: r.codes, indices: new Uint32Array(r.indices) };
    this.selected = new Uint8Array(r.indices.length);
    this.drawImage(r.image);
    this.drawCodes();
    $('vq-note').textContent = `${this.pendingNote} into ${r.gridWidth}x${r.gridHeight} codes (of ${r.codes} in the codebook) and decoded them again.`;
  }

  decoded(image) {
    this.drawImage(image);
    this.drawCodes();
    $('vq-note').textContent = `${this.pendingNote} and decoded.`;
  }

  failed(e) {
    $('vq-recon').dataset.state = 'error';
    $('vq-note').textContent = e.message;
  }
}
