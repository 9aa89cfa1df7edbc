#!/usr/bin/env bash
# Sets up and runs every test suite, then prints the counts of each.
#
#   scripts/test.sh                 all suites
#   scripts/test.sh lint|native|browser|page|fuzz   one suite (or several)
#
#   lint     cargo fmt --check and clippy -D warnings, native and wasm32
#   native   cargo test: unit tests and GPU tests on Vulkan (lavapipe without a GPU)
#   browser  wasm-pack test in headless Chrome with SwiftShader WebGPU
#   page     the served page in headless Chromium, driven by Playwright
#   fuzz     each cargo-fuzz target for FUZZ_SECONDS (default 30), from fuzz/corpus
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SUITES=${*:-lint native browser page fuzz}

scripts/setup.sh test || exit 1

# lavapipe complains on every device open without a runtime dir; give it one.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "${XDG_RUNTIME_DIR}" ]; then
  export XDG_RUNTIME_DIR=$(mktemp -d)
  chmod 700 "$XDG_RUNTIME_DIR"
fi
# wasm-bindgen-test-runner gives a whole test binary 20 s by default; the op suite compiles
# dozens of kernel variants on SwiftShader, which takes longer on a busy 2-core machine.
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-600}
LOGS=$(mktemp -d)
declare -A PASSED FAILED STATUS ELAPSED

# Sums "test result: ... N passed; M failed" lines (cargo and wasm-bindgen-test-runner).
count_rust() {
  PASSED[$1]=$(grep -Eo '[0-9]+ passed' "$2" | awk '{s+=$1} END {print s+0}')
  FAILED[$1]=$(grep -Eo '[0-9]+ failed' "$2" | awk '{s+=$1} END {print s+0}')
}

# node --test's TAP summary: "# pass N" / "# fail N".
count_node() {
  PASSED[$1]=$(awk '/^# pass /{print $3}' "$2" | tail -1)
  FAILED[$1]=$(awk '/^# fail /{print $3}' "$2" | tail -1)
  PASSED[$1]=${PASSED[$1]:-0}
  FAILED[$1]=${FAILED[$1]:-0}
}

run_suite() {
  local name=$1
  shift
  echo
  echo "=== $name: $* ==="
  local start=$SECONDS
  "$@" 2>&1 | tee "$LOGS/$name.log"
  STATUS[$name]=${PIPESTATUS[0]}
  ELAPSED[$name]=$((SECONDS - start))
}

for suite in $SUITES; do
  case $suite in
    lint)
      run_suite lint scripts/lint.sh
      count_rust lint "$LOGS/lint.log" ;;
    native)
      run_suite native cargo test --locked --no-fail-fast
      count_rust native "$LOGS/native.log" ;;
    browser)
      # Only the browser test files (tests/web*.rs): the native ones compile to empty wasm
      # binaries that still cost a link and a wasm-bindgen pass each.
      web_tests=()
      for f in tests/web*.rs; do web_tests+=(--test "$(basename "$f" .rs)"); done
      # The engine at opt-level 1 in wasm (Cargo.toml has 2 for the native suite): the
      # browser tests' time is SwiftShader's, and opt-level 2 only added 80 s of compiling.
      run_suite browser wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver "${web_tests[@]}" \
        --config 'profile.dev.package.easel.opt-level=1'
      count_rust browser "$LOGS/browser.log" ;;
    page)
      run_suite page bash -c 'scripts/build.sh && node --test tests/e2e/*.test.mjs'
      count_node page "$LOGS/page.log" ;;
    fuzz)
      run_suite fuzz scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
      count_rust fuzz "$LOGS/fuzz.log" ;;
    *)
      echo "unknown suite '$suite' (lint, native, browser, page, fuzz)" >&2
      exit 2 ;;
  esac
done

echo
echo "=== summary ==="
total_pass=0
total_fail=0
rc=0
for suite in $SUITES; do
  p=${PASSED[$suite]} f=${FAILED[$suite]} s=${STATUS[$suite]}
  note=""
  if [ "$s" != 0 ]; then
    rc=1
    # A suite that died before its runner counted anything still counts as a failure.
    [ "$f" = 0 ] && f=1 && note=" (exit status $s before all tests ran)"
  fi
  printf '%-8s %d passed, %d failed%s (%d s)\n' "$suite:" "$p" "$f" "$note" "${ELAPSED[$suite]}"
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
done
[ -d tests/artifacts ] && echo "page screenshots: tests/artifacts/"
echo "total: $total_pass passed, $total_fail failed in $SECONDS s"
exit $rc
