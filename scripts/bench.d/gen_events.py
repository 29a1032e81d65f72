"""Writes N realistic order-flow records for the benchmarks, deterministic for a seed.

usage: gen_events.py N SEED > FILE

One record per line: KEY<TAB>EVENT_TYPE<TAB>PAYLOAD, where PAYLOAD is compact
JSON of about 500 bytes on average (orders with line items, payments,
shipments with addresses, free-text notes of varied length), KEY a customer
id out of 20 000. The raw producers (examples/raw_*) read this format.
"""
import json
import random
import sys

CITIES = ["Amsterdam", "Berlin", "Lisbon", "Paris", "Madrid", "Oslo", "Dublin", "Vienna", "Prague", "Rome"]
COUNTRIES = ["NL", "DE", "PT", "FR", "ES", "NO", "IE", "AT", "CZ", "IT"]
CURRENCIES = ["EUR", "EUR", "EUR", "USD", "GBP", "NOK", "CZK"]
CARRIERS = ["dhl", "ups", "postnl", "dpd", "gls"]
WORDS = ("please leave the parcel at the back door gift wrap no invoice fragile handle with care "
         "call before delivery second floor ring twice office hours only weekend delivery").split()
TYPES = ["order.created", "order.created", "payment.authorized", "payment.captured",
         "payment.declined", "shipment.dispatched", "shipment.delivered", "order.cancelled"]


def record(rng, seq):
    customer = "cust-%05d" % rng.randrange(20000)
    kind = TYPES[rng.randrange(len(TYPES))]
    index = rng.randrange(len(CITIES))
    base = {
        "event_type": kind,
        "event_seq": seq,
        "order_id": "ord-%08d" % rng.randrange(10**8),
        "customer": customer,
        "occurred_at": "2026-01-%02dT%02d:%02d:%02d.%03dZ" % (
            1 + seq % 28, rng.randrange(24), rng.randrange(60), rng.randrange(60), rng.randrange(1000)),
        "currency": CURRENCIES[rng.randrange(len(CURRENCIES))],
        "country": COUNTRIES[index],
    }
    if kind.startswith("order"):
        base["items"] = [
            {"sku": "sku-%05d" % rng.randrange(50000), "qty": 1 + rng.randrange(4),
             "unit_price_cents": 199 + rng.randrange(20000)}
            for _ in range(1 + rng.randrange(5))
        ]
        base["total_cents"] = sum(i["qty"] * i["unit_price_cents"] for i in base["items"])
        base["channel"] = rng.choice(["web", "ios", "android", "store"])
    elif kind.startswith("payment"):
        base["payment"] = {"method": rng.choice(["card", "ideal", "paypal", "sepa"]),
                           "amount_cents": rng.randrange(100, 200000),
                           "psp_reference": "psp-%016x" % rng.getrandbits(64),
                           "card_last4": "%04d" % rng.randrange(10000)}
        if kind == "payment.declined":
            base["payment"]["decline_reason"] = rng.choice(["insufficient_funds", "fraud_suspected", "expired_card"])
    else:
        base["shipment"] = {"carrier": CARRIERS[rng.randrange(len(CARRIERS))],
                            "tracking": "trk-%012d" % rng.randrange(10**12),
                            "address": {"street": "%s %d" % (rng.choice(WORDS).title(), rng.randrange(1, 300)),
                                        "city": CITIES[index], "zip": "%05d" % rng.randrange(100000),
                                        "country": COUNTRIES[index]}}
    base["note"] = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(0, 40)))
    base["trace_id"] = "%032x" % rng.getrandbits(128)
    return customer, kind, json.dumps(base, separators=(",", ":"))


def main():
    count, seed = int(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    out = sys.stdout
    for seq in range(count):
        key, kind, payload = record(rng, seq)
        out.write(f"{key}\t{kind}\t{payload}\n")


if __name__ == "__main__":
    main()
