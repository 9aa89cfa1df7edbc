#!/usr/bin/env bash
# Builds the release wasm package into pkg/ (the page and the worker import pkg/easel.js).
set -euo pipefail
cd "$(dirname "$0")/.."
wasm-pack --quiet build --release --target web --out-dir pkg
