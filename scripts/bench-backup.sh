#!/usr/bin/env bash
# Benchmark of `kidjamo backup patient` and `kidjamo restore patient` for one patient with about
# 1,000,000 measurements, beside `pg_dump`/`pg_restore` of a database that holds only that
# patient (the closest thing a user has without kidjamo).
# Usage: scripts/bench-backup.sh [DAYS]   (347 days at one sample per 30 s ≈ 1 M measurements)
# Needs a PostgreSQL superuser URL in KIDJAMO_BENCH_PG (default: postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."
days="${1:-347}"
admin_url="${KIDJAMO_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
base="${admin_url%/*}"
src=kidjamo_bench_backup
dst=kidjamo_bench_restore
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
cargo build --release --locked --bin kidjamo >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release/kidjamo"
work="$(mktemp -d)"
drop() { PGOPTIONS="-c client_min_messages=warning" psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $src WITH (FORCE)" -c "DROP DATABASE IF EXISTS $dst WITH (FORCE)" -c "DROP DATABASE IF EXISTS ${dst}_pg WITH (FORCE)"; }
cleanup() { drop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
drop
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(nproc) cores); $(psql -At "$admin_url" -c 'SHOW server_version')"

"$bin" simulate --quiet --patients 1 --days "$days" --start 2025-03-01 --seed 7 --format parquet --out "$work/lake" >/dev/null
psql -q "$admin_url" -c "CREATE DATABASE $src" -c "CREATE DATABASE $dst" -c "CREATE DATABASE ${dst}_pg"
DATABASE_URL="$base/$src" "$bin" db migrate --quiet >/dev/null
DATABASE_URL="$base/$dst" "$bin" db migrate --quiet >/dev/null
DATABASE_URL="$base/$src" "$bin" db load --quiet --lake "$work/lake" >/dev/null
patient=$(psql -At "$base/$src" -c "SELECT patient_id FROM patients")
rows=$(psql -At "$base/$src" -c "SELECT count(*) FROM measurements")

seconds() { python3 -c "import time; print(f'{time.time() - $1:.2f}')"; }
t=$(date +%s.%N); DATABASE_URL="$base/$src" "$bin" backup patient "$patient" --out "$work/p.tar" >/dev/null; backup_s=$(seconds "$t")
t=$(date +%s.%N); DATABASE_URL="$base/$dst" "$bin" restore patient "$work/p.tar" >/dev/null; restore_s=$(seconds "$t")
t=$(date +%s.%N); "$pg_bin/pg_dump" -Fc -f "$work/p.dump" "$base/$src"; dump_s=$(seconds "$t")
t=$(date +%s.%N); "$pg_bin/pg_restore" -d "$base/${dst}_pg" "$work/p.dump" 2>/dev/null || true; pgrestore_s=$(seconds "$t")
echo
echo "| one patient, $rows measurements | backup s | restore s | archive MiB |"
echo "|---|---|---|---|"
echo "| kidjamo backup/restore patient | $backup_s | $restore_s | $(du -m "$work/p.tar" | cut -f1) |"
echo "| pg_dump -Fc / pg_restore (whole database, only this patient in it) | $dump_s | $pgrestore_s | $(du -m "$work/p.dump" | cut -f1) |"
