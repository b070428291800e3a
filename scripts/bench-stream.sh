#!/usr/bin/env bash
# Benchmarks of the live path on one machine, broker included (tansu, memory storage, loopback):
#   1. replay throughput: `kidjamo replay` and the Python confluent-kafka producer sending the
#      same JSON Lines to the same broker, one after the other, same producer settings;
#   2. stream throughput: `kidjamo stream` (Bronze + quarantine + alerts, checkpoints) draining
#      the topic, and the confluent-kafka consumer reading the same topic twice: parsing each
#      record, and reading only (the ceiling the client library and the broker set);
#   3. alert latency: produce at a steady RATE records/s while `kidjamo stream` runs; p50/p99
#      from a measurement's hand-over to the producer to its alert read back from the alerts topic.
# Usage: scripts/bench-stream.sh [PATIENTS] [DAYS] [RATE]   (default 100 patients, 7 days ≈ 2 M records)
set -euo pipefail
cd "$(dirname "$0")/.."
patients="${1:-100}"; days="${2:-7}"; rate="${3:-10000}"
cargo build --release --locked --bin kidjamo >/dev/null
python3 -c 'import confluent_kafka' 2>/dev/null || python3 -m pip install --quiet confluent-kafka
on_exit=()
trap 'for f in "${on_exit[@]}"; do "$f"; done' EXIT
# shellcheck source=services/kafka.sh
. scripts/services/kafka.sh
bin="${CARGO_TARGET_DIR:-target}/release/kidjamo"
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
RUST_LOG=error "$KIDJAMO_TEST_TANSU" broker --listener-url "tcp://127.0.0.1:$port" \
  --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
tansu_pid=$!
stop_all() { kill "$tansu_pid" 2>/dev/null || true; rm -rf "$work"; }
on_exit+=(stop_all)
until python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; do sleep 0.1; done
brokers="127.0.0.1:$port"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(nproc) cores)"
echo "machine: $cpu, $(free -g | awk '/Mem:/{print $2}') GiB; broker: tansu (memory storage) on the same machine"
"$bin" simulate --quiet --patients "$patients" --days "$days" --start 2026-03-01 --seed 42 --format jsonl --out "$work/lake" >/dev/null
input="$work/lake/landing/measurements.jsonl"
records=$(wc -l < "$input")
echo "input: $records records ($(du -m "$input" | cut -f1) MiB of JSON Lines), $patients patients × $days days"

echo "== 1. replay throughput (6 partitions, lz4, idempotent, acks=all)"
"$bin" replay --quiet --input "$input" --to "kafka://$brokers/bench.kidjamo" --partitions 6 | tee "$work/replay.txt"
python3 scripts/bench/kafka_ref.py produce "$brokers" bench.reference "$input" | tee "$work/ref-produce.json"

echo "== 2. stream throughput (Bronze + quarantine + alerts + checkpoints, default 5 s micro-batches)"
mkdir -p "$work/stream"; cp -r "$work/lake/reference" "$work/lake/ground_truth" "$work/stream/"
/usr/bin/time -f "%e s wall, %M KiB peak RSS" "$bin" stream --quiet --from "kafka://$brokers/bench.kidjamo" \
  --lake "$work/stream" --group bench --alerts-topic bench.alerts --until-idle 5 | tee "$work/stream.txt"
python3 scripts/bench/kafka_ref.py consume "$brokers" bench.kidjamo "$records" | tee "$work/ref-consume.json"
python3 scripts/bench/kafka_ref.py drain "$brokers" bench.kidjamo "$records" | tee "$work/ref-drain.json"
echo "== alert quality of the streamed alerts against the simulator's ground truth"
"$bin" alerts quality --lake "$work/stream" --source stream

echo "== 3. alert latency at $rate records/s for 30 s"
mkdir -p "$work/live"; cp -r "$work/lake/reference" "$work/live/"
"$bin" stream --quiet --from "kafka://$brokers/bench.live" --lake "$work/live" --group live \
  --alerts-topic bench.live.alerts --flush-interval 1 >"$work/live.txt" 2>&1 &
stream_pid=$!
sleep 3
python3 scripts/bench/kafka_ref.py latency "$brokers" bench.live bench.live.alerts "$input" "$rate" 30 | tee "$work/latency.json"
kill -TERM "$stream_pid"; wait "$stream_pid" || true
cat "$work/live.txt"

python3 - "$work" <<'PY'
import json, re, sys
w = sys.argv[1]
replay = open(f"{w}/replay.txt").read()
k_rate = float(re.search(r"\(([0-9]+) records/s\)", replay).group(1))
ref_p = json.load(open(f"{w}/ref-produce.json"))
stream = open(f"{w}/stream.txt").read()
s_rate = float(re.search(r"\(([0-9]+)/s while busy\)", stream).group(1))
ref_c = json.load(open(f"{w}/ref-consume.json"))
ref_d = json.load(open(f"{w}/ref-drain.json"))
lat = json.load(open(f"{w}/latency.json"))
print()
print("| measure | kidjamo | reference | ratio |")
print("|---|---|---|---|")
print(f"| replay, records/s | {k_rate:,.0f} | {ref_p['records_per_s']:,.0f} (confluent-kafka producer) | {k_rate / ref_p['records_per_s']:.2f} |")
print(f"| stream, records/s | {s_rate:,.0f} | {ref_c['records_per_s']:,.0f} (confluent-kafka consumer, parse only) | {s_rate / ref_c['records_per_s']:.2f} |")
print(f"| stream, records/s | {s_rate:,.0f} | {ref_d['records_per_s']:,.0f} (confluent-kafka consumer, reads only) | {s_rate / ref_d['records_per_s']:.2f} |")
print(f"| alert latency at {lat['rate']:.0f} records/s, ms | p50 {lat['p50_ms']:.0f}, p99 {lat['p99_ms']:.0f} ({lat['alerts_timed']} alerts) | | |")
PY
