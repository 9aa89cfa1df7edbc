// Reads a PNG's text chunks the way PIL does: tEXt (Latin-1), zTXt and iTXt (UTF-8,
// optionally deflated). An independent reader, so the tests do not trust the writer's own.

import { inflateSync } from 'node:zlib';

/** Map of keyword -> text for every tEXt, zTXt and iTXt chunk in `png` (a Buffer). */
export function pngText(png) {
  const sig = [137, 80, 78, 71, 13, 10, 26, 10];
  if (!sig.every((b, i) => png[i] === b)) throw new Error('not a PNG');
  const out = {};
  for (let at = 8; at + 8 <= png.length; ) {
    const len = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + len);
    at += 12 + len;
    if (type === 'IEND') break;
    const nul = data.indexOf(0);
    if (!['tEXt', 'zTXt', 'iTXt'].includes(type) || nul < 0) continue;
    const key = data.toString('latin1', 0, nul);
    if (type === 'tEXt') out[key] = data.toString('latin1', nul + 1);
    if (type === 'zTXt') out[key] = inflateSync(data.subarray(nul + 2)).toString('latin1');
    if (type === 'iTXt') {
      const compressed = data[nul + 1] === 1;
      const langEnd = data.indexOf(0, nul + 3);
      const transEnd = data.indexOf(0, langEnd + 1);
      const body = data.subarray(transEnd + 1);
      out[key] = (compressed ? inflateSync(body) : body).toString('utf8');
    }
  }
  return out;
}
