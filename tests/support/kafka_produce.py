"""Produces deterministic test events to Kafka with confluent-kafka (an outside client).

usage: kafka_produce.py BROKERS TOPIC FIRST_SEQ COUNT [EVENTS_PER_SECOND] [single]

`single` sends one record per batch. Tansu 0.6 skips the rest of a batch when a
consumer fetches from an offset inside it (Kafka returns the batch and the
client skips ahead), so tests that resume mid-stream need batch boundaries at
every offset.

HINDSIGHT_TEST_KAFKA_CLIENT, when set, is a JSON object of extra client
settings (security.protocol, sasl.*, ssl.*, compression.type, ...).
HINDSIGHT_TEST_TIMESTAMP_AGO_MS, when set, dates every record that many
milliseconds in the past (events for an hour that has already closed);
HINDSIGHT_TEST_TIMESTAMP_MS dates every record at that instant.

Event `seq` is fully determined by its number, so the archive can be checked
byte for byte. tests/kafka.rs mirrors these functions in Rust; keep them equal.
"""
import json
import os
import sys
import time

from confluent_kafka import Producer


def key(seq):
    return b"key-%d" % (seq % 997)


def payload(seq):
    if seq % 101 == 0:
        return b""
    if seq % 50 == 0:
        return bytes([0xFF, 0xFE, seq % 256, 0x00])
    return b'{"seq":%d,"customer":"c-%d","pad":"%s"}' % (seq, seq % 5000, b"x" * (seq % 300))


def headers(seq):
    pairs = [("seq", str(seq).encode()), ("bin", bytes([seq % 256, 0, 255]))]
    if seq % 3 == 0:
        pairs += [("dup", b"1"), ("dup", b"2")]
    return pairs


def main():
    brokers, topic, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rate = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    single = len(sys.argv) > 6 and sys.argv[6] == "single"
    failures = []

    def delivered(error, _message):
        if error is not None:
            failures.append(str(error))

    settings = {
        "bootstrap.servers": brokers,
        "linger.ms": 20,
        "acks": "all",
        "queue.buffering.max.messages": 100000,
        "message.send.max.retries": 1000000,
    }
    if single:
        settings.update({"linger.ms": 0, "batch.num.messages": 1})
    settings.update(json.loads(os.environ.get("HINDSIGHT_TEST_KAFKA_CLIENT", "{}")))
    producer = Producer(settings)
    ago_ms = int(os.environ.get("HINDSIGHT_TEST_TIMESTAMP_AGO_MS", "0"))
    at_ms = int(os.environ.get("HINDSIGHT_TEST_TIMESTAMP_MS", "0"))
    timestamp = {"timestamp": at_ms or int(time.time() * 1000) - ago_ms} if at_ms or ago_ms else {}
    started = time.monotonic()
    for index, seq in enumerate(range(first, first + count)):
        while True:
            try:
                producer.produce(topic, key=key(seq), value=payload(seq), headers=headers(seq),
                                 on_delivery=delivered, **timestamp)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if rate > 0:
            ahead = (index + 1) / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    left = producer.flush(120)
    elapsed = time.monotonic() - started
    print(f"produced {count} events in {elapsed:.1f}s ({count / max(elapsed, 1e-9):.0f}/s), "
          f"{left} undelivered, {len(failures)} failed", flush=True)
    if left or failures:
        print("failures:", failures[:5], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
