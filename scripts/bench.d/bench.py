"""The benchmark driver behind scripts/bench. See BENCHMARKS.md.

Every figure is measured against a baseline run in the same invocation on the
same data, and reported as a ratio. Results go to OUT/results.json and
OUT/results.md (a Markdown table), and the table is printed.

Throughput figures are process wall times measured from outside, the same way
for Hindsight and for its baseline: from the start of the process (so
connecting and joining a group count for both) until the last event is
consumed (baseline) or committed to the catalog (Hindsight), or until a
publisher exits after its last confirm.
"""
import argparse
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
KAFKA = "127.0.0.1:9092"
AMQP = "amqp://guest:guest@127.0.0.1:5672/%2f"

SIZES = {
    # kafka events, amqp events, query archive events, query runs, backlog events (P8)
    "smoke": (20_000, 5_000, 50_000, 3, 40_000),
    "full": (2_000_000, 500_000, 10_000_000, 5, 10_000_000),
}
# P1 over SASL_SSL: the SASL test broker keeps its records in PostgreSQL
# (Tansu's only engine that keeps SCRAM users), which loads far slower.
TLS_EVENTS = {"smoke": 5_000, "full": 200_000}
# compaction: events of the archive compacted, events of the quiet archive.
COMPACTION_EVENTS = {"smoke": (50_000, 2_000), "full": (5_000_000, 20_000)}
# tables: events of the archive published as Iceberg tables.
TABLES_EVENTS = {"smoke": 20_000, "full": 1_000_000}
# schemas: Avro events produced by confluent-kafka, decoded by decode_payload and fastavro.
SCHEMAS_EVENTS = {"smoke": 2_000, "full": 1_000_000}
# The parts that need the brokers of scripts/services.sh and the P1 data file.
BROKER_PARTS = {"kafka", "kafka-tls", "storage", "amqp", "replay-kafka", "replay-amqp", "backlog"}


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/hindsight/target"))
        profile_dir = "release" if args.profile == "release" else "debug"
        self.bin = target / profile_dir / "hindsight"
        self.examples = target / profile_dir / "examples"
        self.run_id = f"{int(time.time())}"
        self.rows = []
        self.facts = {}
        self.timeout = args.timeout

    # ---------------------------------------------------------------- helpers

    def example(self, name):
        return str(self.examples / name)

    def run(self, command, timeout=None, **kwargs):
        """Runs a command, returns (wall seconds, stdout). Fails loudly."""
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=timeout or self.timeout, **kwargs)
        wall = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"command failed ({done.returncode}): {' '.join(map(str, command))}\n"
                             f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        return wall, done.stdout

    def row(self, figure, what, hindsight, baseline, baseline_name, unit, better, target=None, note=""):
        ratio = hindsight / baseline if baseline else None
        met = None
        if target is not None and ratio is not None:
            met = ratio >= target if better == "higher" else ratio <= target
        self.rows.append(dict(figure=figure, what=what, hindsight=hindsight, baseline=baseline,
                              baseline_name=baseline_name, unit=unit, ratio=ratio,
                              better=better, target=target, met=met, note=note))
        shown = f"{ratio:.2f}x" if ratio is not None else "-"
        log(f"{figure} {what}: hindsight {hindsight:.4g} {unit}, {baseline_name} {baseline:.4g} -> {shown}")

    def check_services(self):
        for name, port in (("Kafka (Tansu)", 9092), ("RabbitMQ", 5672)):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            except OSError:
                raise SystemExit(f"{name} is not listening on 127.0.0.1:{port}; start it with: bash scripts/services.sh")
        for path in [self.bin] + [self.examples / n for n in
                                  ("raw_kafka_consumer", "raw_kafka_producer", "raw_lapin_consumer",
                                   "raw_lapin_publisher")]:
            if not path.exists():
                raise SystemExit(f"{path} is missing; build it with: "
                                 f"cargo build --profile {self.args.profile} --bin hindsight --examples")

    def data_file(self, count):
        path = self.out / f"events-{count}.tsv"
        if not path.exists():
            log(f"generating {count} events into {path}")
            with open(path.with_suffix(".tmp"), "w") as out:
                subprocess.run([sys.executable, HERE / "gen_events.py", str(count), "7"], stdout=out, check=True)
            path.with_suffix(".tmp").rename(path)
        return path

    def head(self, path, count):
        if sum(1 for _ in open(path)) == count:
            return path
        cut = self.out / f"{path.stem}-head-{count}.tsv"
        with open(path) as source, open(cut, "w") as out:
            for index, line in enumerate(source):
                if index >= count:
                    break
                out.write(line)
        return cut

    def topic(self, name, partitions=6):
        self.run(["tansu", "topic", "create", name, "--partitions", str(partitions),
                  "--broker", f"tcp://{KAFKA}"])

    def amqp(self, action):
        import pika
        connection = pika.BlockingConnection(pika.URLParameters(AMQP))
        try:
            action(connection.channel())
        finally:
            connection.close()

    def committed(self, data_dir, source):
        try:
            connection = sqlite3.connect(f"file:{data_dir}/catalog.db?mode=ro", uri=True, timeout=1)
            try:
                return connection.execute(
                    "SELECT coalesce(sum(row_count), 0) FROM segments WHERE state = 'committed' AND source = ?",
                    (source,)).fetchone()[0]
            finally:
                connection.close()
        except sqlite3.Error:
            return 0

    def consumed(self, metrics_url, source):
        try:
            with urllib.request.urlopen(metrics_url, timeout=2) as response:
                for line in response.read().decode().splitlines():
                    if line.startswith(f'hindsight_events_consumed_total{{source="{source}"}}'):
                        return int(float(line.split()[-1]))
        except OSError:
            pass
        return 0

    def archive(self, name, config, data_dir, source, count):
        """Runs `hindsight archive` until it has consumed `count` events of
        `source`, then stops it with SIGTERM, which flushes and commits what
        is buffered: the wall time ends when the process has exited with all
        `count` events committed. (Waiting instead for the last partial batch
        to reach the flush age would add up to `flush.max_age`, 10 s, of idle
        time to every run.) Returns wall seconds, CPU seconds, peak RSS bytes."""
        config_path = self.out / f"{name}.toml"
        config_path.write_text(config)
        log_path = self.out / f"{name}.log"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            metrics_address = f"127.0.0.1:{probe.getsockname()[1]}"
        metrics_url = f"http://{metrics_address}/metrics"
        started = time.monotonic()
        with open(log_path, "w") as log_file:
            process = subprocess.Popen(
                [str(self.bin), "--config", str(config_path), "archive", "--metrics-listen", metrics_address],
                stdout=log_file, stderr=subprocess.STDOUT,
                env=dict(os.environ, HINDSIGHT_LOG=os.environ.get("HINDSIGHT_LOG", "info")))
            try:
                while self.consumed(metrics_url, source) < count:
                    if process.poll() is not None:
                        raise SystemExit(f"hindsight archive exited early; see {log_path}")
                    if time.monotonic() - started > self.timeout:
                        raise SystemExit(f"hindsight archive did not consume {count} events in {self.timeout}s; "
                                         f"see {log_path}")
                    time.sleep(0.05)
            finally:
                process.terminate()
            # wait4 gives the child's own CPU time and peak RSS (KiB on Linux).
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.monotonic() - started
            process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"hindsight archive failed on shutdown ({process.returncode}); see {log_path}")
        committed = self.committed(data_dir, source)
        if committed != count:
            raise SystemExit(f"hindsight archive committed {committed} events, not {count}; see {log_path}")
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024

    # ---------------------------------------------------------------- figures

    def kafka(self, data, count):
        """P1, P2, P8 (archive from Kafka) and P4 (storage); returns the archive."""
        topic = f"bench-{self.run_id}"
        self.topic(topic)
        log(f"P1: loading {count} events into {topic} (6 partitions)")
        self.run([self.example("raw_kafka_producer"), KAFKA, topic, str(data), str(self.timeout)])

        log("P1 baseline: raw rdkafka BaseConsumer")
        raw_wall, _ = self.run([self.example("raw_kafka_consumer"), KAFKA, topic, str(count), str(self.timeout)])
        log("P1 reference: confluent-kafka (Python)")
        python_wall, _ = self.run([sys.executable, HERE / "confluent_consume.py", KAFKA, topic, str(count),
                                   str(self.timeout)])

        log("P1: hindsight archive")
        data_dir = self.out / "kafka-archive"
        subprocess.run(["rm", "-rf", str(data_dir)], check=True)
        config = (f'data_dir = "{data_dir}"\n[[sources]]\ntype = "kafka"\nname = "bench"\n'
                  f'brokers = ["{KAFKA}"]\ntopics = ["{topic}"]\ngroup_id = "hindsight-{topic}"\n')
        wall, cpu, rss = self.archive("kafka-archive", config, data_dir, "bench", count)
        self.facts["kafka"] = dict(events=count, topic=topic, hindsight_seconds=wall, raw_seconds=raw_wall,
                                   confluent_python_seconds=python_wall, cpu_seconds=cpu, peak_rss=rss)
        self.row("P1", "Kafka archive rate", count / wall, count / raw_wall, "raw rdkafka consumer",
                 "events/s", "higher", 1.0)
        self.row("P1", "Kafka archive rate (reference)", count / wall, count / python_wall,
                 "confluent-kafka Python consumer", "events/s", "higher")
        self.row("P2", "CPU per archived event (user+sys)", cpu / count * 1e6, 3.0, "target 3 µs",
                 "µs/event", "lower", 1.0)
        return data_dir, topic

    def kafka_tls(self, data, count):
        """P1 over SASL_SSL (SCRAM-SHA-256, stunnel in front of Tansu): Hindsight
        through a named connection against the raw rdkafka consumer over the
        same TLS and SASL (and confluent-kafka's, for reference)."""
        brokers = os.environ.get("HINDSIGHT_TEST_KAFKA_SASL_SSL_BROKERS", "127.0.0.1:9393")
        tls_dir = Path(os.environ.get("HINDSIGHT_TEST_TLS_DIR",
                                      Path.home() / ".cache/hindsight/services/tls"))
        user = os.environ.get("HINDSIGHT_TEST_KAFKA_USER", "hindsight")
        password = os.environ.get("HINDSIGHT_TEST_KAFKA_PASSWORD", "hindsight-secret")
        settings = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256",
                    "sasl.username": user, "sasl.password": password,
                    "ssl.ca.location": str(tls_dir / "ca.pem")}
        env = dict(os.environ, BENCH_KAFKA_CLIENT=";".join(f"{k}={v}" for k, v in settings.items()),
                   CONFLUENT_CLIENT=json.dumps(settings))
        from confluent_kafka.admin import AdminClient, NewTopic
        topic = f"bench-tls-{self.run_id}"
        admin = AdminClient({"bootstrap.servers": brokers, **settings})
        admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])[topic].result(60)
        log(f"P1 (SASL_SSL): loading {count} events into {topic} on {brokers}")
        self.run([self.example("raw_kafka_producer"), brokers, topic, str(data), str(self.timeout)], env=env)
        log("P1 (SASL_SSL) baseline: raw rdkafka BaseConsumer over the same TLS and SASL")
        raw_wall, _ = self.run([self.example("raw_kafka_consumer"), brokers, topic, str(count),
                                str(self.timeout)], env=env)
        log("P1 (SASL_SSL) reference: confluent-kafka (Python) over the same TLS and SASL")
        python_wall, _ = self.run([sys.executable, HERE / "confluent_consume.py", brokers, topic, str(count),
                                   str(self.timeout)], env=env)
        log("P1 (SASL_SSL): hindsight archive through a named connection")
        data_dir = self.out / "kafka-tls-archive"
        subprocess.run(["rm", "-rf", str(data_dir)], check=True)
        password_file = self.out / "kafka-tls-password"
        password_file.write_text(password + "\n")
        config = (f'data_dir = "{data_dir}"\n'
                  f'[connections.tls]\nbus = "kafka"\nbrokers = ["{brokers}"]\nsecurity_protocol = "sasl_ssl"\n'
                  f'sasl = {{ mechanism = "scram-sha-256", username = "{user}", password_file = "{password_file}" }}\n'
                  f'tls = {{ ca_file = "{tls_dir / "ca.pem"}" }}\n'
                  f'[[sources]]\ntype = "kafka"\nname = "bench-tls"\nconnection = "tls"\n'
                  f'topics = ["{topic}"]\ngroup_id = "hindsight-{topic}"\n')
        wall, cpu, rss = self.archive("kafka-tls-archive", config, data_dir, "bench-tls", count)
        self.facts["kafka_tls"] = dict(events=count, topic=topic, brokers=brokers, hindsight_seconds=wall,
                                       raw_seconds=raw_wall, confluent_python_seconds=python_wall,
                                       cpu_seconds=cpu, peak_rss=rss)
        self.row("P1", "Kafka archive rate over SASL_SSL (SCRAM-SHA-256)", count / wall, count / raw_wall,
                 "raw rdkafka consumer, same TLS and SASL", "events/s", "higher", 1.0)
        self.row("P1", "Kafka archive rate over SASL_SSL (reference)", count / wall, count / python_wall,
                 "confluent-kafka Python consumer, same TLS and SASL", "events/s", "higher")

    def backlog(self, data, data_count, count):
        """P8: peak RSS of `hindsight archive`, default settings, draining a
        backlog of `count` events (the P1 data sent count / data_count times,
        so the data file stays small). The topic and the archive are deleted
        afterwards: Tansu keeps its memory storage in RAM."""
        if count % data_count:
            raise SystemExit(f"--backlog-events ({count}) must be a multiple of --kafka-events ({data_count})")
        topic = f"bench-backlog-{self.run_id}"
        self.topic(topic)
        log(f"P8: loading a backlog of {count} events into {topic} ({count // data_count} x {data_count})")
        for _ in range(count // data_count):
            self.run([self.example("raw_kafka_producer"), KAFKA, topic, str(data), str(self.timeout)])
        log("P8: hindsight archive draining the backlog")
        data_dir = self.out / "backlog-archive"
        subprocess.run(["rm", "-rf", str(data_dir)], check=True)
        config = (f'data_dir = "{data_dir}"\n[[sources]]\ntype = "kafka"\nname = "backlog"\n'
                  f'brokers = ["{KAFKA}"]\ntopics = ["{topic}"]\ngroup_id = "hindsight-{topic}"\n')
        try:
            wall, cpu, rss = self.archive("backlog-archive", config, data_dir, "backlog", count)
        finally:
            self.run(["tansu", "topic", "delete", topic, "--broker", f"tcp://{KAFKA}"])
        subprocess.run(["rm", "-rf", str(data_dir)], check=True)
        self.facts["backlog"] = dict(events=count, topic=topic, hindsight_seconds=wall, cpu_seconds=cpu,
                                     peak_rss=rss)
        self.row("P8", f"ingester peak RSS, {count} event backlog", rss / 2**20, 256, "target 256 MiB",
                 "MiB", "lower", 1.0, note=f"{count / wall:.0f} events/s, {cpu / count * 1e6:.1f} µs CPU/event")

    def storage(self, data_dir, count):
        """P4: bytes per event in the archive against NDJSON, zstd -3 and pyarrow Parquet of the same rows."""
        log("P4: storage")
        parquet_bytes = sum(p.stat().st_size for p in Path(data_dir).rglob("*.parquet")
                            if ".staging" not in p.parts)
        _, out = self.run([sys.executable, HERE / "storage_baselines.py", str(data_dir), str(self.out / "storage")])
        baselines = json.loads(out)
        self.facts["storage"] = dict(hindsight_bytes=parquet_bytes, **baselines)
        per_event = parquet_bytes / count
        self.row("P4", "stored bytes per event vs NDJSON", per_event, baselines["ndjson_bytes"] / count,
                 "raw NDJSON", "B/event", "lower")
        self.row("P4", "stored bytes per event vs zstd -3", per_event, baselines["ndjson_zstd3_bytes"] / count,
                 "zstd -3 NDJSON", "B/event", "lower", 0.8)
        self.row("P4", "stored bytes per event vs pyarrow", per_event, baselines["pyarrow_zstd_bytes"] / count,
                 "pyarrow zstd Parquet", "B/event", "lower")

    def amqp_archive(self, data, count):
        """P3: RabbitMQ archive rate against a raw lapin consumer on the same queue contents."""
        exchange = f"bench-x-{self.run_id}"
        raw_queue, hindsight_queue = f"bench-raw-{self.run_id}", f"bench-hs-{self.run_id}"

        def declare(channel):
            channel.exchange_declare(exchange, "fanout", durable=True)
            for queue in (raw_queue, hindsight_queue):
                channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "classic"})
                channel.queue_bind(queue, exchange)
        self.amqp(declare)
        log(f"P3: publishing {count} events to both queues")
        self.run([self.example("raw_lapin_publisher"), AMQP, exchange, str(data), str(self.timeout)])

        log("P3 baseline: raw lapin consumer")
        raw_wall, _ = self.run([self.example("raw_lapin_consumer"), AMQP, raw_queue, str(count), str(self.timeout)])
        log("P3: hindsight archive")
        data_dir = self.out / "amqp-archive"
        subprocess.run(["rm", "-rf", str(data_dir)], check=True)
        config = (f'data_dir = "{data_dir}"\n[[sources]]\ntype = "amqp"\nname = "bench-amqp"\n'
                  f'url = "{AMQP}"\nqueue = "{hindsight_queue}"\n[[sources.bindings]]\nexchange = "{exchange}"\n')
        wall, cpu, rss = self.archive("amqp-archive", config, data_dir, "bench-amqp", count)
        self.facts["amqp"] = dict(events=count, hindsight_seconds=wall, raw_seconds=raw_wall, cpu_seconds=cpu,
                                  peak_rss=rss)
        self.row("P3", "RabbitMQ archive rate (ack after commit)", count / wall, count / raw_wall,
                 "raw lapin consumer", "events/s", "higher", 0.9)
        self.amqp(lambda channel: [channel.queue_delete(q) for q in (raw_queue, hindsight_queue)]
                  + [channel.exchange_delete(exchange)])
        return data_dir

    def replay_kafka(self, data_dir, topic, data, count):
        """P7: replay to Kafka against a raw idempotent producer sending the same payloads."""
        target, baseline = f"{topic}-replay", f"{topic}-raw"
        self.topic(target)
        self.topic(baseline)
        log("P7 baseline: raw rdkafka producer (idempotent, acks=all)")
        raw_wall, _ = self.run([self.example("raw_kafka_producer"), KAFKA, baseline, str(data), str(self.timeout)])
        log("P7: hindsight replay to Kafka")
        wall, _ = self.run([str(self.bin), "--data-dir", str(data_dir), "replay", "run", "--source", "bench",
                            "--topic", topic, "--kafka", KAFKA, "--to-topic", target])
        # The same replay without the six provenance headers, which the raw
        # producer does not send: what the headers cost.
        bare_target = f"{topic}-replay-bare"
        self.topic(bare_target)
        bare_wall, _ = self.run([str(self.bin), "--data-dir", str(data_dir), "replay", "run", "--source", "bench",
                                 "--topic", topic, "--kafka", KAFKA, "--to-topic", bare_target, "--no-provenance"])
        self.facts["replay_kafka"] = dict(events=count, hindsight_seconds=wall, raw_seconds=raw_wall,
                                          no_provenance_seconds=bare_wall)
        self.row("P7", "replay rate to Kafka", count / wall, count / raw_wall, "raw rdkafka producer",
                 "events/s", "higher", 0.9)
        self.row("P7", "replay rate to Kafka, --no-provenance", count / bare_wall, count / raw_wall,
                 "raw rdkafka producer", "events/s", "higher")

    def replay_amqp(self, data_dir, data, count):
        """P7: replay to RabbitMQ with confirms against raw lapin publishing the same payloads."""
        pairs = {kind: (f"bench-{kind}-x-{self.run_id}", f"bench-{kind}-q-{self.run_id}") for kind in ("replay", "raw", "bare")}

        def declare(channel):
            for exchange, queue in pairs.values():
                channel.exchange_declare(exchange, "fanout", durable=True)
                channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "classic"})
                channel.queue_bind(queue, exchange)
        self.amqp(declare)
        log("P7 baseline: raw lapin publisher with confirms")
        raw_wall, _ = self.run([self.example("raw_lapin_publisher"), AMQP, pairs["raw"][0], str(data),
                                str(self.timeout)])
        log("P7: hindsight replay to RabbitMQ")
        wall, _ = self.run([str(self.bin), "--data-dir", str(data_dir), "replay", "run", "--source", "bench-amqp",
                            "--amqp", AMQP, "--to-exchange", pairs["replay"][0]])
        bare_wall, _ = self.run([str(self.bin), "--data-dir", str(data_dir), "replay", "run", "--source", "bench-amqp",
                                 "--amqp", AMQP, "--to-exchange", pairs["bare"][0], "--no-provenance"])
        self.facts["replay_amqp"] = dict(events=count, hindsight_seconds=wall, raw_seconds=raw_wall,
                                         no_provenance_seconds=bare_wall)
        self.row("P7", "replay rate to RabbitMQ (confirms)", count / wall, count / raw_wall,
                 "raw lapin publisher", "events/s", "higher", 0.9)
        self.row("P7", "replay rate to RabbitMQ, --no-provenance", count / bare_wall, count / raw_wall,
                 "raw lapin publisher", "events/s", "higher")

        def check(channel):
            for exchange, queue in pairs.values():
                # Confirms are in; give the queue a moment to report them all.
                for _ in range(50):
                    queued = channel.queue_declare(queue, passive=True).method.message_count
                    if queued >= count:
                        break
                    time.sleep(0.1)
                if queued != count:
                    raise SystemExit(f"{queue} holds {queued} messages after publishing {count}")
        self.amqp(check)

        def delete(channel):
            for exchange, queue in pairs.values():
                channel.queue_delete(queue)
                channel.exchange_delete(exchange)
        self.amqp(delete)

    def serve_queries(self, data_dir, runs, config=None, name="serve", token=None):
        """Runs the P5 queries (queries.py) against a `hindsight serve` over
        `data_dir` (with `config`, whose data_dir it is, when given) and
        DuckDB over the same files; returns queries.py's results."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        where = ["--config", str(config)] if config else ["--data-dir", str(data_dir)]
        with open(self.out / f"{name}.log", "w") as server_log:
            server = subprocess.Popen([str(self.bin), *where, "serve", "--listen", f"127.0.0.1:{port}"],
                                      stdout=server_log, stderr=subprocess.STDOUT)
            try:
                for _ in range(300):
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                        break
                    except OSError:
                        if server.poll() is not None:
                            raise SystemExit(f"hindsight serve exited ({server.returncode}); see {name}.log")
                        time.sleep(0.1)
                else:
                    raise SystemExit(f"hindsight serve did not start; see {name}.log")
                _, out = self.run([sys.executable, HERE / "queries.py", str(data_dir),
                                   f"http://127.0.0.1:{port}", str(runs), *([token] if token else [])])
            finally:
                server.terminate()
                server.wait(timeout=30)
        return json.loads(out)

    def queries(self, count, runs):
        """P5/P6: hot query latency, Hindsight's HTTP SQL API against DuckDB over the same files."""
        data_dir = self.out / f"query-archive-{count}"
        if not (data_dir / "catalog.db").exists():
            log(f"P5: archiving {count} demo events for the queries")
            subprocess.run(["rm", "-rf", str(data_dir)], check=True)
            wall, _ = self.run([str(self.bin), "demo", "--events", str(count), "--no-serve",
                                "--data-dir", str(data_dir)])
            self.facts["demo_archive_seconds"] = wall
        results = self.serve_queries(data_dir, runs)
        self.facts["queries"] = dict(events=count, runs=runs, results=results)
        for result in results:
            self.row("P5", f"query: {result['name']}", result["hindsight_ms"], result["duckdb_ms"],
                     "DuckDB", "ms (median)", "lower", 0.5,
                     note="" if result["same_answer"] else "answers differ")

    def compaction(self, count, quiet_count, runs):
        """Compaction (compaction.py): files, bytes per event (P4), merge
        throughput and P5/P6 query latency before and after `hindsight compact`."""
        import compaction
        compaction.run(self, log, count, quiet_count, runs)

    def tables(self, count):
        """Iceberg tables (tables.py): table sync cost, and reads through PyIceberg."""
        import tables
        tables.run(self, log, count)

    # ---------------------------------------------------------------- report

    def schemas(self, count):
        """Schema-aware payloads (schemas.py): decode_payload against fastavro."""
        import schemas
        schemas.run(self, log, count)

    def report(self, mode):
        lines = [f"Mode: {mode}, {self.args.profile} build. Machine: {machine()}."
                 + (" Smoke figures (tiny data, often a dev build) check that the harness works;"
                    " they say nothing about performance." if mode == "smoke" else ""), "",
                 "| figure | what | Hindsight | baseline | ratio | target | |",
                 "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            ratio = f"{r['ratio']:.2f}×" if r["ratio"] is not None else "-"
            target = "" if r["target"] is None else ("≥ " if r["better"] == "higher" else "≤ ") + f"{r['target']}×"
            met = {True: "met", False: "missed", None: ""}[r["met"]]
            lines.append(f"| {r['figure']} | {r['what']} | {r['hindsight']:.4g} {r['unit']} | "
                         f"{r['baseline']:.4g} ({r['baseline_name']}) | {ratio} | {target} | {met} {r['note']}|")
        table = "\n".join(lines)
        (self.out / "results.md").write_text(table + "\n")
        (self.out / "results.json").write_text(json.dumps(dict(mode=mode, machine=machine(), rows=self.rows,
                                                               facts=self.facts), indent=2))
        print(table)


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} × {cpu}, {memory:.0f} GiB RAM"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny data, fewer runs: checks the harness (CI)")
    parser.add_argument("--only", default="kafka,kafka-tls,storage,amqp,replay,query,backlog",
                        help="comma-separated parts: kafka (P1 P2), kafka-tls (P1 over SASL_SSL), "
                             "storage (P4), amqp (P3), backlog (P8), "
                             "replay-kafka, replay-amqp or replay (P7), query (P5); "
                             "storage and replay-kafka archive from Kafka first, replay-amqp from RabbitMQ; "
                             "not by default: compaction (files, P4, P5/P6 before and after "
                             "`hindsight compact`, on demo data; needs no services), "
                             "tables (Iceberg table sync and PyIceberg reads, on demo data; no services), "
                             "schemas (decode_payload over Avro events against fastavro; needs Tansu), "
                             "access (P5 queries as a scoped analyst under a redaction policy against an admin)")
    parser.add_argument("--kafka-events", type=int)
    parser.add_argument("--amqp-events", type=int)
    parser.add_argument("--query-events", type=int)
    parser.add_argument("--backlog-events", type=int, help="P8 backlog, a multiple of --kafka-events")
    parser.add_argument("--tls-events", type=int, help="P1 over SASL_SSL")
    parser.add_argument("--compaction-events", type=int,
                        help="events of the compaction archive (default 5000000; --smoke 50000)")
    parser.add_argument("--tables-events", type=int,
                        help="events of the tables archive (default 1000000; --smoke 20000)")
    parser.add_argument("--schemas-events", type=int,
                        help="Avro events of the schemas section (default 1000000; --smoke 2000)")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--out", default=None, help="work and result directory")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds any one step may take")
    parser.add_argument("--profile", choices=["release", "dev"],
                        help="cargo profile of the binaries: release (default), dev for --smoke")
    args = parser.parse_args()
    mode = "smoke" if args.smoke else "full"
    args.profile = args.profile or ("dev" if args.smoke else "release")
    kafka_events, amqp_events, query_events, runs, backlog_events = SIZES[mode]
    backlog_events = args.backlog_events or backlog_events
    kafka_events = args.kafka_events or kafka_events
    amqp_events = args.amqp_events or amqp_events
    query_events = args.query_events or query_events
    runs = args.runs or runs
    if args.out is None:
        target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/hindsight/target"))
        args.out = str(target / "bench" / mode)
    parts = set(args.only.split(","))
    if "replay" in parts:
        parts |= {"replay-kafka", "replay-amqp"}
    compaction_events, quiet_events = COMPACTION_EVENTS[mode]
    compaction_events = args.compaction_events or compaction_events
    bench = Bench(args)
    started = time.monotonic()
    if parts & BROKER_PARTS:
        bench.check_services()
        data = bench.data_file(max(kafka_events, amqp_events))
        kafka_data = bench.head(data, kafka_events)
        amqp_data = bench.head(data, amqp_events)
    elif not bench.bin.exists():
        raise SystemExit(f"{bench.bin} is missing; build it with: cargo build --profile {args.profile} --bin hindsight")
    if parts & {"kafka", "storage", "replay-kafka"}:
        kafka_dir, topic = bench.kafka(kafka_data, kafka_events)
        if "storage" in parts:
            bench.storage(kafka_dir, kafka_events)
        if "replay-kafka" in parts:
            bench.replay_kafka(kafka_dir, topic, kafka_data, kafka_events)
    if "kafka-tls" in parts:
        tls_events = min(args.tls_events or TLS_EVENTS[mode], max(kafka_events, amqp_events))
        bench.kafka_tls(bench.head(data, tls_events), tls_events)
    if parts & {"amqp", "replay-amqp"}:
        amqp_dir = bench.amqp_archive(amqp_data, amqp_events)
        if "replay-amqp" in parts:
            bench.replay_amqp(amqp_dir, amqp_data, amqp_events)
    if "query" in parts:
        bench.queries(query_events, runs)
    if "backlog" in parts:
        bench.backlog(kafka_data, kafka_events, backlog_events)
    if "compaction" in parts:
        bench.compaction(compaction_events, quiet_events, runs)
    if "tables" in parts:
        bench.tables(args.tables_events or TABLES_EVENTS[mode])
    if "access" in parts:
        import access
        access.run(bench, log, query_events, runs)
    if "schemas" in parts:
        bench.schemas(args.schemas_events or SCHEMAS_EVENTS[mode])
    bench.facts["total_seconds"] = time.monotonic() - started
    bench.report(mode)
    log(f"done in {time.monotonic() - started:.0f}s; results in {bench.out}")


if __name__ == "__main__":
    main()
