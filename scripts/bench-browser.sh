#!/usr/bin/env bash
# The op benchmarks in headless Chromium (SwiftShader WebGPU), side by side with
# onnxruntime-web on the same adapter. Prints the table; figures are not asserted.
#
#   scripts/bench-browser.sh [--runs N] [--filter TEXT] [--backend cpu|gpu] [--threads 1,2] [--kernels tiled|simple] [--compare-kernels] [--compare-precision]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh bench
scripts/build.sh
[ -f www/bench-models/attention_4096_8x16.onnx ] || python3 scripts/bench/make_onnx.py www/bench-models
exec node scripts/bench/run-browser.mjs "$@"
