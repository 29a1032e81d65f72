"""The `schemas` section of scripts/bench (`scripts/bench --only schemas`):
what decoding schema-framed payloads costs. Called from bench.py as
`schemas.run(bench, log, events)`; needs Tansu.

EVENTS Avro events (nested records, arrays, maps, unions, decimals,
timestamps: tests/support/schema_produce.py) are produced with
confluent-kafka's AvroSerializer against the test registry
(tests/support/schema_registry.py) and archived by `hindsight archive`,
which keeps their schema in the catalog. Then, with the registry stopped:
- `hindsight query "SELECT sum(length(decode_payload(payload, topic))) …"`,
  process start to exit: every payload decoded to JSON text;
- the same payloads decoded by fastavro (`schemaless_reader`, the writer's
  schema, 5-byte prefix skipped) and written as compact JSON text by
  `json.dumps` (as Hindsight writes it: no spaces, no escaped non-ASCII),
  in one Python process, payloads read from the same segments with
  pyarrow (the read is not timed);
- `SELECT count(*), sum(length(payload)) …` over the same events: the scan
  alone, so the decoding's own share shows;
- an aggregate over the typed view `decoded_bench_schemas_<topic>`
  (arrow-avro: real columns), against fastavro decoding the same payloads
  and aggregating in Python; the results must agree.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ROOT / "tests/support/schema_registry.py"
PRODUCER = ROOT / "tests/support/schema_produce.py"
KAFKA = os.environ.get("HINDSIGHT_TEST_KAFKA_BROKERS", "127.0.0.1:9092")


def start_registry(out):
    port_file = out / "schemas-registry.port"
    port_file.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, str(REGISTRY), "--port", "0", "--port-file", str(port_file)],
                               stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().strip()):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise SystemExit("the test schema registry did not start")
        time.sleep(0.1)
    return process, f"http://127.0.0.1:{port_file.read_text().strip()}"


def read_payloads(data_dir, topic):
    """Every payload of `topic`, read from its segments with pyarrow."""
    import pyarrow.dataset as ds

    root = Path(data_dir) / "segments"
    files = [str(p) for p in root.rglob("*.parquet") if f"topic={topic}" in str(p)]
    payloads = []
    for batch in ds.dataset(files, format="parquet").to_batches(columns=["payload"]):
        payloads.extend(batch.column(0).to_pylist())
    return payloads


def fastavro_decode(data_dir, topic, schema_text):
    """Decodes every payload of `topic` with fastavro into JSON text; returns
    (seconds, events, characters)."""
    import fastavro
    import io
    import base64
    import decimal
    import datetime as dt
    import uuid

    payloads = read_payloads(data_dir, topic)
    schema = fastavro.parse_schema(json.loads(schema_text))

    def default(value):
        # What Hindsight writes for the values JSON has no type for.
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        if isinstance(value, decimal.Decimal):
            return format(value, "f")
        if isinstance(value, (dt.datetime, dt.date, dt.time)):
            return value.isoformat()
        if isinstance(value, uuid.UUID):
            return str(value)
        raise TypeError(type(value))

    started = time.monotonic()
    characters = 0
    for payload in payloads:
        value = fastavro.schemaless_reader(io.BytesIO(payload[5:]), schema)
        # Compact and unescaped, as Hindsight writes it.
        characters += len(json.dumps(value, default=default, separators=(",", ":"), ensure_ascii=False))
    return time.monotonic() - started, len(payloads), characters


def fastavro_aggregate(data_dir, topic, schema_text):
    """What the typed-view aggregate computes, by fastavro in one Python
    process: per status, events, the sum of amount and of line counts.
    Returns (seconds, {status: [events, amount, lines]})."""
    import fastavro
    import io

    payloads = read_payloads(data_dir, topic)
    schema = fastavro.parse_schema(json.loads(schema_text))
    started = time.monotonic()
    groups = {}
    for payload in payloads:
        value = fastavro.schemaless_reader(io.BytesIO(payload[5:]), schema)
        group = groups.setdefault(value["status"], [0, 0.0, 0])
        group[0] += 1
        group[1] += value["amount"]
        group[2] += len(value["lines"])
    return time.monotonic() - started, groups


def run(bench, log, events):
    facts = bench.facts.setdefault("schemas", {})
    topic = f"bench-avro-{bench.run_id}"
    bench.topic(topic, 6)
    registry, url = start_registry(bench.out)
    try:
        log(f"schemas: producing {events} Avro events with confluent-kafka's AvroSerializer")
        wall, _ = bench.run([sys.executable, str(PRODUCER), "--brokers", KAFKA, "--registry", url,
                             "--topic", topic, "--format", "avro", "--count", str(events)])
        facts["produce_seconds"] = wall
        data_dir = bench.out / "schemas-archive"
        subprocess.run(["rm", "-rf", str(data_dir)], check=True, timeout=600)
        config = (f'data_dir = "{data_dir}"\n'
                  "[[sources]]\ntype = \"kafka\"\nname = \"bench-schemas\"\n"
                  f'brokers = ["{KAFKA}"]\ntopics = ["{topic}"]\n'
                  f'group_id = "bench-schemas-{bench.run_id}"\nstart = "earliest"\n'
                  f'[schemas.registries.main]\nurl = "{url}"\n')
        bench.archive("schemas-archive", config, data_dir, "bench-schemas", events)
        # The capture runs beside ingest: give it a moment to store the schema.
        config_path = bench.out / "schemas-archive.toml"
        _, listed = bench.run([str(bench.bin), "--config", str(config_path), "schemas", "list", "--json"])
        stored = [json.loads(line) for line in listed.splitlines()]
        if not stored:
            raise SystemExit("hindsight archive stored no schema")
    finally:
        registry.send_signal(signal.SIGTERM)
        registry.wait(timeout=30)

    def query(sql):
        wall, out = bench.run([str(bench.bin), "--config", str(config_path), "query", "--format", "json", sql])
        return wall, json.loads(out)

    decode_wall, decoded = query(
        f"SELECT count(decode_payload(payload, topic)) AS n, sum(length(decode_payload(payload, topic))) AS chars "
        f"FROM events WHERE topic = '{topic}'")
    if decoded[0]["n"] != events:
        raise SystemExit(f"decode_payload decoded {decoded[0]['n']} of {events} events")
    scan_wall, _ = query(f"SELECT count(*) AS n, sum(length(encode(payload, 'hex'))) AS bytes "
                         f"FROM events WHERE topic = '{topic}'")
    _, shown = bench.run([str(bench.bin), "--config", str(config_path), "schemas", "show",
                          str(stored[0]["id"]), "--json"])
    python_seconds, python_events, python_chars = fastavro_decode(data_dir, topic, json.loads(shown)["schema"])
    if python_events != events:
        raise SystemExit(f"fastavro read {python_events} payloads, not {events}")
    facts.update(events=events, hindsight_chars=decoded[0]["chars"], fastavro_chars=python_chars)
    bench.row("schemas", f"decode_payload over {events:,} Avro events to JSON text (process start to exit)",
              decode_wall, python_seconds, "fastavro + json.dumps in one Python process (reading not timed)",
              "s", "lower")
    view = "decoded_bench_schemas_" + topic.replace("-", "_").lower()
    typed_wall, typed = query(
        f"SELECT CAST(status AS VARCHAR) AS status, count(*) AS n, sum(amount) AS amount, "
        f"sum(cardinality(lines)) AS lines FROM {view} GROUP BY 1 ORDER BY 1")
    aggregate_seconds, groups = fastavro_aggregate(data_dir, topic, json.loads(shown)["schema"])
    for row in typed:
        n, amount, lines = groups.get(row["status"], [None, None, None])
        if row["n"] != n or row["lines"] != lines or abs(row["amount"] - amount) > 1e-6 * max(1.0, abs(amount)):
            raise SystemExit(f"the typed view disagrees with fastavro for {row['status']}: {row} against {groups}")
    if sum(row["n"] for row in typed) != events:
        raise SystemExit(f"the typed view holds {sum(row['n'] for row in typed)} of {events} events")
    bench.row("schemas", f"typed view (arrow-avro): status, count, sum(amount), sum(cardinality(lines)) "
              f"over the {events:,} events, process start to exit",
              typed_wall, aggregate_seconds, "fastavro decoding and aggregating the same payloads in one "
              "Python process (reading not timed)", "s", "lower")
    bench.row("schemas", "the same query without decoding (scan, hex of every payload)",
              scan_wall, decode_wall, "the decoding query", "s", "lower")
