#!/usr/bin/env bash
# Issue 14's hardware GPU figures in one run, for a session that is lent a machine with a
# real GPU (the device tool: minutes of device time, so everything in one prepared command).
#
#   scripts/bench/hardware.sh prepare   here: builds the CLI and stages what travels in .hw/
#                                       (the CLI, a tokenizer, Vulkan loader packages), and
#                                       stops tracking www/models and tests/fixtures for the
#                                       moment: the tracked tree is ~106 MB, the device takes
#                                       64 MiB in all
#   scripts/bench/hardware.sh run       there (device run, carry [".hw"]): prints the adapter,
#                                       the op bench with both kernel sets, precisions and
#                                       reductions (subgroups or not), a UNet step at SIZE
#                                       (512) in each kernel set x precision (and tiled exact
#                                       with --subgroups off), a VAE decode at SIZE per kernel set,
#                                       peak GPU bytes of SD-Turbo q8_0 at 512 (planned for
#                                       each, and one real run), and folder-to-ready load time;
#                                       logs into $OUT (or /tmp/easel-hardware)
#   scripts/bench/hardware.sh restore   here, right after: tracks the two folders again
#
# SIZE, RUNS (3) and STEP_LIMIT (seconds per step, 150) override the defaults; a local smoke
# test on lavapipe: SIZE=64 RUNS=1 scripts/bench/hardware.sh run. Chrome is not on that
# machine (nothing can be installed there), so the page's figures still need a machine with
# Chromium and a hardware adapter.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIG="www/models tests/fixtures"
EXCLUDE=.git/info/exclude

case "${1:-}" in
  prepare)
    set -e
    cargo build --release --bin easel
    rm -rf .hw && mkdir -p .hw/gl
    grep -qx '/.hw/' "$EXCLUDE" 2>/dev/null || echo '/.hw/' >>"$EXCLUDE"
    cp target/release/easel .hw/
    # The memory plan and the real 512px run (turbo_native): configs and tokenizer built in.
    test_bin=$(cargo test --release --test turbo_native --no-run 2>&1 | grep -o 'target/release/deps/turbo_native-[0-9a-f]*' | tail -1)
    cp "$test_bin" .hw/turbo_native
    cp -r www/models/emoji-sd/tokenizer .hw/tokenizer
    # The machine may lack a Vulkan loader (see the device tool's README): bring one.
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    mkdir -p /tmp/amd64/partial
    # shellcheck disable=SC2086
    if apt-get $o update -qq && (cd .hw/gl && apt-get $o download libvulkan1 >/dev/null); then
      echo "staged: $(ls .hw/gl)"
    else
      echo "no Vulkan loader package staged (apt-get failed): the run relies on the machine's" >&2
    fi
    for d in $BIG; do
      git rm -r -q --cached "$d"
      grep -qx "/$d/" "$EXCLUDE" || echo "/$d/" >>"$EXCLUDE"
    done
    echo "travelling: $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) bytes tracked + $(du -sb .hw | cut -f1) in .hw"
    echo 'now: device run with carry [".hw"] and command "scripts/bench/hardware.sh run"; then: scripts/bench/hardware.sh restore'
    ;;
  restore)
    for d in $BIG; do
      git reset -q -- "$d"
      sed -i "\#^/$d/\$#d" "$EXCLUDE"
    done
    git status --short | head
    echo "www/models and tests/fixtures are tracked again"
    ;;
  run)
    OUT=${OUT:-/tmp/easel-hardware}
    mkdir -p "$OUT"
    LOG="$OUT/hardware.log"
    EASEL=.hw/easel
    [ -x "$EASEL" ] || EASEL=target/release/easel
    if [ -d .hw/gl ] && ! ldconfig -p | grep -q libvulkan; then
      for f in .hw/gl/*.deb; do dpkg -x "$f" /; done
      ldconfig
    fi
    [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
    SIZE=${SIZE:-512}
    RUNS=${RUNS:-3}
    LIMIT=${STEP_LIMIT:-150}
    step() {
      echo "=== $*" | tee -a "$LOG"
      timeout "$LIMIT" "$@" 2>&1 | tee -a "$LOG"
      echo "=== exit ${PIPESTATUS[0]} after $SECONDS s in all" | tee -a "$LOG"
    }
    step "$EASEL" info
    step "$EASEL" bench ops --backend gpu --compare-kernels --compare-precision --compare-subgroups --runs "$RUNS"
    # Tiles by M (16-32 rows for the 77-token and deepest-level cases) beside 64-row ones.
    step "$EASEL" --kernels tiled bench ops --backend gpu --filter 77x --compare-tiles --runs "$RUNS"
    step "$EASEL" --kernels tiled bench ops --backend gpu --filter 4x4 --compare-tiles --runs "$RUNS"
    for kernels in tiled simple; do
      for precision in exact fast; do
        step "$EASEL" --kernels "$kernels" --precision "$precision" bench unet --backend gpu --quant q8_0 --size "$SIZE" --runs "$RUNS"
      done
    done
    # The VAE decoder at SIZE (2.5 TFLOP at 512: most of a one-step generation's work).
    for kernels in tiled simple; do
      step "$EASEL" --kernels "$kernels" bench vae --backend gpu --quant q8_0 --size "$SIZE" --runs "$RUNS"
    done
    # The norms' reductions in workgroup memory, beside the subgroup ones above.
    step "$EASEL" --kernels tiled --subgroups off bench unet --backend gpu --quant q8_0 --size "$SIZE" --runs "$RUNS"
    # Peak GPU bytes at 512x512: planned for each kernel set and precision, then one real run.
    [ -x .hw/turbo_native ] && step .hw/turbo_native --include-ignored --nocapture --test-threads 1 sd_turbo_q8_0_512px_plan sd_turbo_q8_0_at_512
    tokenizer=.hw/tokenizer
    [ -d "$tokenizer" ] || tokenizer=www/models/emoji-sd/tokenizer
    # Written outside $OUT: what is under $OUT is sent back.
    step "$EASEL" bench load --backend gpu --tokenizer "$tokenizer" --out /tmp/easel-sd-turbo-q8_0
    rm -rf /tmp/easel-sd-turbo-q8_0
    echo "log: $LOG"
    ;;
  *)
    echo "usage: scripts/bench/hardware.sh prepare|run|restore (see the header)" >&2
    exit 2
    ;;
esac
