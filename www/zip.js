// A ZIP archive of files stored as they are (method 0: PNGs are already compressed), for
// downloading a walk's frames in one file. Format: PKWARE APPNOTE 6.3.x, sections 4.3-4.4
// (local headers, central directory, end record); names in UTF-8 (flag bit 11).

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** CRC-32 (IEEE 802.3, as ZIP and PNG use it) of `bytes`. */
export function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** `files` ([{ name, bytes: Uint8Array }]) as one stored ZIP Blob. */
export function zipStored(files) {
  const parts = [];
  const central = [];
  let offset = 0;
  for (const { name, bytes } of files) {
    const nameBytes = new TextEncoder().encode(name);
    const crc = crc32(bytes);
    // version 2.0, UTF-8 names, stored, no time (1980-01-01), sizes known up front.
    const fields = (sig, extra) => {
      const h = new DataView(new ArrayBuffer(extra ? 46 : 30));
      let at = 0;
      const u32 = (v) => (h.setUint32(at, v, true), (at += 4));
      const u16 = (v) => (h.setUint16(at, v, true), (at += 2));
      u32(sig);
      if (extra) u16(20);
      u16(20), u16(0x0800), u16(0), u16(0), u16(0x21);
      u32(crc), u32(bytes.length), u32(bytes.length);
      u16(nameBytes.length), u16(0);
      if (extra) u16(0), u16(0), u16(0), u32(0), u32(offset);
      return new Uint8Array(h.buffer);
    };
    const local = fields(0x04034b50, false);
    parts.push(local, nameBytes, bytes);
    central.push(fields(0x02014b50, true), nameBytes);
    offset += local.length + nameBytes.length + bytes.length;
  }
  const size = central.reduce((a, p) => a + p.length, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, files.length, true);
  end.setUint16(10, files.length, true);
  end.setUint32(12, size, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...central, new Uint8Array(end.buffer)], { type: 'application/zip' });
}
