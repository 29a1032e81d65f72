"""Reproduces Tansu 0.6's low high watermarks, with confluent-kafka only.

usage: python3 scripts/repro/tansu_watermarks.py [BROKERS] [RECORDS]

Creates a 3-partition topic, produces RECORDS records in batches, reads every
partition from offset 0 to its end, and prints, per partition, the high
watermark the broker reports (ListOffsets latest, what lag tools and
librdkafka's statistics use) beside the records actually read and the last
offset + 1. On a correct broker the three agree. Exits 1 when a watermark is
below what the partition holds.
"""
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

brokers = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"
records = int(sys.argv[2]) if len(sys.argv) > 2 else 50_000
topic = f"watermark-repro-{uuid.uuid4().hex[:12]}"
admin = AdminClient({"bootstrap.servers": brokers})
admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)
producer = Producer({"bootstrap.servers": brokers, "linger.ms": 20, "acks": "all"})
for seq in range(records):
    while True:
        try:
            producer.produce(topic, key=b"k%d" % seq, value=b"x" * (seq % 200))
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)
assert producer.flush(120) == 0
consumer = Consumer({"bootstrap.servers": brokers, "group.id": topic,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})
consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
count = [0, 0, 0]
last = [-1, -1, -1]
idle = time.time()
while time.time() - idle < 10:
    for message in consumer.consume(1000, 0.5):
        if message.error():
            continue
        idle = time.time()
        count[message.partition()] += 1
        last[message.partition()] = max(last[message.partition()], message.offset())
wrong = False
print(f"topic {topic} on {brokers}: {records} records produced, {sum(count)} read")
print("partition  high-watermark  records-read  last-offset+1")
for p in range(3):
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
    print(f"{p:>9}  {high:>14}  {count[p]:>12}  {last[p] + 1:>13}")
    wrong |= high < last[p] + 1
consumer.close()
sys.exit(1 if wrong else 0)
