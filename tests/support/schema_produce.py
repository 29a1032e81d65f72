"""Produces schema-framed test events to Kafka with confluent-kafka's own
Schema Registry serializers (AvroSerializer, ProtobufSerializer,
JSONSerializer), and writes what decoding each event must give.

Part of the schema-aware payload tests (issue 17). The registry is normally
tests/support/schema_registry.py, a stdlib test double of the Confluent
Schema Registry REST subset (no real registry server can be installed here);
the serializers register the schemas in it exactly as they would in a real
one.

usage: schema_produce.py --brokers B --registry URL --topic T --format avro|protobuf|json
                         [--count N] [--start K] [--schema-version 1|2|3]
                         [--header-ids] [--expected FILE] [--protobuf-message NAME]
                         [--registry-user U:P]

  --count N            events with index K .. K+N-1 (default 1000)
  --start K            first index (default 0)
  --schema-version V   1, 2 (adds a field with a default) or 3 (adds another
                       field and changes that default); all register under
                       "<topic>-value", so the subject gets versions 1, 2, 3
                       with different ids
  --header-ids         the schema id goes into the "__value_schema_id" header
                       instead of the payload prefix (confluent-kafka's
                       header_schema_id_serializer): the header value is 0x01,
                       the schema's 16-byte GUID, and for protobuf the
                       message-index varints; the payload is then the bare
                       encoding with no framing at all
  --protobuf-message   Order (default, message index [1]), Envelope ([0], the
                       short form) or Order.Line (nested, [1, 0])
  --expected FILE      NDJSON, one line per event in produce order:
                       {"key": KEY, "schema_id": ID, "value": DECODED}

Keys are "{format}-{topic}-{index:07d}" (UTF-8). Every event's content
follows from its index alone (random.Random(index)).

DECODED is what Hindsight's decoder must output, obtained by decoding the
produced bytes with confluent-kafka's matching Deserializer (not from the
input) and converting: Avro records -> objects in schema order, unions -> the
branch value, bytes/fixed -> base64, decimal -> plain string with `scale`
fraction digits, date -> YYYY-MM-DD, time-millis -> HH:MM:SS.mmm,
time-micros -> HH:MM:SS.uuuuuu, timestamp-millis/micros -> ISO with 3/6
fraction digits and Z (local-timestamp-*: no Z), uuid -> string, float -> the
f32 widened to f64. Protobuf: json_format.MessageToDict(msg,
preserving_proto_field_name=True). JSON Schema: the deserialized object.

HINDSIGHT_TEST_KAFKA_CLIENT, when set, is a JSON object of extra producer
settings (security.protocol, sasl.*, ssl.*, ...), as in kafka_produce.py.
The .proto files (tests/support/proto) are compiled at run time with
grpcio-tools into a temporary directory.
"""
import argparse
import base64
import datetime as dt
import decimal
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient, header_schema_id_serializer
from confluent_kafka.serialization import MessageField, SerializationContext

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "proto")
UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

WORDS = ["alpha", "Zürich", "東京", "naïve café", "quote\"d", "back\\slash", "tab\there",
         "new\nline", "emoji 🚀", "", "x" * 50, "Ωmega", "plain"]
STATUSES = ["NEW", "PAID", "SHIPPED", "CANCELLED"]


def text(r):
    return r.choice(WORDS) + "-" + str(r.randrange(1000))


def instant(r, i):
    """A UTC datetime with millisecond precision; edge cases at fixed indexes."""
    if i % 50 == 0:
        return EPOCH
    if i % 97 == 0:
        return EPOCH - dt.timedelta(milliseconds=1)
    if i % 89 == 0:
        return dt.datetime(1900, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=r.randrange(10**9))
    if i % 83 == 0:
        return dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    return dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=r.randrange(3 * 10**11))


