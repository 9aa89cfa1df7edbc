#!/usr/bin/env bash
# Builds the release wasm packages the page and the worker import:
#   pkg/                   one thread, SIMD128: any page, any browser
#   pkg/threads/           wasm atomics and shared memory: the CPU backend on every core in a
#                          cross-origin isolated page
#   pkg/relaxed/           pkg/ with relaxed SIMD: the GEMM's multiply-adds fused where the
#   pkg/relaxed/threads/   CPU has FMA (a UNet step 1.1-1.2x faster); other browsers get the above
# (www/engine-pkg.js picks one at run time.)
#   scripts/build.sh [--no-threads]   (--no-threads: pkg/ only, a quarter of the time)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

# $1: the out dir; $2: extra target features (",+relaxed-simd" or "").
one_thread() {
  # The plain build takes .cargo/config.toml's flags; a relaxed one its own target dir, so
  # that the two do not rebuild each other.
  if [ -z "$2" ]; then
    wasm-pack --quiet build --release --target web --out-dir "$1"
  else
    RUSTFLAGS="--cfg getrandom_backend=\"wasm_js\" -C target-feature=+simd128$2" CARGO_TARGET_DIR=target/wasm-relaxed \
      wasm-pack --quiet build --release --target web --out-dir "$1"
  fi
}

# $1: the out dir; $2: extra target features; $3: the target dir.
threaded() {
  # Threads need std rebuilt with atomics (-Z build-std), hence the pinned nightly; 4 GiB is
  # wasm32's whole address space (a shared memory must declare its maximum).
  RUSTUP_TOOLCHAIN=$EASEL_NIGHTLY \
  RUSTFLAGS="--cfg getrandom_backend=\"wasm_js\" -C target-feature=+simd128$2,+atomics,+bulk-memory,+mutable-globals $(
    # A shared, imported memory (each thread's instance gets the engine's) with every
    # thread's TLS set up by wasm-bindgen's start function.
    for a in --shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls --export=__tls_size --export=__tls_align --export=__tls_base; do
      printf -- '-C link-arg=%s ' "$a"
    done)" \
  CARGO_TARGET_DIR=$3 \
    wasm-pack --quiet build --release --target web --out-dir "$1" . -Z build-std=panic_abort,std
}

one_thread pkg ""
if [ "${1:-}" != --no-threads ]; then
  threaded pkg/threads "" target/wasm-threads
  one_thread pkg/relaxed ",+relaxed-simd"
  threaded pkg/relaxed/threads ",+relaxed-simd" target/wasm-relaxed-threads
fi
