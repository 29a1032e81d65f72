"""Produces tombstones, empty values and plain values to Kafka with
confluent-kafka (an outside client), one partition, in order.

usage: tombstone_produce.py BROKERS TOPIC COUNT

Record `seq` has key `k-<seq % 4>` and header `seq`; its value is None (a
tombstone) when seq % 3 == 0, b"" (an empty value) when seq % 3 == 1, and
b'{"seq":<seq>}' otherwise. tests/tombstone.rs mirrors `value`.
"""
import sys

from confluent_kafka import Producer


def value(seq):
    if seq % 3 == 0:
        return None
    if seq % 3 == 1:
        return b""
    return b'{"seq":%d}' % seq


def main():
    brokers, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    failures = []

    def delivered(error, _message):
        if error is not None:
            failures.append(str(error))

    producer = Producer({"bootstrap.servers": brokers, "acks": "all", "linger.ms": 5})
    for seq in range(count):
        producer.produce(topic, key=b"k-%d" % (seq % 4), value=value(seq), partition=0,
                         headers=[("seq", str(seq).encode())], on_delivery=delivered)
    left = producer.flush(60)
    if left or failures:
        print(f"{left} undelivered, failures: {failures[:5]}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