def long_value(r, i):
    edges = [0, 1, -1, 2**31, -2**31 - 1, 2**53 + 1, 2**63 - 1, -2**63]
    if i % 7 == 0:
        return edges[(i // 7) % len(edges)]
    return r.randrange(-10**12, 10**12)


# ------------------------------------------------------------------ Avro --

def avro_schema(version):
    line = {"type": "record", "name": "Line", "fields": [
        {"name": "sku", "type": "string"},
        {"name": "quantity", "type": "int"},
        {"name": "price", "type": "double"},
    ]}
    refund = {"type": "record", "name": "Refund", "fields": [
        {"name": "reason", "type": "string"},
        {"name": "cents", "type": "long"},
    ]}
    fields = [
        {"name": "id", "type": "string"},
        {"name": "sequence", "type": "long"},
        {"name": "quantity", "type": "int"},
        {"name": "flag", "type": "boolean"},
        {"name": "ratio", "type": "float"},
        {"name": "amount", "type": "double"},
        {"name": "blob", "type": "bytes"},
        {"name": "tag", "type": {"type": "fixed", "name": "Tag", "size": 4}},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": STATUSES}},
        {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
            {"name": "name", "type": "string"},
            {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
                {"name": "street", "type": "string"},
                {"name": "city", "type": "string"},
            ]}},
        ]}},
        {"name": "lines", "type": {"type": "array", "items": line}},
        {"name": "counters", "type": {"type": "map", "values": "long"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "choice", "type": ["null", "long", "string", refund]},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal",
                                   "precision": 12, "scale": 2}},
        {"name": "created", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "updated", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "at", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
    ]
    if version >= 2:
        fields.append({"name": "channel", "type": "string",
                       "default": "web" if version == 2 else "store"})
    if version >= 3:
        fields.append({"name": "rank", "type": "int", "default": 0})
    return {"type": "record", "name": "Order", "namespace": "hindsight.test", "fields": fields}


def avro_value(i, version):
    r = random.Random(i)
    created = instant(r, i)
    value = {
        "id": f"order-{i}",
        "sequence": i,
        "quantity": [0, 2**31 - 1, -2**31][i % 3] if i % 11 == 0 else r.randrange(-1000, 100000),
        "flag": i % 2 == 0,
        "ratio": r.random() * 100,
        "amount": [0.0, 1e-300, 1.5e300, -123.456][i % 4] if i % 13 == 0 else r.uniform(-1e6, 1e6),
        "blob": r.randbytes(r.randrange(0, 40)),
        "tag": r.randbytes(4),
        "status": STATUSES[i % 4],
        "customer": {"name": text(r),
                     "address": {"street": f"{r.randrange(1, 999)} {text(r)}", "city": text(r)}},
        "lines": [{"sku": f"sku-{r.randrange(10**6)}", "quantity": r.randrange(1, 50),
                   "price": round(r.uniform(0, 500), 2)} for _ in range(r.randrange(0, 5))],
        "counters": {text(r): long_value(r, i + k) for k in range(r.randrange(0, 4))},
        "note": None if i % 3 == 0 else text(r),
        "choice": [None, long_value(r, i), text(r),
                   {"reason": text(r), "cents": r.randrange(-10**9, 10**9)}][i % 4],
        "price": decimal.Decimal(
            [0, -5, 10**12 - 1, -(10**12 - 1)][i % 4] if i % 17 == 0
            else r.randrange(-10**10, 10**10)).scaleb(-2),
        "created": created,
        "updated": created + dt.timedelta(microseconds=r.randrange(10**6)) if created.year < 9999
        else created,
        "day": (created - dt.timedelta(days=r.randrange(0, 3))).date() if created.year < 9999
        else created.date(),
        "at": dt.time(r.randrange(24), r.randrange(60), r.randrange(60), r.randrange(1000) * 1000),
        "ref": str(uuid.UUID(int=r.getrandbits(128), version=4)),
        "local": created.replace(tzinfo=None),
    }
    if version >= 2 and i % 2 == 1:
        value["channel"] = ["web", "store", "app", "phone"][i % 4]  # even: the default
    if version >= 3:
        value["rank"] = r.randrange(-5, 100)
    return value


def iso(v, digits, zulu):
    if v.tzinfo is not None:
        v = v.astimezone(UTC)
    frac = f"{v.microsecond:06d}"[:digits]
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}" \
           f".{frac}{'Z' if zulu else ''}"


def time_text(v, digits):
    return f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{f'{v.microsecond:06d}'[:digits]}"


