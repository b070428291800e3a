"""Reference Kafka clients for scripts/bench-stream.sh: the Python confluent-kafka producer and
consumer (librdkafka inside, from PyPI), and the alert-latency probe.

  produce BROKERS TOPIC FILE.jsonl           same settings as `kidjamo replay`; prints records/s
  consume BROKERS TOPIC COUNT                reads COUNT records from the start; prints records/s
  latency BROKERS TOPIC ALERTS FILE RATE S   sends FILE at RATE records/s for S seconds while
                                             reading ALERTS; prints p50/p99 from a sample's
                                             acknowledgement... see below
Latency is measured from the moment a measurement is handed to the producer to the moment
the alert it triggered (header kidjamo-trigger = partition:offset) is read back from the
alerts topic, both on this process's clock.
"""
import json
import sys
import threading
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def ensure_topic(brokers, topic, partitions=6):
    """The broker does not create topics on produce; kidjamo creates its own the same way."""
    admin = AdminClient({"bootstrap.servers": brokers})  # must outlive the futures
    futures = admin.create_topics([NewTopic(topic, partitions, 1)])
    for f in futures.values():
        try:
            f.result()
        except Exception as e:  # already exists
            if "exists" not in str(e).lower():
                raise


def producer(brokers):
    return Producer({
        "bootstrap.servers": brokers, "enable.idempotence": True, "acks": "all",
        "compression.type": "lz4", "linger.ms": 5, "batch.size": 1000000,
        "queue.buffering.max.messages": 1000000, "queue.buffering.max.kbytes": 1048576,
    })


def key_and_time(line):
    try:
        v = json.loads(line)
        return v.get("patient_id"), v.get("recorded_at")
    except ValueError:
        return None, None


def produce(brokers, topic, path):
    ensure_topic(brokers, topic)
    p = producer(brokers)
    headers = [("schema_version", b"1"), ("content-type", b"application/json")]
    acked = [0]

    def done(err, _msg):
        if err is None:
            acked[0] += 1

    lines = [l.rstrip(b"\n") for l in open(path, "rb") if l.strip()]
    start = time.perf_counter()
    for line in lines:
        key, _ = key_and_time(line)
        while True:
            try:
                p.produce(topic, line, key, headers=headers, on_delivery=done)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    p.flush(60)
    secs = time.perf_counter() - start
    print(json.dumps({"client": "confluent-kafka producer", "records": len(lines),
                      "acknowledged": acked[0], "seconds": secs, "records_per_s": len(lines) / secs}))


def consume(brokers, topic, count, parse=True):
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"ref-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 100, "queued.min.messages": 200000})
    c.subscribe([topic])
    n, first = 0, None
    deadline = time.time() + 600
    while n < count and time.time() < deadline:
        msgs = c.consume(10000, 1.0)
        for m in msgs:
            if m.error() is None:
                if first is None:
                    first = time.perf_counter()
                n += 1
                if not parse:
                    continue  # the ceiling: what the client library and the broker deliver
                try:  # a consumer that does nothing with the bytes measures nothing
                    json.loads(m.value())
                except ValueError:
                    pass  # the simulation's malformed records
    secs = time.perf_counter() - (first or time.perf_counter())
    c.close()
    what = "parses each record" if parse else "reads only"
    print(json.dumps({"client": f"confluent-kafka consumer ({what})", "records": n,
                      "seconds": secs, "records_per_s": n / secs if secs else 0}))


def latency(brokers, topic, alerts_topic, path, rate, seconds):
    p = producer(brokers)
    sent = {}
    lock = threading.Lock()
    latencies = []
    stop = threading.Event()

    def reader():
        c = Consumer({"bootstrap.servers": brokers, "group.id": f"lat-{time.time_ns()}",
                      "auto.offset.reset": "latest", "fetch.wait.max.ms": 10})
        c.subscribe([alerts_topic])
        while not stop.is_set():
            m = c.poll(0.05)
            if m is None or m.error() is not None:
                continue
            now = time.perf_counter()
            trigger = dict(m.headers() or []).get("kidjamo-trigger")
            if trigger is None:
                continue
            part, off = trigger.decode().split(":")
            with lock:
                t0 = sent.get((int(part), int(off)))
            if t0 is not None:
                latencies.append(now - t0)
        c.close()

    th = threading.Thread(target=reader)
    th.start()
    time.sleep(3)  # the reader joins its group first
    lines = [l.rstrip(b"\n") for l in open(path, "rb") if l.strip()]
    headers = [("schema_version", b"1"), ("content-type", b"application/json")]
    start = time.perf_counter()
    total = int(rate * seconds)
    for i in range(min(total, len(lines))):
        due = start + i / rate
        while time.perf_counter() < due:
            p.poll(0)
            time.sleep(0.0002)
        t0 = time.perf_counter()
        key, _ = key_and_time(lines[i])

        def done(err, msg, t0=t0):
            if err is None:
                with lock:
                    sent[(msg.partition(), msg.offset())] = t0

        p.produce(topic, lines[i], key, headers=headers, on_delivery=done)
        p.poll(0)
    p.flush(30)
    time.sleep(5)
    stop.set()
    th.join()
    latencies.sort()
    q = lambda x: latencies[min(len(latencies) - 1, int(x * len(latencies)))] if latencies else float("nan")
    print(json.dumps({"records": total, "rate": rate, "alerts_timed": len(latencies),
                      "p50_ms": q(0.50) * 1000, "p99_ms": q(0.99) * 1000, "max_ms": (latencies[-1] * 1000) if latencies else None}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "produce":
        produce(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "consume":
        consume(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "drain":
        consume(sys.argv[2], sys.argv[3], int(sys.argv[4]), parse=False)
    elif cmd == "latency":
        latency(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6]), float(sys.argv[7]))
    else:
        sys.exit(f"unknown command {cmd}")
