"""Outside reference for P1: confluent-kafka's Python consumer drains a topic.

usage: confluent_consume.py BROKERS TOPIC COUNT TIMEOUT_SECONDS
CONFLUENT_CLIENT, when set, is a JSON object of extra settings (TLS, SASL).
"""
import json
import os
import sys
import time

from confluent_kafka import Consumer


def main():
    brokers, topic, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    started = time.monotonic()
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"confluent-bench-{time.time_ns()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         **json.loads(os.environ.get("CONFLUENT_CLIENT", "{}"))})
    consumer.subscribe([topic])
    events = 0
    while events < count:
        if time.monotonic() - started > timeout:
            sys.exit(f"timed out after {events} of {count} events")
        for message in consumer.consume(num_messages=1000, timeout=0.1):
            if message.error() is None:
                events += 1
    consumer.close()
    print(f'{{"events":{events},"seconds":{time.monotonic() - started:.3f}}}')


main()
