// How long the VAE decode will take, for the step line while it runs. The first guess is
// its work in UNet steps (the engine counts it from the two graphs' operations) at the
// steps' pace. A decoder and a UNet run at different rates per operation where their op
// mixes differ: emoji-sd's 16-wide attention heads make its UNet slower per operation
// than its decoder's convolutions, so at 512 px the guess read 24-25 s for decodes of
// 15-19 s. Each finished decode therefore corrects the next guess for the same model and
// backend by how far its own was off.

export class DecodePace {
  constructor() {
    this.reset();
  }

  /** Another model or backend: its rates are unknown again. */
  reset() {
    this.correction = 1;
    this.run = null;
  }

  /**
   * A decode of `work` UNet steps begins at `nowMs`, after steps of `perStep` seconds.
   * Returns its expected length in seconds (0 where either is unknown).
   */
  start(work, perStep, nowMs) {
    const guess = work > 0 && perStep > 0 ? work * perStep : 0;
    this.run = guess > 0 ? { guess, began: nowMs } : null;
    return guess * this.correction;
  }

  /** The decode begun last finished at `nowMs` (a cancelled or failed run calls `abandon`). */
  finish(nowMs) {
    if (this.run) {
      const ratio = (nowMs - this.run.began) / 1000 / this.run.guess;
      // A decode that took a tenth or ten times its guess measured something else (a
      // tab in the background, a device lost mid-way), not the op mix.
      if (ratio > 0.1 && ratio < 10) this.correction = ratio;
    }
    this.run = null;
  }

  abandon() {
    this.run = null;
  }
}
