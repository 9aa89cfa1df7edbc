// The host page's record of <easel-generator> events (a file, not inline: the strict-CSP
// host page in widget.test.mjs allows scripts from Easel's origin only).
window.events = [];
for (const name of ['easel-ready', 'easel-progress', 'easel-image', 'easel-error']) {
  document.addEventListener(name, async (e) => {
    const d = { ...e.detail };
    if (d.blob) d.png = Array.from(new Uint8Array(await d.blob.arrayBuffer()));
    delete d.blob;
    window.events.push({ name, target: e.target.id, detail: d });
  });
}