def avro_convert(schema, v, named=None):
    """Converts a value fastavro decoded with `schema` (parsed JSON) to the convention."""
    named = {} if named is None else named
    if isinstance(schema, str):
        if schema in named:
            return avro_convert(named[schema], v, named)
        if schema in ("bytes", "fixed"):
            return base64.b64encode(v).decode("ascii")
        return v
    if isinstance(schema, list):  # union: the branch's value itself
        if v is None:
            return None
        for branch in schema:
            if avro_matches(branch, v, named):
                return avro_convert(branch, v, named)
        raise ValueError(f"no union branch of {schema} matches {v!r}")
    t = schema["type"]
    logical = schema.get("logicalType")
    if "name" in schema and t in ("record", "enum", "fixed"):
        named[schema["name"]] = schema
        named[f"{schema.get('namespace', 'hindsight.test')}.{schema['name']}"] = schema
    if logical == "decimal":
        return format(v, "f")
    if logical in ("timestamp-millis", "local-timestamp-millis"):
        return iso(v, 3, logical == "timestamp-millis")
    if logical in ("timestamp-micros", "local-timestamp-micros"):
        return iso(v, 6, logical == "timestamp-micros")
    if logical == "date":
        return v.isoformat()
    if logical == "time-millis":
        return time_text(v, 3)
    if logical == "time-micros":
        return time_text(v, 6)
    if logical == "uuid":
        return str(v)
    if t == "record":
        return {f["name"]: avro_convert(f["type"], v[f["name"]], named) for f in schema["fields"]}
    if t == "array":
        return [avro_convert(schema["items"], x, named) for x in v]
    if t == "map":
        return {k: avro_convert(schema["values"], x, named) for k, x in v.items()}
    if t in ("bytes", "fixed"):
        return base64.b64encode(v).decode("ascii")
    return avro_convert(t, v, named)  # {"type": <a type>}: the inner type decides


def avro_matches(branch, v, named):
    if isinstance(branch, str) and branch in named:
        branch = named[branch]
    t = branch if isinstance(branch, str) else branch["type"]
    if t == "null":
        return v is None
    if t in ("long", "int"):
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "string":
        return isinstance(v, str)
    if t == "record":
        return isinstance(v, dict)
    if t == "boolean":
        return isinstance(v, bool)
    if t in ("float", "double"):
        return isinstance(v, float)
    if t in ("bytes", "fixed"):
        return isinstance(v, (bytes, bytearray))
    if t == "enum":
        return isinstance(v, str)
    if t == "array":
        return isinstance(v, list)
    if t == "map":
        return isinstance(v, dict)
    raise ValueError(f"union branch {branch} not handled")


# -------------------------------------------------------------- Protobuf --

V2_PROTO_FIELDS = {2: "  string channel = 22;\n", 3: "  string channel = 22;\n  int32 rank = 23;\n"}
PROTO_MARKER = "  // schema_produce.py --schema-version 2 and 3 add fields here.\n"


def compile_protos(version):
    """Compiles tests/support/proto into a temp dir and imports orders_pb2."""
    import grpc_tools
    out = tempfile.mkdtemp(prefix="hindsight-proto-")
    src = os.path.join(out, "src")
    os.mkdir(src)
    for name in ("common.proto", "orders.proto"):
        with open(os.path.join(PROTO_DIR, name), encoding="utf-8") as f:
            content = f.read()
        if name == "orders.proto" and version >= 2:
            if PROTO_MARKER not in content:
                raise SystemExit("orders.proto lost the --schema-version marker line")
            content = content.replace(PROTO_MARKER, PROTO_MARKER + V2_PROTO_FIELDS[version])
        with open(os.path.join(src, name), "w", encoding="utf-8") as f:
            f.write(content)
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    import google.type  # googleapis-common-protos: google/type/*.proto
    common = os.path.dirname(os.path.dirname(list(google.type.__path__)[0]))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{src}", f"-I{well_known}",
                    f"-I{common}",
                    f"--python_out={out}", "common.proto", "orders.proto"], check=True, cwd=src)
    sys.path.insert(0, out)
    import orders_pb2  # noqa: E402  (generated above)
    return orders_pb2


