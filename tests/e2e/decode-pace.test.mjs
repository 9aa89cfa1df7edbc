// The decode estimate's correction (www/decode-pace.js), with the figures of emoji-sd at
// 512 px in the page: 2.0 steps' work at 12 s a step guessed 24 s for an 18 s decode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DecodePace } from '../../www/decode-pace.js';

test('the first guess is the work at the steps pace, later ones are corrected by the last decode', () => {
  const pace = new DecodePace();
  assert.equal(pace.start(2.0, 12, 1000), 24);
  pace.finish(1000 + 18_000);
  assert.equal(pace.correction, 0.75);
  // The same model again, and at another size: the guess scaled by 18 / 24.
  assert.equal(pace.start(2.0, 12, 50_000), 18);
  pace.finish(50_000 + 18_600);
  assert.equal(pace.start(0.5, 8, 90_000), 0.5 * 8 * (18.6 / 24));
});

test('unknown work or pace gives no estimate and teaches nothing', () => {
  const pace = new DecodePace();
  for (const [work, perStep] of [[null, 12], [2, 0], [undefined, undefined]]) {
    assert.equal(pace.start(work, perStep, 0), 0);
    pace.finish(30_000);
    assert.equal(pace.correction, 1);
  }
});

test('a cancelled decode, an outlier and another model leave no correction behind', () => {
  const pace = new DecodePace();
  pace.start(2, 10, 0);
  pace.abandon();
  pace.finish(5_000);
  assert.equal(pace.correction, 1, 'abandoned: its end is not a decode time');
  pace.start(2, 10, 0);
  pace.finish(600_000);
  assert.equal(pace.correction, 1, 'thirty times the guess: the tab slept, not the op mix');
  pace.start(2, 10, 0);
  pace.finish(30_000);
  assert.equal(pace.correction, 1.5);
  pace.reset();
  assert.equal(pace.start(2, 10, 0), 20);
});
