#!/usr/bin/env bash
# Decode throughput of pbwire and of Twisted's own banana/jelly on the same inputs, in
# one run, with the ratio. Inputs: both directions of the recorded buildbot sessions,
# and a synthetic 100 MB stream of worker `update` calls carrying stdout.
# Usage: bench/codec-vs-twisted.sh [RUNS]   (median of RUNS runs each; default 3)
# Prints a Markdown table (paste into BENCHMARKS.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-3}
scripts/install-peers.sh twisted-py3 >&2
cargo build --release -p pbwire --example wirebench >&2
rust="${CARGO_TARGET_DIR:-$root/target}/release/examples/wirebench"
py="$root/.peers/twisted-py3/bin/python"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$rust" generate "$work/updates-100MB.bin" 100 64

# median FIELD CMD...: runs CMD $runs times and prints the median of a JSON field.
median() {
  local field=$1; shift
  for _ in $(seq "$runs"); do "$@"; done |
    python3 -c "import json,sys,statistics; print(statistics.median(json.loads(l)['$field'] for l in sys.stdin))"
}

echo "| input | level | pbwire MB/s | Twisted MB/s | ratio |"
echo "|---|---|---:|---:|---:|"
inputs=(fixtures/sessions/*/w2m.bin fixtures/sessions/*/m2w.bin "$work/updates-100MB.bin")
for input in "${inputs[@]}"; do
  size=$(stat -c %s "$input")
  # Enough repetitions that each timed run covers about 200 MB (Rust) / 20 MB (Twisted).
  rrep=$(( 200000000 / size + 1 )); trep=$(( 20000000 / size + 1 ))
  name=${input#fixtures/sessions/}; name=${name#"$work/"}
  for level in banana pb; do
    r=$(median mb_per_s "$rust" decode "$input" "$level" "$rrep")
    # Current Twisted cannot unjelly a Python 2 peer's failures (KeyError 'parents'):
    # say so instead of a figure.
    if ! err=$("$py" bench/twisted_decode.py "$input" "$level" 1 2>&1 >/dev/null); then
      echo "| $name | $level | $r | fails: $(echo "$err" | grep -v '^ ' | tail -n1) | - |"
      continue
    fi
    t=$(median mb_per_s "$py" bench/twisted_decode.py "$input" "$level" "$trep")
    ratio=$(python3 -c "print(f'{$r / $t:.0f}x')")
    echo "| $name | $level | $r | $t | $ratio |"
  done
done
m=$(median mb_per_s "$rust" decode "$work/updates-100MB.bin" memcpy 2)
echo
echo "memcpy of the 100 MB stream in 64 KiB pieces: $m MB/s"