def proto_message(pb2, name, i, version):
    r = random.Random(i)
    if name == "Envelope":
        msg = pb2.Envelope(id=f"env-{i}", body=r.randbytes(r.randrange(0, 30)),
                           priority=i % 3, tags=[text(r) for _ in range(r.randrange(0, 3))])
        for _ in range(r.randrange(0, 3)):
            msg.attributes[text(r)] = text(r)
        return msg
    if name == "Order.Line":
        return pb2.Order.Line(sku=f"sku-{r.randrange(10**6)}", quantity=r.randrange(-5, 50),
                              price=round(r.uniform(0, 500), 2))
    if name != "Order":
        raise SystemExit(f"--protobuf-message must be Order, Envelope or Order.Line, not {name}")
    msg = pb2.Order(
        id=f"order-{i}",
        sequence=long_value(r, i),
        big=[0, 2**64 - 1, 2**63][i % 3] if i % 7 == 0 else r.randrange(2**64),
        delta=r.randrange(-2**31, 2**31),
        fixed=r.randrange(2**64),
        amount=r.uniform(-1e6, 1e6),
        ratio=r.random() * 100,
        flag=i % 2 == 0,
        blob=r.randbytes(r.randrange(0, 40)),
        status=i % 4,
        priority=i % 3,
        small=[0, 2**31 - 1, -2**31][i % 3] if i % 11 == 0 else r.randrange(-1000, 1000),
        offset=r.randrange(-2**31, 2**31),
        samples=[long_value(r, i + k) for k in range(r.randrange(0, 4))],
    )
    for _ in range(r.randrange(0, 4)):
        msg.lines.add(sku=f"sku-{r.randrange(10**6)}", quantity=r.randrange(1, 50),
                      price=round(r.uniform(0, 500), 2))
    for k in range(r.randrange(0, 4)):
        msg.counters[text(r)] = long_value(r, i + k)
    created = instant(r, i)
    if created.year < 9999:  # Timestamp's range ends 9999-12-31T23:59:59Z; keep edges below
        msg.created.FromDatetime(created + dt.timedelta(microseconds=r.randrange(1000)))
    if i % 5:
        msg.address.street = f"{r.randrange(1, 999)} {text(r)}"
        msg.address.city = text(r)
        if i % 2:
            msg.address.postcode = f"{r.randrange(10**5):05d}"
    if i % 3 == 0:
        msg.card.number = f"4111-{r.randrange(10**4):04d}"
        msg.card.expiry_month = r.randrange(1, 13)
    elif i % 3 == 1:
        msg.voucher = text(r)
    if i % 4 == 0:
        msg.note = ""  # proto3 optional: present, though empty
    elif i % 4 == 1:
        msg.note = text(r)
    if i % 2 == 0:
        msg.delivery.year = r.randrange(1, 10000)
        msg.delivery.month = r.randrange(0, 13)
        msg.delivery.day = r.randrange(0, 32)
    if version >= 2:
        msg.channel = ["", "web", "store", "app"][i % 4]
    if version >= 3:
        msg.rank = r.randrange(-5, 100)
    return msg


# ------------------------------------------------------------ JSON Schema --

def json_schema(version):
    props = {
        "id": {"type": "string"},
        "sequence": {"type": "integer"},
        "quantity": {"type": "integer"},
        "flag": {"type": "boolean"},
        "amount": {"type": "number"},
        "status": {"type": "string", "enum": STATUSES},
        "customer": {"type": "object", "properties": {
            "name": {"type": "string"},
            "address": {"type": "object", "properties": {
                "street": {"type": "string"}, "city": {"type": "string"}},
                "required": ["street", "city"]},
        }, "required": ["name", "address"]},
        "lines": {"type": "array", "items": {"type": "object", "properties": {
            "sku": {"type": "string"}, "quantity": {"type": "integer"},
            "price": {"type": "number"}}, "required": ["sku", "quantity", "price"]}},
        "counters": {"type": "object", "additionalProperties": {"type": "integer"}},
        "tags": {"type": "array", "items": {"type": "string"}},
        "note": {"type": ["string", "null"]},
        "created": {"type": "string", "format": "date-time"},
    }
    if version >= 2:
        props["channel"] = {"type": "string", "default": "web" if version == 2 else "store"}
    if version >= 3:
        props["rank"] = {"type": "integer", "default": 0}
    return {"$schema": "http://json-schema.org/draft-07/schema#", "title": "Order",
            "type": "object", "properties": props,
            "required": ["id", "sequence", "status", "customer"], "additionalProperties": False}


def json_value(i, version):
    r = random.Random(i)
    value = {
        "id": f"order-{i}",
        "sequence": i,
        "quantity": r.randrange(-1000, 100000),
        "flag": i % 2 == 0,
        "amount": [0, 1e-300, -2.5, 10**18][i % 4] if i % 13 == 0 else r.uniform(-1e6, 1e6),
        "status": STATUSES[i % 4],
        "customer": {"name": text(r),
                     "address": {"street": f"{r.randrange(1, 999)} {text(r)}", "city": text(r)}},
        "lines": [{"sku": f"sku-{r.randrange(10**6)}", "quantity": r.randrange(1, 50),
                   "price": round(r.uniform(0, 500), 2)} for _ in range(r.randrange(0, 5))],
        "counters": {text(r): long_value(r, i + k) for k in range(r.randrange(0, 4))},
        "tags": [text(r) for _ in range(r.randrange(0, 3))],
        "note": None if i % 3 == 0 else text(r),
        "created": iso(instant(r, i), 3, True),
    }
    if i % 5 == 0:
        del value["lines"], value["note"]  # optional properties, sometimes absent
    if version >= 2 and i % 2 == 1:
        value["channel"] = ["web", "store", "app", "phone"][i % 4]
    if version >= 3:
        value["rank"] = r.randrange(-5, 100)
    return value


