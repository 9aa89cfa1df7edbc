// The fast checksum a cached shard is re-checked with on every load (loader.js). A shard's
// sha256 is checked once, when it is downloaded; its XXH32 is stored beside it in Cache
// Storage then, and reading it back checks that instead. XXH32 finds damage on disk (a flipped
// bit, a zeroed page) as surely as a cryptographic hash, bar a 1 in 2^32 chance, at a tenth
// of the cost: 3-6 GB/s in V8 against about 0.6 GB/s for WebCrypto's SHA-256, which also
// copies its input first. It guards against damage, not tampering: whoever can write this
// origin's cache can run its scripts anyway.
//
// XXH32 as specified by xxHash (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md),
// written from the spec; tests/e2e/checksum.test.mjs checks it against libxxhash's values.

/** The response header that carries a cached entry's XXH32 (8 lowercase hex digits). */
export const CHECKSUM_HEADER = 'x-easel-xxh32';

const P1 = 0x9e3779b1 | 0;
const P2 = 0x85ebca77 | 0;
const P3 = 0xc2b2ae3d | 0;
const P4 = 0x27d4eb2f | 0;
const P5 = 0x165667b1 | 0;

const rotl = (x, r) => (x << r) | (x >>> (32 - r));
const round = (acc, lane) => Math.imul(rotl((acc + Math.imul(lane, P2)) | 0, 13), P1);

/** XXH32 of `bytes` (a Uint8Array) with `seed`, as an unsigned 32-bit number. */
export function xxh32(bytes, seed = 0) {
  const n = bytes.length;
  // Little-endian 32-bit lanes, read through one aligned view: 4x faster than assembling
  // them byte by byte. A shard read from the cache starts its own buffer, so it is aligned;
  // a view that is not (a caller's subarray) is copied once first.
  if (bytes.byteOffset % 4 !== 0) bytes = bytes.slice();
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, n >>> 2);
  let i = 0;
  let h;
  if (n >= 16) {
    let v1 = (seed + P1 + P2) | 0;
    let v2 = (seed + P2) | 0;
    let v3 = seed | 0;
    let v4 = (seed - P1) | 0;
    for (let w = 0; i + 16 <= n; i += 16, w += 4) {
      v1 = round(v1, words[w]);
      v2 = round(v2, words[w + 1]);
      v3 = round(v3, words[w + 2]);
      v4 = round(v4, words[w + 3]);
    }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  } else {
    h = (seed + P5) | 0;
  }
  h = (h + n) | 0; // the length mod 2^32
  for (; i + 4 <= n; i += 4) h = Math.imul(rotl((h + Math.imul(words[i >>> 2], P3)) | 0, 17), P4);
  for (; i < n; i++) h = Math.imul(rotl((h + Math.imul(bytes[i], P5)) | 0, 11), P1);
  h ^= h >>> 15;
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  h ^= h >>> 16;
  return h >>> 0;
}

/** `xxh32(bytes)` as the header stores it: 8 lowercase hex digits. */
export const checksumHex = (bytes) => xxh32(bytes).toString(16).padStart(8, '0');
