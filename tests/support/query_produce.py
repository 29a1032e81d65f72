"""Produces the order-flow data set of the query tests to Kafka (confluent-kafka).

usage: query_produce.py BROKERS ORDERS_TOPIC PAYMENTS_TOPIC COUNT SPAN_HOURS

Event `seq` goes to PAYMENTS_TOPIC when seq % 3 == 2, else to ORDERS_TOPIC.
Its producer timestamp (CreateTime) moves evenly from SPAN_HOURS ago (on an
hour boundary) to now, so the archive spans SPAN_HOURS hourly segments per
partition. Payloads are JSON orders and payments, with a few malformed, empty
and non-UTF-8 ones; headers carry event-type and producer, and every 50th
event repeats a header name. Keys are customers (orders) or order ids
(payments), so one key lives in one partition.
"""
import json
import sys
import time

from confluent_kafka import Producer

COUNTRIES = ["NL", "DE", "FR", "GB", "US", "ES"]
CURRENCIES = ["EUR", "USD", "GBP"]
SKUS = ["espresso-beans", "grinder", "kettle", "filter-papers", "mug", "scale"]


def event(seq):
    order = seq // 3
    customer = "cust-%05d" % (order * 7919 % 5000)
    country = COUNTRIES[order % len(COUNTRIES)]
    currency = CURRENCIES[order % len(CURRENCIES)]
    cents = 500 + (order * 104729) % 20000
    amount = "%d.%02d" % (cents // 100, cents % 100)
    if seq % 3 == 2:
        kind = "payment.declined" if order % 25 == 0 else "payment.authorized"
        key = "ord-%08d" % order
        body = '{"type":"%s","order_id":"ord-%08d","customer":"%s","amount":%s,"currency":"%s"}' % (
            kind, order, customer, amount, currency)
        producer = "payment-service"
    else:
        kind = "order.created" if seq % 3 == 0 else "order.updated"
        key = customer
        quantity = 1 + order % 4
        body = ('{"type":"%s","order_id":"ord-%08d","customer":"%s","country":"%s",'
                '"items":[{"sku":"%s","quantity":%d}],"total":%s,"currency":"%s"}') % (
            kind, order, customer, country, SKUS[order % len(SKUS)], quantity, amount, currency)
        producer = "checkout-service"
    payload = body.encode()
    if seq % 97 == 0:
        payload = payload[: len(payload) // 2]  # malformed JSON
    elif seq % 211 == 0:
        payload = bytes([0xC3, 0x28, 0xFF, 0xFE, 0x00, seq % 256])  # not UTF-8
    elif seq % 499 == 0:
        payload = b""
    headers = [("event-type", kind.encode()), ("producer", producer.encode())]
    if seq % 50 == 0:
        headers += [("x-retry", b"1"), ("x-retry", b"2")]
    return key.encode(), payload, headers


def main():
    brokers, orders, payments = sys.argv[1], sys.argv[2], sys.argv[3]
    count, span_hours = int(sys.argv[4]), int(sys.argv[5])
    now_ms = int(time.time() * 1000)
    start_ms = (now_ms // 3_600_000 - span_hours + 1) * 3_600_000
    step = max(1, (now_ms - start_ms) // max(count, 1))
    failures = []

    def delivered(error, _message):
        if error is not None:
            failures.append(str(error))

    producer = Producer({
        "bootstrap.servers": brokers,
        "linger.ms": 50,
        "acks": "all",
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 200000,
        "message.send.max.retries": 1000000,
    })
    started = time.monotonic()
    for seq in range(count):
        key, payload, headers = event(seq)
        topic = payments if seq % 3 == 2 else orders
        while True:
            try:
                producer.produce(topic, key=key, value=payload, headers=headers,
                                 timestamp=start_ms + seq * step, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if seq % 1000 == 0:
            producer.poll(0)
    left = producer.flush(300)
    elapsed = time.monotonic() - started
    print(json.dumps({"produced": count, "seconds": round(elapsed, 1), "undelivered": left,
                      "failed": len(failures), "first_ms": start_ms, "step_ms": step}), flush=True)
    if left or failures:
        print("failures:", failures[:5], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
