"""Consumes a Kafka topic from the beginning with confluent-kafka (an outside
client) and prints one JSON line per record: partition, offset, key, value
and headers as hex (null when absent: a null value is a tombstone), and the
arrival time.

Usage: replay_consume.py BROKERS TOPIC EXPECTED IDLE_SECONDS
Stops after EXPECTED records, or after IDLE_SECONDS without a record.
HINDSIGHT_TEST_KAFKA_CLIENT, when set, is a JSON object of extra client
settings (security.protocol, sasl.*, ssl.*).
"""
import json
import os
import sys
import time

from confluent_kafka import Consumer, TopicPartition

brokers, topic, expected, idle = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
consumer = Consumer({
    "bootstrap.servers": brokers,
    "group.id": f"replay-check-{time.time_ns()}",
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    **json.loads(os.environ.get("HINDSIGHT_TEST_KAFKA_CLIENT", "{}")),
})
metadata = consumer.list_topics(topic, timeout=15)
partitions = sorted(metadata.topics[topic].partitions)
consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
seen = 0
last = time.time()
out = sys.stdout
while seen < expected and time.time() - last < idle:
    batch = consumer.consume(num_messages=1000, timeout=0.5)
    for message in batch:
        if message.error():
            print(f"consumer error: {message.error()}", file=sys.stderr)
            continue
        last = time.time()
        seen += 1
        headers = [[name, None if value is None else value.hex()] for name, value in (message.headers() or [])]
        key = message.key()
        value = message.value()
        out.write(json.dumps({
            "p": message.partition(),
            "o": message.offset(),
            "k": None if key is None else key.hex(),
            "v": None if value is None else value.hex(),
            "h": headers,
            "at": last,
        }) + "\n")
out.flush()
consumer.close()
