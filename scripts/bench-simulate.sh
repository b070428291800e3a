#!/usr/bin/env bash
# Benchmark of `kidjamo simulate`: measurements per second and peak memory, to Bronze Parquet
# and to JSONL, on the same cohort. Usage: scripts/bench-simulate.sh [PATIENTS] [DAYS]
# Prints one table row per format, ready for the README.
set -euo pipefail
cd "$(dirname "$0")/.."
patients="${1:-2000}"
days="${2:-7}"
cargo build --release --locked --bin kidjamo >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release/kidjamo"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(nproc) cores)"
disk=$(dd if=/dev/zero of="$work/dd" bs=1M count=4096 conv=fdatasync 2>&1 | tail -1 | awk -F', ' '{print $NF}')
rm -f "$work/dd"
echo "machine: $cpu, $(free -g | awk '/Mem:/{print $2}') GiB; disk, 4 GiB written with fdatasync: $disk"
echo "| format | patients × days | measurements | wall s | measurements/s | peak RSS MiB | output MiB |"
echo "|---|---|---|---|---|---|---|"
for format in parquet jsonl; do
  out="$work/$format"
  /usr/bin/time -f "%e %M" -o "$work/time" "$bin" simulate --quiet --patients "$patients" --days "$days" \
    --start 2026-03-01 --seed 42 --format "$format" --out "$out" > "$work/summary"
  read -r wall rss_kb < "$work/time"
  emitted=$(grep -o '→ [0-9]* measurements' "$work/summary" | grep -o '[0-9]*')
  size=$(du -sm "$out" | cut -f1)
  rate=$(python3 -c "print(f'{$emitted/$wall:,.0f}')")
  echo "| $format | $patients × $days | $emitted | $wall | $rate | $((rss_kb / 1024)) | $size |"
  rm -rf "$out"
done
