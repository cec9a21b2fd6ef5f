#!/usr/bin/env bash
# Builds every fuzz target with libFuzzer's coverage instrumentation on the stable
# toolchain (no sanitizer: the crate forbids unsafe code, so the checks that matter are
# Rust's own — panics, overflow and debug assertions) and runs each for SECONDS.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
# Crashes are written to fuzz/artifacts/<target>/; the run fails if any target crashes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(banana_decode jelly_decode pb_decode roundtrip notation_parse broker)
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the instrumentation flags off build scripts.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --manifest-path "$here/Cargo.toml" --bins --target "$host"
for t in "${targets[@]}"; do
  work="$here/corpus-work/$t"
  mkdir -p "$work" "$here/artifacts/$t"
  echo "fuzzing $t for ${seconds}s"
  "$here/target/$host/release/$t" "$work" "$here/corpus/$t" \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$here/artifacts/$t/" -print_final_stats=1 2>&1 | tail -n 12
done
