#!/usr/bin/env bash
# Builds the release wasm packages the page and the worker import:
#   pkg/          one thread: any page
#   pkg/threads/  wasm atomics and shared memory: the CPU backend on every core in a
#                 cross-origin isolated page (www/engine-pkg.js picks one at run time)
#   scripts/build.sh [--no-threads]   (--no-threads: pkg/ only, half the time)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh
wasm-pack --quiet build --release --target web --out-dir pkg
if [ "${1:-}" != --no-threads ]; then
  # Threads need std rebuilt with atomics (-Z build-std), hence the pinned nightly; 4 GiB is
  # wasm32's whole address space (a shared memory must declare its maximum).
  RUSTUP_TOOLCHAIN=$EASEL_NIGHTLY \
  RUSTFLAGS="--cfg getrandom_backend=\"wasm_js\" -C target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals $(
    # A shared, imported memory (each thread's instance gets the engine's) with every
    # thread's TLS set up by wasm-bindgen's start function.
    for a in --shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls --export=__tls_size --export=__tls_align --export=__tls_base; do
      printf -- '-C link-arg=%s ' "$a"
    done)" \
  CARGO_TARGET_DIR=target/wasm-threads \
    wasm-pack --quiet build --release --target web --out-dir pkg/threads . -Z build-std=panic_abort,std
fi