# ------------------------------------------------------------------- main --

def schema_id_of(value_bytes, headers):
    for k, v in headers or []:
        if k == "__value_schema_id":
            return None  # a GUID: resolved by the caller
    return int.from_bytes(value_bytes[1:5], "big")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--registry-user")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--format", required=True, choices=["avro", "protobuf", "json"])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--schema-version", type=int, default=1, choices=[1, 2, 3])
    ap.add_argument("--header-ids", action="store_true")
    ap.add_argument("--expected")
    ap.add_argument("--protobuf-message", default="Order")
    args = ap.parse_args()

    registry_conf = {"url": args.registry}
    if args.registry_user:
        registry_conf["basic.auth.user.info"] = args.registry_user
    registry = SchemaRegistryClient(registry_conf)
    ser_conf = {"schema.id.serializer": header_schema_id_serializer} if args.header_ids else {}
    version = args.schema_version

    if args.format == "avro":
        from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
        schema = avro_schema(version)
        serializer = AvroSerializer(registry, json.dumps(schema), conf=ser_conf)
        deserializer = AvroDeserializer(registry)

        def make(i):
            return avro_value(i, version)

        def convert(v):
            return avro_convert(schema, v)
    elif args.format == "protobuf":
        from google.protobuf import json_format
        from confluent_kafka.schema_registry.protobuf import (ProtobufDeserializer,
                                                              ProtobufSerializer)
        pb2 = compile_protos(version)
        cls = pb2.Order.Line if args.protobuf_message == "Order.Line" else \
            getattr(pb2, args.protobuf_message, None)
        if cls is None:
            raise SystemExit(f"no message {args.protobuf_message} in orders.proto")
        serializer = ProtobufSerializer(cls, registry, conf=ser_conf)
        deserializer = ProtobufDeserializer(cls, schema_registry_client=registry)

        def make(i):
            return proto_message(pb2, args.protobuf_message, i, version)

        def convert(msg):
            return json_format.MessageToDict(msg, preserving_proto_field_name=True)
    else:
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
        serializer = JSONSerializer(json.dumps(json_schema(version)), registry, conf=ser_conf)
        # The serializer validates each value against the schema already; a
        # second validation here would only double the run time.
        deserializer = JSONDeserializer(None, schema_registry_client=registry,
                                        conf={"validate": False})

        def make(i):
            return json_value(i, version)

        def convert(v):
            return v

    failures = []

    def delivered(error, _message):
        if error is not None:
            failures.append(str(error))

    settings = {
        "bootstrap.servers": args.brokers,
        "linger.ms": 50,
        "batch.size": 1000000,
        "acks": "all",
        "queue.buffering.max.messages": 200000,
        "message.send.max.retries": 1000000,
    }
    settings.update(json.loads(os.environ.get("HINDSIGHT_TEST_KAFKA_CLIENT", "{}")))
    producer = Producer(settings)
    expected = open(args.expected, "w", encoding="utf-8") if args.expected else None
    guid_ids = {}
    started = time.monotonic()
    for i in range(args.start, args.start + args.count):
        key = f"{args.format}-{args.topic}-{i:07d}"
        headers = []
        ctx = SerializationContext(args.topic, MessageField.VALUE, headers)
        value = serializer(make(i), ctx)
        if expected is not None:
            sid = schema_id_of(value, headers)
            if sid is None:
                guid = str(uuid.UUID(bytes=bytes(headers[0][1][1:17])))
                if guid not in guid_ids:
                    guid_ids[guid] = registry._rest_client.get(f"schemas/guids/{guid}")["id"]
                sid = guid_ids[guid]
            decoded = deserializer(value, SerializationContext(args.topic, MessageField.VALUE,
                                                               list(headers)))
            expected.write(json.dumps({"key": key, "schema_id": sid, "value": convert(decoded)},
                                      ensure_ascii=False) + "\n")
        while True:
            try:
                producer.produce(args.topic, key=key.encode(), value=value,
                                 headers=headers or None, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(120)
    if expected is not None:
        expected.close()
    elapsed = time.monotonic() - started
    if failures or remaining:
        print(f"delivery failed: {len(failures)} errors, {remaining} undelivered; first: "
              f"{failures[:3]}", file=sys.stderr)
        return 1
    print(f"produced {args.count} {args.format} events to {args.topic} in {elapsed:.1f}s",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
