// Reads one cached shard at a time for loader.js (see ShardReaders there): its bytes back
// from Cache Storage, checked against the checksum cached with them (readVerified), and
// handed back without a copy (transferred). A damaged entry is deleted, so the next load
// fetches it.
//
//   -> { id, url, size, sha256 }
//   <- { id, bytes } | { id, damaged: true } | { id, error }

import { CACHE_NAME, readVerified } from './loader.js';

let cache = null;

self.onmessage = async ({ data: { id, url, size, sha256 } }) => {
  try {
    cache ??= await caches.open(CACHE_NAME);
    const bytes = await readVerified(cache, url, { size, sha256 });
    if (bytes) self.postMessage({ id, bytes }, [bytes.buffer]);
    else self.postMessage({ id, damaged: true });
  } catch (e) {
    self.postMessage({ id, error: e.message ?? String(e) });
  }
};
