#!/usr/bin/env bash
# Sets up, builds the release wasm into pkg/, and serves the page on
# http://127.0.0.1:8080 (PORT=N or --port N to change).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
echo "[run] building the wasm package (release)…"
scripts/build.sh
exec node scripts/serve.mjs "$@"
