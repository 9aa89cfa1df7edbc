#!/usr/bin/env bash
# Builds the npm package easel-web: the JS API, its worker and types, the wasm engine, and
# the bundled default model (emoji-dcgan), as target/npm/easel-web-<version>.tgz.
#   scripts/pack.sh            (pkg/ must be built: scripts/build.sh)
# Prints the tarball's path last.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f pkg/easel_bg.wasm ] || { echo "pack: pkg/easel_bg.wasm is missing: run scripts/build.sh first" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
stage=target/npm/easel-web
rm -rf "$stage" && mkdir -p "$stage/www/models" "$stage/pkg"
# The API's module graph only (worker.js imports hub.js, loader.js and engine-pkg.js, which
# imports simd.js and starts engine-thread.js; loader.js starts shard-reader.js and imports checksum.js; all import protocol.js).
cp www/easel.js www/easel.d.ts www/protocol.js www/worker.js www/loader.js www/checksum.js www/shard-reader.js www/hub.js www/engine-pkg.js www/engine-thread.js "$stage/www/"
cp pkg/easel.js pkg/easel_bg.wasm "$stage/pkg/"
# The threaded build (cross-origin isolated sites; without it the engine runs on one thread)
# and the relaxed-SIMD pair (browsers with relaxed SIMD; without them, the plain builds run).
cp www/simd.js "$stage/www/"
for build in threads relaxed relaxed/threads; do
  if [ -f "pkg/$build/easel_bg.wasm" ]; then
    mkdir -p "$stage/pkg/$build" && cp "pkg/$build/easel.js" "pkg/$build/easel_bg.wasm" "$stage/pkg/$build/"
  fi
done
cp -r www/models/emoji-dcgan "$stage/www/models/"
cp npm/README.md "$stage/"
node -e '
  const fs = require("fs");
  const p = JSON.parse(fs.readFileSync("npm/package.json", "utf8"));
  p.version = process.argv[1];
  fs.writeFileSync(process.argv[2], JSON.stringify(p, null, 2) + "\n");
' "$version" "$stage/package.json"
(cd target/npm && npm pack --silent ./easel-web >/dev/null)
echo "$(pwd)/target/npm/easel-web-$version.tgz"
