"""Creates a Kafka topic with confluent-kafka's AdminClient (an outside
client), on brokers that need TLS or SASL as well as on plain ones.

usage: kafka_create_topic.py BROKERS TOPIC PARTITIONS
HINDSIGHT_TEST_KAFKA_CLIENT, when set, is a JSON object of extra client
settings (security.protocol, sasl.*, ssl.*).
"""
import json
import os
import sys

from confluent_kafka.admin import AdminClient, NewTopic

brokers, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
admin = AdminClient({
    "bootstrap.servers": brokers,
    **json.loads(os.environ.get("HINDSIGHT_TEST_KAFKA_CLIENT", "{}")),
})
futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                              request_timeout=30)
futures[topic].result(timeout=60)
print(f"created {topic} ({partitions} partitions) on {brokers}")
