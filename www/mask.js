// The init image and the inpainting mask: the image is drawn at the generation size, and
// the visitor paints the area to repaint on a canvas laid over it.

export class InitImage {
  constructor({ fileInput, area, imageCanvas, maskCanvas, brush, clearMask, clearImage, onChange, onNote }) {
    Object.assign(this, { area, imageCanvas, maskCanvas, brush, onChange, onNote });
    this.bitmap = null;
    this.painted = false;
    fileInput.onchange = async () => {
      const file = fileInput.files?.[0];
      if (!file) return;
      try {
        // PNG of any depth or palette, JPEG, WebP, GIF: whatever the browser decodes.
        this.bitmap = await createImageBitmap(file);
      } catch (e) {
        this.bitmap = null;
        fileInput.value = '';
        this.area.hidden = true;
        this.onNote?.(`${file.name} is not an image this browser can open (truncated or corrupt?): ${e.message}`);
        this.onChange?.();
        return;
      }
      this.onNote?.('');
      this.area.hidden = false;
      this.onChange?.();
    };
    clearMask.onclick = () => this.clearMask();
    clearImage.onclick = () => {
      this.bitmap = null;
      fileInput.value = '';
      this.area.hidden = true;
      this.onChange?.();
    };
    this.enablePainting();
  }

  /** Draws the image at the generation size (and resets the mask when the size changes). */
  resize(width, height) {
    if (!this.bitmap) return;
    if (this.imageCanvas.width !== width || this.imageCanvas.height !== height) {
      for (const c of [this.imageCanvas, this.maskCanvas]) Object.assign(c, { width, height });
      this.painted = false;
    }
    this.imageCanvas.getContext('2d').drawImage(this.bitmap, 0, 0, width, height);
  }

  /** A sentence when the image is resized to the generation's size, else null. */
  sizeNote(width, height) {
    if (!this.bitmap || (this.bitmap.width === width && this.bitmap.height === height)) return null;
    return `The init image (${this.bitmap.width}x${this.bitmap.height}) was resized to ${width}x${height}.`;
  }

  clearMask() {
    this.maskCanvas.getContext('2d').clearRect(0, 0, this.maskCanvas.width, this.maskCanvas.height);
    this.painted = false;
  }

  enablePainting() {
    const c = this.maskCanvas;
    let down = false;
    const paint = (e) => {
      const r = c.getBoundingClientRect();
      const x = ((e.clientX - r.left) / r.width) * c.width;
      const y = ((e.clientY - r.top) / r.height) * c.height;
      const radius = (Number(this.brush.value) / 256) * Math.max(c.width, c.height) / 2;
      const ctx = c.getContext('2d');
      ctx.fillStyle = 'rgba(255, 255, 255, 0.7)';
      ctx.beginPath();
      ctx.arc(x, y, Math.max(0.5, radius), 0, 2 * Math.PI);
      ctx.fill();
      this.painted = true;
    };
    c.onpointerdown = (e) => {
      down = true;
      c.setPointerCapture(e.pointerId);
      paint(e);
    };
    c.onpointermove = (e) => down && paint(e);
    c.onpointerup = () => (down = false);
  }

  /** The generate options: initImage (ImageData) and, when painted, mask (ImageData, white = repaint). */
  requestFields(width, height) {
    if (!this.bitmap) return {};
    this.resize(width, height);
    const fields = { initImage: this.imageCanvas.getContext('2d').getImageData(0, 0, width, height) };
    if (this.painted) {
      // The API's mask convention (diffusers'): white repaints, black keeps.
      const mask = this.maskCanvas.getContext('2d').getImageData(0, 0, width, height);
      const d = mask.data;
      for (let p = 0; p < d.length; p += 4) {
        const v = d[p + 3] > 0 ? 255 : 0;
        d[p] = d[p + 1] = d[p + 2] = v;
        d[p + 3] = 255;
      }
      fields.mask = mask;
    }
    return fields;
  }
}
