#!/usr/bin/env bash
# Installs what Easel needs on a fresh Debian/Ubuntu machine and skips whatever is already
# there at the pinned version, so a warm machine sets up in seconds.
#
#   scripts/setup.sh build   toolchain for building and serving the page
#   scripts/setup.sh test    the above plus Chromium, ChromeDriver, lavapipe, npm packages and
#                            cargo-fuzz (with a nightly toolchain) for the fuzz suite
#   scripts/setup.sh bench   the test set but cargo-fuzz, plus onnxruntime-web and Python's onnx
#                            (browser bench)
#
# Versions are pinned here (tools) and in Cargo.lock / package-lock.json (libraries).
set -euo pipefail

WASM_PACK_VERSION=0.15.1
# The fuzz suite only (scripts/fuzz.sh); about 40 s to build on 2 cores.
CARGO_FUZZ_VERSION=0.13.2
# Browser benchmark only (not in package.json: 139 MB that the tests never need).
ORT_WEB_VERSION=1.30.0
ONNX_PY_VERSION=1.23.2
MODE=${1:-test}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# wasm-bindgen-cli must match the wasm-bindgen library exactly; Cargo.lock is the truth.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "apt-get install ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    echo "cargo is missing: install Rust from https://rustup.rs first" >&2
    exit 1
  fi
  # The lint suite (scripts/lint.sh); a minimal rustup profile lacks them.
  for component in clippy rustfmt; do
    if ! rustup component list --installed | grep -q "^$component"; then
      say "rustup component add $component"
      rustup component add "$component"
    fi
  done
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
  fi
}

# cargo install <crate> <version> <binary> [extra args]: skipped when <binary> reports it.
ensure_cargo_tool() {
  local crate=$1 version=$2 bin=$3
  shift 3
  if command -v "$bin" >/dev/null && "$bin" --version 2>/dev/null | grep -qF " $version"; then
    return 0
  fi
  say "cargo install $crate $version (a few minutes, built from source)"
  cargo install "$crate" --version "$version" --force "$@"
}

ensure_npm_packages() {
  local stamp=node_modules/.easel-lock-sha
  local want
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
}

ensure_rust
command -v node >/dev/null && command -v npm >/dev/null || ensure_apt nodejs npm
command -v cc >/dev/null || ensure_apt build-essential
ensure_cargo_tool wasm-pack "$WASM_PACK_VERSION" wasm-pack --locked
# Not --locked: the locked build wants a dependency version the registry no longer serves.
ensure_cargo_tool wasm-bindgen-cli "$(wasm_bindgen_version)" wasm-bindgen

# The pinned nightly (scripts/toolchain.sh) with std's source: the threaded wasm package
# rebuilds std with atomics, and cargo-fuzz needs nightly (sanitizers, -Z flags).
source scripts/toolchain.sh
ensure_nightly() {
  if ! rustup toolchain list | grep -q "^$EASEL_NIGHTLY"; then
    say "rustup toolchain install $EASEL_NIGHTLY (threaded wasm build, fuzz suite)"
    rustup toolchain install "$EASEL_NIGHTLY" --profile minimal
  fi
  if ! rustup component list --toolchain "$EASEL_NIGHTLY" --installed | grep -q '^rust-src'; then
    say "rustup component add rust-src --toolchain $EASEL_NIGHTLY"
    rustup component add rust-src --toolchain "$EASEL_NIGHTLY"
  fi
  # wasm-pack insists on the target being installed, though build-std rebuilds its std.
  if ! rustup target list --toolchain "$EASEL_NIGHTLY" --installed | grep -qx wasm32-unknown-unknown; then
    say "rustup target add wasm32-unknown-unknown --toolchain $EASEL_NIGHTLY"
    rustup target add wasm32-unknown-unknown --toolchain "$EASEL_NIGHTLY"
  fi
}
ensure_nightly

ensure_fuzz() {
  ensure_cargo_tool cargo-fuzz "$CARGO_FUZZ_VERSION" cargo-fuzz --locked
}

if [ "$MODE" = test ] || [ "$MODE" = bench ]; then
  ensure_apt chromium chromium-driver mesa-vulkan-drivers
  ensure_npm_packages
fi
if [ "$MODE" = test ]; then
  ensure_fuzz
fi
if [ "$MODE" = bench ]; then
  if [ "$(node -p "try{require('./node_modules/onnxruntime-web/package.json').version}catch{''}")" != "$ORT_WEB_VERSION" ]; then
    say "npm install onnxruntime-web@$ORT_WEB_VERSION (not saved)"
    npm install --no-save --no-audit --no-fund --loglevel=error "onnxruntime-web@$ORT_WEB_VERSION"
  fi
  if ! python3 -c "import onnx, sys; sys.exit(onnx.__version__ != '$ONNX_PY_VERSION')" 2>/dev/null; then
    say "pip install onnx==$ONNX_PY_VERSION"
    python3 -m pip install -q "onnx==$ONNX_PY_VERSION"
  fi
fi
say "ready ($MODE)"
