#!/usr/bin/env bash
# Benchmark of `kidjamo etl daily` over one day of Bronze (default 3,472 patients at one sample
# per 30 s ≈ 10 million measurements), against an independent DuckDB implementation of the
# same Silver + patient_daily logic on the same files (scripts/bench/etl_duckdb.py, the Python
# `duckdb` package from PyPI). Prints wall time and peak memory of both, their ratio, and a
# cross-check of the two patient_daily tables. Usage: scripts/bench-etl.sh [PATIENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
patients="${1:-3472}"
cargo build --release --locked --bin kidjamo >/dev/null
python3 -c 'import duckdb, yaml' 2>/dev/null || python3 -m pip install --quiet duckdb pyyaml
bin="${CARGO_TARGET_DIR:-target}/release/kidjamo"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export KIDJAMO_PSEUDONYMISATION__KEY="bench-key-$(date +%s%N)"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(nproc) cores)"
echo "machine: $cpu, $(free -g | awk '/Mem:/{print $2}') GiB"
"$bin" simulate --quiet --patients "$patients" --days 1 --start 2026-03-01 --seed 42 --out "$work/lake" >/dev/null
day=2026-03-01
bronze_rows=$(python3 -c "import duckdb; print(duckdb.sql(\"select count(*) from '$work/lake/bronze/measurements/event_date=$day/*.parquet'\").fetchall()[0][0])")
bronze_mib=$(du -sm "$work/lake/bronze/measurements/event_date=$day" | cut -f1)
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
/usr/bin/time -f "%e %M" -o "$work/time-kidjamo" "$bin" etl daily --quiet --lake "$work/lake" --date "$day" > "$work/summary"
read -r k_wall k_rss < "$work/time-kidjamo"
cat "$work/summary"
python3 -c "import json,glob; m=json.load(open(glob.glob('$work/lake/_runs/etl-daily-*.json')[0])); print('kidjamo stages (ms):', m['durations_ms'])"
mkdir -p "$work/duckdb"
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
/usr/bin/time -f "%e %M" -o "$work/time-duckdb" python3 scripts/bench/etl_duckdb.py "$work/lake" "$day" "$work/duckdb" \
  fixtures/thresholds.yaml "$work/lake/gold/patient_daily/event_date=$day" "$KIDJAMO_PSEUDONYMISATION__KEY"
read -r d_wall d_rss < "$work/time-duckdb"
echo
echo "| implementation | Bronze rows (MiB) | work | wall s | peak RSS MiB |"
echo "|---|---|---|---|---|"
echo "| kidjamo etl daily | $bronze_rows ($bronze_mib) | Silver, alerts, patient_daily, quality_daily, alerts_daily, features_ml | $k_wall | $((k_rss / 1024)) |"
echo "| DuckDB $(python3 -c 'import duckdb; print(duckdb.__version__)') (Python) | $bronze_rows ($bronze_mib) | Silver, patient_daily | $d_wall | $((d_rss / 1024)) |"
python3 -c "print(f'kidjamo / DuckDB wall-time ratio: {$k_wall / $d_wall:.2f} (below 1: kidjamo faster)')"
