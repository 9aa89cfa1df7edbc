# Sourced by the scripts: the pinned nightly toolchain. The engine builds on stable; nightly
# builds the threaded wasm package (-Z build-std with atomics) and runs cargo-fuzz.
EASEL_NIGHTLY=nightly-2026-05-20
export EASEL_NIGHTLY
