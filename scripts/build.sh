#!/usr/bin/env bash
# Builds the release wasm packages the page and the worker import:
#   pkg/                   one thread, SIMD128: any page, any browser
#   pkg/threads/           wasm atomics and shared memory: the CPU backend on every core in a
#                          cross-origin isolated page
#   pkg/relaxed/           pkg/ with relaxed SIMD: the GEMM's multiply-adds fused where the
#   pkg/relaxed/threads/   CPU has FMA (a UNet step 1.1-1.2x faster); other browsers get the above
# (www/engine-pkg.js picks one at run time.)
#   scripts/build.sh [--no-threads]   (--no-threads: pkg/ only; cold, about 40% of the time of all four)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

# $1: the out dir; $2: the target dir; $3...: extra cargo flags ("--features relaxed-simd").
one_thread() {
  local out=$1 dir=$2
  shift 2
  # .cargo/config.toml's flags (SIMD128, getrandom's JS backend).
  CARGO_TARGET_DIR=$dir wasm-pack --quiet build --release --target web --out-dir "$out" . "$@"
}

# The same arguments as one_thread.
threaded() {
  local out=$1 dir=$2
  shift 2
  # Threads need std rebuilt with atomics (-Z build-std), hence the pinned nightly; 4 GiB is
  # wasm32's whole address space (a shared memory must declare its maximum).
  RUSTUP_TOOLCHAIN=$EASEL_NIGHTLY \
  RUSTFLAGS="--cfg getrandom_backend=\"wasm_js\" -C target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals $(
    # A shared, imported memory (each thread's instance gets the engine's) with every
    # thread's TLS set up by wasm-bindgen's start function.
    for a in --shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls --export=__tls_size --export=__tls_align --export=__tls_base; do
      printf -- '-C link-arg=%s ' "$a"
    done)" \
  CARGO_TARGET_DIR=$dir \
    wasm-pack --quiet build --release --target web --out-dir "$out" . -Z build-std=panic_abort,std "$@"
}

# A relaxed-SIMD build differs from its plain twin in this crate alone (a crate feature,
# not RUSTFLAGS), so its target dir starts as a copy of the twin's: the dependencies are
# up to date there and only this crate is compiled (a cold build saves minutes). Not one
# shared dir: a cdylib's file has no per-feature name, so the twins would rebuild each other.
seeded() {
  if [ ! -d "$1" ] && [ -d "$2" ]; then
    # Through a scratch name, so that an interrupted copy is never taken for a seeded dir.
    rm -rf "$1.partial"
    cp -a "$2" "$1.partial" && mv "$1.partial" "$1"
  fi
}

one_thread pkg target/wasm
if [ "${1:-}" != --no-threads ]; then
  threaded pkg/threads target/wasm-threads
  seeded target/wasm-relaxed target/wasm
  one_thread pkg/relaxed target/wasm-relaxed --features relaxed-simd
  seeded target/wasm-relaxed-threads target/wasm-threads
  threaded pkg/relaxed/threads target/wasm-relaxed-threads --features relaxed-simd
fi
