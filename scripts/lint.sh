#!/usr/bin/env bash
# The lint suite: formatting (rustfmt.toml) and clippy with warnings as errors, for the
# host and for wasm32 (the page's engine), each a check that passes or fails. Ends with
# "lint result: N passed; M failed" for scripts/test.sh.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
pass=0
fail=0
check() {
  local name=$1
  shift
  echo "--- lint: $name: $*"
  if "$@"; then
    pass=$((pass + 1))
    echo "lint $name ... ok"
  else
    fail=$((fail + 1))
    echo "lint $name ... FAILED"
  fi
}
check fmt cargo fmt --check
check fmt-fuzz cargo fmt --check --manifest-path fuzz/Cargo.toml
check clippy-native cargo clippy --locked --all-targets -- -D warnings
check clippy-wasm32 cargo clippy --locked --all-targets --target wasm32-unknown-unknown -- -D warnings
echo "lint result: $pass passed; $fail failed"
[ "$fail" = 0 ]
