#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for a bounded time, starting from the
# seed corpus in fuzz/corpus/<target> (read only: new inputs go to a temporary folder).
# Prints executions per second and ends with "fuzz result: N passed; M failed" (one per
# target) for scripts/test.sh. A crash input is kept in fuzz/artifacts/<target>/: turn it
# into a unit test next to the parser, then fix the parser.
#
#   scripts/fuzz.sh [seconds per target, default 30]
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/toolchain.sh
SECONDS_EACH=${1:-30}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The lock file is the truth, as for the engine (cargo fuzz has no --locked of its own).
cargo +$EASEL_NIGHTLY fetch --locked --manifest-path fuzz/Cargo.toml || { echo "fuzz result: 0 passed; 1 failed"; exit 1; }
start=$(date +%s)
if ! cargo +$EASEL_NIGHTLY fuzz build; then
  echo "fuzz result: 0 passed; 1 failed (the fuzz crate does not build)"
  exit 1
fi
echo "fuzz build: $(($(date +%s) - start)) s"

pass=0
fail=0
for target in $(cargo +$EASEL_NIGHTLY fuzz list); do
  mkdir -p "$WORK/$target/corpus" "$WORK/$target/crashes"
  log=$WORK/$target.log
  dict=()
  [ -f "fuzz/$target.dict" ] && dict=("-dict=fuzz/$target.dict")
  cargo +$EASEL_NIGHTLY fuzz run "$target" "$WORK/$target/corpus" "fuzz/corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -artifact_prefix="$WORK/$target/crashes/" "${dict[@]}" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 \2/p' "$log" | tail -1)
  if [ "$rc" = 0 ] && [ -n "$runs" ]; then
    read -r n s <<<"$runs"
    echo "fuzz $target: ok, $n runs in $s s ($((n / (s > 0 ? s : 1))) exec/s), corpus $(ls "$WORK/$target/corpus" | wc -l) inputs"
    pass=$((pass + 1))
  else
    tail -40 "$log"
    mkdir -p "fuzz/artifacts/$target"
    cp "$WORK/$target/crashes/"* "fuzz/artifacts/$target/" 2>/dev/null
    echo "fuzz $target: FAILED (exit $rc); crash inputs kept in fuzz/artifacts/$target/: $(ls "$WORK/$target/crashes" | tr '\n' ' ')"
    fail=$((fail + 1))
  fi
done
echo "fuzz result: $pass passed; $fail failed"
[ "$fail" = 0 ]
