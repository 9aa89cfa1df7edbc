// The cache's fast checksum (www/checksum.js) against XXH32 as libxxhash computes it. The
// expected values were printed by libxxhash 0.8.1 (Debian's libxxhash0, XXH32 through
// Python's ctypes), not by the code under test.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { xxh32, checksumHex } from '../../www/checksum.js';

const text = (s) => new TextEncoder().encode(s);
// Byte i is the top byte of i * 2654435761 (mod 2^32): no runs, no period a lane width hides.
const pattern = (n) => Uint8Array.from({ length: n }, (_, i) => Math.imul(i, 2654435761 | 0) >>> 24);

test('XXH32 matches libxxhash: empty, short (one lane loop or none) and tails of every length', () => {
  assert.equal(xxh32(text('')), 0x02cc5d05);
  assert.equal(xxh32(text('abc')), 0x32d153ff);
  assert.equal(xxh32(text('abc'), 1), 0xaa3da8ff);
  // 35 bytes: two 16-byte stripes, then a 3-byte tail.
  assert.equal(xxh32(text('0123456789abcdef0123456789abcdefXYZ')), 0x16f9fa69);
  assert.equal(xxh32(text('0123456789abcdef0123456789abcdefXYZ'), 0x9747b28c), 0x3af80f45);
  assert.equal(xxh32(pattern(15)), 0xaa5d3fea);
});

test('XXH32 matches libxxhash on 1 MiB + 7 bytes, aligned and not', () => {
  const bytes = pattern((1 << 20) + 7);
  assert.equal(xxh32(bytes), 0x2736fe5d);
  // A view starting one byte in takes the unaligned path; the value must not change with it.
  assert.equal(xxh32(bytes.subarray(1)), 0xbfe386c0);
});

test('the header form is 8 lowercase hex digits, and one flipped bit changes it', () => {
  const bytes = pattern(4096);
  const before = checksumHex(bytes);
  assert.match(before, /^[0-9a-f]{8}$/);
  assert.equal(checksumHex(text('')), '02cc5d05');
  bytes[2048] ^= 0x40;
  assert.notEqual(checksumHex(bytes), before);
});
