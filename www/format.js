// Small formatting helpers shared by the page and its widgets.

/** 1536 -> "1.5 KiB"; binary units because GPU limits are powers of two. */
export function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

/** The middle value of `xs`; with an even count, the mean of the two middle ones. */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/** The limits the engine plans around, as [label, text] rows. */
export function describeLimits(l) {
  return [
    ['maxBufferSize', formatBytes(l.maxBufferSize)],
    ['maxStorageBufferBindingSize', formatBytes(l.maxStorageBufferBindingSize)],
    ['maxStorageBuffersPerShaderStage', String(l.maxStorageBuffersPerShaderStage)],
    ['maxComputeWorkgroupStorageSize', formatBytes(l.maxComputeWorkgroupStorageSize)],
    ['maxComputeInvocationsPerWorkgroup', String(l.maxComputeInvocationsPerWorkgroup)],
  ];
}
