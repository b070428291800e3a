#!/usr/bin/env bash
# Benchmark of `kidjamo db load` against `psql \copy` of the same rows as CSV into the same
# table (same indexes, foreign keys, audit trigger), then dashboard and RLS query latencies
# through the application role.
# Usage: scripts/bench-db-load.sh [PATIENTS] [DAYS]   (500 × 7 ≈ 10 million measurements)
# Needs a PostgreSQL superuser URL in KIDJAMO_BENCH_PG (default: postgres@127.0.0.1:5432); the
# benchmark database is created and dropped.
set -euo pipefail
cd "$(dirname "$0")/.."
patients="${1:-500}"
days="${2:-7}"
admin_url="${KIDJAMO_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
base="${admin_url%/*}"
db=kidjamo_bench_load
url="$base/$db"
app_url="$(echo "$url" | sed -E 's#://[^@/]*@#://kidjamo_app@#')"
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
pgbench="${pg_bin:+$pg_bin/}pgbench"

cargo build --release --locked --bin kidjamo >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release/kidjamo"
work="$(mktemp -d)"
chmod 755 "$work"
cleanup() { psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(nproc) cores)"
echo "machine: $cpu, $(free -g | awk '/Mem:/{print $2}') GiB; $(psql -At "$admin_url" -c 'SHOW server_version') on the same machine"

"$bin" simulate --quiet --patients "$patients" --days "$days" --start 2026-03-01 --seed 42 \
  --format parquet --out "$work/lake" >/dev/null
PGOPTIONS="-c client_min_messages=warning" psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
export DATABASE_URL="$url"
"$bin" db migrate --quiet >/dev/null

timed_load() { # prints "seconds peak_rss_mib inserted"
  /usr/bin/time -f "%e %M" -o "$work/time" "$bin" db load --quiet --lake "$work/lake" > "$work/load.out"
  read -r wall rss_kb < "$work/time"
  inserted=$(awk '/^measurements /{print $4}' "$work/load.out")
  echo "$wall $((rss_kb / 1024)) $inserted"
}

read -r cold_s cold_rss rows < <(timed_load)
psql -q "$url" -c "\copy (SELECT * FROM measurements) TO '$work/measurements.csv' (FORMAT csv)"
csv_mib=$(du -m "$work/measurements.csv" | cut -f1)

psql -q "$url" -c "TRUNCATE measurements"
start=$(date +%s.%N)
psql -q "$url" -c "\copy measurements FROM '$work/measurements.csv' (FORMAT csv)"
psql_s=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")

psql -q "$url" -c "TRUNCATE measurements"
read -r warm_s warm_rss warm_rows < <(timed_load)
[ "$warm_rows" = "$rows" ] || { echo "error: second load inserted $warm_rows rows, first $rows" >&2; exit 2; }
# Once more: every row is already there, so every file takes the regular path (staging table,
# ON CONFLICT DO NOTHING into partitions that hold rows) and inserts nothing.
read -r again_s again_rss again_rows < <(timed_load)
[ "$again_rows" = "0" ] || { echo "error: a rerun inserted $again_rows rows" >&2; exit 2; }

rate() { python3 -c "print(f'{$1/$2:,.0f}')"; }
echo
echo "| loader | rows | wall s | rows/s | peak RSS MiB |"
echo "|---|---|---|---|---|"
echo "| kidjamo db load (empty database: reference tables, partitions, measurements) | $rows | $cold_s | $(rate "$rows" "$cold_s") | $cold_rss |"
echo "| kidjamo db load (table truncated, empty partitions) | $rows | $warm_s | $(rate "$rows" "$warm_s") | $warm_rss |"
echo "| kidjamo db load again (all present: staging + ON CONFLICT, nothing inserted) | $rows | $again_s | $(rate "$rows" "$again_s") | $again_rss |"
echo "| psql \\copy, CSV ($csv_mib MiB), same table | $rows | $psql_s | $(rate "$rows" "$psql_s") | – |"

"$bin" db refresh --quiet >/dev/null
psql -q "$url" -c "ANALYZE"
admin=$(psql -At "$url" -c "SELECT user_id FROM users WHERE role = 'admin' LIMIT 1")
read -r clinician clinician_patients < <(psql -At -F' ' "$url" -c \
  "SELECT clinician_user_id, count(*) FROM patient_clinicians GROUP BY 1 ORDER BY 2 DESC LIMIT 1")
read -r patient patient_user < <(psql -At -F' ' "$url" -c "SELECT patient_id, user_id FROM patients ORDER BY patient_id LIMIT 1")

latency() { # label, user, query → mean latency in ms over 200 transactions
  printf 'BEGIN;\nSET LOCAL kidjamo.user_id = '"'"'%s'"'"';\n%s;\nCOMMIT;\n' "$2" "$3" > "$work/q.sql"
  "$pgbench" -n -r -t 200 -f "$work/q.sql" "$app_url" 2>/dev/null \
    | awk -v label="$1" '/SELECT|select/ && $1 ~ /^[0-9.]+$/ {printf "| %s | %s ms |\n", label, $1}'
}
echo
echo "| query, as kidjamo_app with RLS on, $rows rows | mean latency |"
echo "|---|---|"
latency "latest vitals, admin (all $patients patients)" "$admin" "SELECT * FROM kidjamo_latest_vitals()"
latency "latest vitals, clinician ($clinician_patients patients)" "$clinician" "SELECT * FROM kidjamo_latest_vitals()"
# The time bound is a value, as an application passes it: a bound computed inside the query
# from a sub-select cannot become an index condition under RLS (see README).
since=$(psql -At "$url" -c "SELECT max(recorded_at) - interval '24 hours' FROM measurements WHERE patient_id = '$patient'")
latency "one patient's last 24 h, as that patient" "$patient_user" \
  "SELECT * FROM measurements WHERE patient_id = '$patient' AND recorded_at > '$since'"
