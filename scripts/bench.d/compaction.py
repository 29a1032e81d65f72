"""The `compaction` section of scripts/bench (`scripts/bench --only compaction`):
what `hindsight compact` does to an archive of thousands of small ingest
files. Called from bench.py as `compaction.run(bench, log, ...)`.

The archive is `hindsight demo` data, not the P1 Kafka data: compaction only
touches closed hours, and the P1 records all carry the time they were sent,
so none of their hours is closed. The demo spreads its event times over the
6 hours ending now; `[flush] max_rows = 38000` makes it write segments the
size P1's 1-second flush writes at P1's ~38k events/s.

Measured on that archive, before and after two `hindsight compact --json`
passes (the first merges the closed hours; the second, with grace 0s,
deletes the retired input objects):
- segment files on disk and live catalog segments;
- stored bytes per event (live catalog `byte_size`), and against `zstd -3`
  of the NDJSON of the same rows (P4, storage_baselines.py);
- merge throughput, against pyarrow rewriting the same ingest files at the
  same zstd level on one thread (the merge runs on one thread too);
- the five P5/P6 queries against DuckDB over the same files;
- files per partition per UTC day, for a busy topic (orders, above) and a
  quiet one (shipments of a second small archive, `[flush] max_rows = 100`;
  the pipeline polls the demo 4096 events at a time, so its batches hold
  4096 events, and the 38000 of the big one 40960). A quiet partition-day
  becomes one `hour=all` file only once the UTC day has closed, which the
  demo's 6-hour window reaches only before 06:00 UTC: the rows say whether
  each day had closed.

Also a script, run by the section in a subprocess (so it has a timeout):
  compaction.py pyarrow-rewrite ARCHIVE_DIR OUT_FILE ZSTD_LEVEL   (prints JSON)
  compaction.py hive-check ARCHIVE_DIR                            (prints JSON)
"""
import datetime
import json
import resource
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = "demo"
BUSY_TOPIC = "orders"
QUIET_TOPIC = "shipments"
# P1's flush: 1 s at P1's ~38k events/s (BENCHMARKS.md).
P1_FLUSH_ROWS = 38_000
QUIET_FLUSH_ROWS = 100
SETTLE = "1m"
SETTLE_SECONDS = 60
ZSTD_LEVEL = 9  # compaction.zstd_level, the default
QUIET_DAY_BYTES = 33_554_432  # compaction.quiet_day_bytes, the default
FULL_SCANS = ("counts by topic and hour", "top 10 keys")  # P6
DEMO_NOTE = ("demo data, not the P1 Kafka data (compaction needs closed hours; P1's records all carry "
             "the current time); [flush] max_rows = 38000 emulates P1's 1 s flush at ~38k events/s")


def batches_note(before, events):
    # The pipeline polls the demo source 4096 events at a time, so a batch
    # holds max_rows rounded up to a multiple of 4096 (40960 for 38000).
    batches = before["ingest_batches"]
    return f"{batches} ingest batch(es), {events / max(batches, 1):.0f} events each on average"


def config_text(data_dir, max_rows):
    # The busy archive is compacted hour by hour whatever its size (a smoke
    # archive would otherwise count as quiet and wait for its day to close);
    # the quiet archive keeps the default quiet_day_bytes.
    quiet = "quiet_day_bytes = 0\n" if max_rows == P1_FLUSH_ROWS else ""
    return (f'data_dir = "{data_dir}"\n'
            f"[flush]\nmax_rows = {max_rows}\n"
            f'[compaction]\nenabled = false\nsettle = "{SETTLE}"\ngrace = "0s"\nzstd_level = {ZSTD_LEVEL}\n{quiet}')


def connect(data_dir):
    return closing(sqlite3.connect(f"file:{data_dir}/catalog.db?mode=ro", uri=True, timeout=10))


def state(data_dir):
    """Segment files on disk and what the catalog holds live."""
    files = sum(1 for _ in (Path(data_dir) / "segments").rglob("*.parquet"))
    with connect(data_dir) as db:
        segments, rows, size, compacted, compacted_rows = db.execute(
            "SELECT count(*), coalesce(sum(row_count), 0), coalesce(sum(byte_size), 0), "
            "coalesce(sum(compaction_level > 0), 0), "
            "coalesce(sum(CASE WHEN compaction_level > 0 THEN row_count ELSE 0 END), 0) "
            "FROM segments WHERE state = 'committed' AND retired_at IS NULL").fetchone()
        retired = db.execute("SELECT count(*) FROM segments WHERE retired_at IS NOT NULL").fetchone()[0]
        # One catalog commit (one committed_at) per flushed batch.
        batches = db.execute("SELECT count(DISTINCT committed_at) FROM segments WHERE state = 'committed' "
                             "AND retired_at IS NULL AND compaction_level = 0").fetchone()[0]
    return dict(files=files, segments=segments, rows=rows, bytes=size, compacted_segments=compacted,
                compacted_rows=compacted_rows, retired_rows_in_catalog=retired, ingest_batches=batches)


def maintenance_runs(data_dir):
    with connect(data_dir) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(
            "SELECT kind, dry_run, status, segments_in, segments_out, rows_in, rows_out, bytes_in, bytes_out, "
            "started_at, finished_at FROM maintenance_runs ORDER BY started_at")]


def day_of(micros):
    return datetime.datetime.fromtimestamp(micros // 1_000_000, datetime.timezone.utc).date()


def partition_days(data_dir, topic):
    """{date: {partition: dict(files, bytes, day_files)}} of the live segments
    of `topic`, by the UTC date of each segment's first event."""
    days = {}
    with connect(data_dir) as db:
        for partition, first, size, uri in db.execute(
                "SELECT partition_id, min_event_time, byte_size, uri FROM segments "
                "WHERE state = 'committed' AND retired_at IS NULL AND source = ? AND topic = ?",
                (SOURCE, topic)):
            cell = days.setdefault(day_of(first).isoformat(), {}).setdefault(
                partition, dict(files=0, bytes=0, day_files=0))
            cell["files"] += 1
            cell["bytes"] += size
            cell["day_files"] += "/hour=all/" in uri
    return days


def build(bench, log, name, events, max_rows):
    """A fresh demo archive of `events` events written in batches of `max_rows`."""
    data_dir = bench.out / name
    config = bench.out / f"{name}.toml"
    subprocess.run(["rm", "-rf", str(data_dir)], check=True, timeout=600)
    config.write_text(config_text(data_dir, max_rows))
    log(f"compaction: archiving {events} demo events into {data_dir} ([flush] max_rows = {max_rows})")
    wall, _ = bench.run([str(bench.bin), "--config", str(config), "demo", "--no-serve",
                         "--events", str(events), "--seed", "7"])
    before = state(data_dir)
    if before["rows"] != events:
        raise SystemExit(f"demo archived {before['rows']} events, not {events}; see {config}")
    return data_dir, config, wall, before


def compact(bench, log, config):
    """One `hindsight compact --json` pass; returns (report, wall s, CPU s).
    The CPU time is the child's (user + sys), from RUSAGE_CHILDREN around it."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, out = bench.run([str(bench.bin), "--config", str(config), "compact", "--json"])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    report = json.loads(out)
    log(f"compaction: {report['jobs']} job(s), {report['segments_in']} -> {report['segments_out']} segments, "
        f"{report['bytes_in'] / 1e6:.1f} -> {report['bytes_out'] / 1e6:.1f} MB in {report['seconds']:.1f} s "
        f"(wall {wall:.1f} s, CPU {cpu:.1f} s)")
    if report["jobs_failed"] or report["jobs_skipped"]:
        raise SystemExit(f"compaction: {report['jobs_failed']} job(s) failed, {report['jobs_skipped']} skipped")
    return report, wall, cpu


def compact_twice(bench, log, data_dir, config, events):
    """The merging pass, then the pass that deletes the retired objects."""
    first = compact(bench, log, config)
    compacted_at = time.time()
    second = compact(bench, log, config)
    after = state(data_dir)
    if after["rows"] != events:
        raise SystemExit(f"after compaction the catalog holds {after['rows']} live events, not {events}")
    return first, second, after, compacted_at


def run(bench, log, events, quiet_events, runs):
    """The section: rows for the printed table, details in bench.facts."""
    facts = bench.facts.setdefault("compaction", {})

    # 1-2. The archive of thousands of files, before.
    data_dir, config, demo_wall, before = build(bench, log, "compaction-archive", events, P1_FLUSH_ROWS)
    log(f"compaction: before: {before['files']} files, {before['segments']} live segments, "
        f"{before['bytes'] / events:.1f} B/event")
    busy_before = partition_days(data_dir, BUSY_TOPIC)

    # 4. The P4 baselines over the same rows (the live files are all the files now).
    log("compaction: P4 baselines (NDJSON, zstd -3, pyarrow) over the same rows")
    work = bench.out / "compaction-storage"
    try:
        _, out = bench.run([sys.executable, HERE / "storage_baselines.py", str(data_dir), str(work)])
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=True, timeout=600)  # gigabytes of NDJSON at 5M
    baselines = json.loads(out)
    if baselines["rows"] != events:
        raise SystemExit(f"storage_baselines.py read {baselines['rows']} rows, not {events}")

    # The throughput baseline, on the ingest files while they exist.
    log(f"compaction: baseline: pyarrow rewrite of the ingest files at zstd {ZSTD_LEVEL}, one thread")
    rewrite_out = bench.out / "compaction-pyarrow.parquet"
    try:
        _, out = bench.run([sys.executable, Path(__file__).resolve(), "pyarrow-rewrite", str(data_dir),
                            str(rewrite_out), str(ZSTD_LEVEL)])
    finally:
        rewrite_out.unlink(missing_ok=True)
    rewrite = json.loads(out)

    # 5. The queries before.
    log(f"compaction: P5/P6 queries before compaction ({before['files']} files)")
    queries_before = bench.serve_queries(data_dir, runs, config=config, name="compaction-serve-before")

    # 3a. Column copy on a copy of the archive: the same merge without
    # decoding and re-encoding (compaction.column_copy = true).
    copy_dir = bench.out / "compaction-archive-copy"
    copy_config = bench.out / "compaction-archive-copy.toml"
    subprocess.run(["rm", "-rf", str(copy_dir)], check=True, timeout=600)
    subprocess.run(["cp", "-a", str(data_dir), str(copy_dir)], check=True, timeout=1800)
    copy_config.write_text(config_text(copy_dir, P1_FLUSH_ROWS).replace("[compaction]\n", "[compaction]\ncolumn_copy = true\n"))
    log("compaction: hindsight compact --json with column_copy = true, on a copy of the archive")
    try:
        (copy_report, copy_wall, copy_cpu), _, copy_after, _ = compact_twice(bench, log, copy_dir, copy_config, events)
    finally:
        subprocess.run(["rm", "-rf", str(copy_dir)], check=True, timeout=600)

    # 3. Compaction.
    log(f"compaction: hindsight compact --json (zstd {ZSTD_LEVEL}), twice")
    (report, wall, cpu), (sweep, sweep_wall, _), after, compacted_at = \
        compact_twice(bench, log, data_dir, config, events)
    log(f"compaction: after: {after['files']} files, {after['segments']} live segments, "
        f"{after['bytes'] / events:.1f} B/event")
    busy_after = partition_days(data_dir, BUSY_TOPIC)
    stray = after["files"] != after["segments"]
    if stray:
        log(f"compaction: WARNING: {after['files']} files on disk but {after['segments']} live segments: "
            "DuckDB reads the files, so its answers count the difference")
    _, out = bench.run([sys.executable, Path(__file__).resolve(), "hive-check", str(data_dir)])
    hive = json.loads(out)
    log(f"compaction: DuckDB over the tree with hive_partitioning = true: {hive}")
    if not hive["error"] and hive["rows"] != events:
        log(f"compaction: WARNING: DuckDB with hive partitioning read {hive['rows']} rows, not {events}")

    # 5. The queries after.
    log(f"compaction: P5/P6 queries after compaction ({after['files']} files)")
    queries_after = bench.serve_queries(data_dir, runs, config=config, name="compaction-serve-after")

    # 6. A quiet archive: every partition-day far below quiet_day_bytes.
    quiet_dir, quiet_config, _, quiet_before = build(bench, log, "compaction-quiet-archive", quiet_events,
                                                     QUIET_FLUSH_ROWS)
    quiet_days_before = partition_days(quiet_dir, QUIET_TOPIC)
    log("compaction: quiet archive: hindsight compact --json, twice")
    (quiet_report, _, _), _, quiet_after, quiet_compacted_at = \
        compact_twice(bench, log, quiet_dir, quiet_config, quiet_events)
    quiet_days_after = partition_days(quiet_dir, QUIET_TOPIC)

    facts.update(events=events, flush_max_rows=P1_FLUSH_ROWS, demo_seconds=demo_wall, before=before, after=after,
                 compact=dict(report=report, wall_seconds=wall, cpu_seconds=cpu),
                 sweep=dict(report=sweep, wall_seconds=sweep_wall), storage_baselines=baselines,
                 pyarrow_rewrite=rewrite, hive_check=hive, queries_before=queries_before,
                 queries_after=queries_after, maintenance_runs=maintenance_runs(data_dir),
                 busy_days=dict(topic=BUSY_TOPIC, before=busy_before, after=busy_after),
                 quiet=dict(events=quiet_events, flush_max_rows=QUIET_FLUSH_ROWS, topic=QUIET_TOPIC,
                            before=quiet_before, after=quiet_after, report=quiet_report,
                            days_before=quiet_days_before, days_after=quiet_days_after))

    # The rows.
    share = f"{after['compacted_rows']} of {events} events in compacted segments (the open hour is left as written)"
    hive_note = (f"DuckDB cannot read the tree with hive_partitioning = true: {hive['error']}" if hive["error"] else
                 f"DuckDB reads the tree with hive_partitioning = true: {hive['rows']} rows, hour as {hive['hour_type']}")
    bench.row("compaction", f"segment files on disk, {events} events", after["files"], before["files"],
              "before compaction", "files", "lower",
              note=f"{DEMO_NOTE}; {batches_note(before, events)}; {hive_note}")
    bench.row("compaction", "live segments in the catalog", after["segments"], before["segments"],
              "before compaction", "segments", "lower", note=share)
    bench.row("compaction", "stored bytes per event (live catalog byte_size)", after["bytes"] / events,
              before["bytes"] / events, "before compaction", "B/event", "lower", note=share)
    rate = report["bytes_in"] / max(report["seconds"], 1e-9) / 1e6
    bench.row("compaction", f"merge throughput, input bytes, zstd {ZSTD_LEVEL}", rate,
              rewrite["bytes_in"] / max(rewrite["seconds"], 1e-9) / 1e6,
              f"pyarrow read + rewrite, zstd {ZSTD_LEVEL}, one thread, all ingest files", "MB/s per core", "higher",
              note=f"the merge runs on one thread; {report['segments_in']} -> {report['segments_out']} segments, "
                   f"{report['bytes_in'] / 1e6:.0f} MB in {report['seconds']:.1f} s (process wall {wall:.1f} s, "
                   f"CPU {cpu:.1f} s); pyarrow writes no bloom filters or page index and checks nothing")
    copy_rate = copy_report["bytes_in"] / max(copy_report["seconds"], 1e-9) / 1e6
    bench.row("compaction", "merge throughput, input bytes, column copy (compaction.column_copy)", copy_rate, rate,
              f"re-encode at zstd {ZSTD_LEVEL}, same archive", "MB/s per core", "higher",
              note=f"{copy_report['segments_in']} -> {copy_report['segments_out']} segments, "
                   f"{copy_report['bytes_in'] / 1e6:.0f} -> {copy_report['bytes_out'] / 1e6:.0f} MB in "
                   f"{copy_report['seconds']:.1f} s (CPU {copy_cpu:.1f} s); keeps the ingest zstd level and row groups")
    bench.row("compaction", "stored bytes per event after column copy", copy_after["bytes"] / events,
              after["bytes"] / events, f"after re-encoding at zstd {ZSTD_LEVEL}", "B/event", "lower")
    facts.update(column_copy=dict(report=copy_report, wall_seconds=copy_wall, cpu_seconds=copy_cpu, after=copy_after))
    zstd_per_event = baselines["ndjson_zstd3_bytes"] / events
    bench.row("P4", "stored bytes per event vs zstd -3, before compaction (demo data)", before["bytes"] / events,
              zstd_per_event, "zstd -3 NDJSON", "B/event", "lower", note=DEMO_NOTE)
    bench.row("P4", "stored bytes per event vs zstd -3, after compaction (demo data)", after["bytes"] / events,
              zstd_per_event, "zstd -3 NDJSON", "B/event", "lower", 0.8, note=share)
    for phase, results, state_ in (("before", queries_before, before), ("after", queries_after, after)):
        for result in results:
            full_scan = result["name"] in FULL_SCANS
            key_lookup = result["name"].startswith("key lookup")
            notes = [] if result["same_answer"] else ["answers differ"]
            if phase == "after" and stray:
                notes.append("stray files on disk")
            bench.row("P6" if full_scan else "P5",
                      f"query: {result['name']}, {phase} compaction ({state_['files']} files, demo data)",
                      result["hindsight_ms"], result["duckdb_ms"], "DuckDB, same files", "ms (median)", "lower",
                      0.5 if key_lookup else 1.0, note=", ".join(notes))
    day_rows(bench, BUSY_TOPIC, f"{events}-event archive", busy_before, busy_after, compacted_at,
             batches_note(before, events))
    day_rows(bench, QUIET_TOPIC, f"{quiet_events}-event archive, max_rows {QUIET_FLUSH_ROWS}", quiet_days_before,
             quiet_days_after, quiet_compacted_at, batches_note(quiet_before, quiet_events))


def day_rows(bench, topic, label, before, after, compacted_at, batches):
    """Mean live files per partition per UTC day, after against before, and
    whether the day had closed (quiet days merge whole only then)."""
    closed_by = compacted_at - SETTLE_SECONDS
    for date in sorted(set(before) | set(after)):
        start = datetime.datetime.fromisoformat(date).replace(tzinfo=datetime.timezone.utc)
        closed = (start + datetime.timedelta(days=1)).timestamp() <= closed_by
        was, now = before.get(date, {}), after.get(date, {})
        mean = lambda cells: sum(c["files"] for c in cells.values()) / len(cells) if cells else 0.0
        per_partition_mib = max((c["bytes"] for c in was.values()), default=0) / 2**20
        quiet = per_partition_mib * 2**20 < QUIET_DAY_BYTES
        day_files = sum(c["day_files"] for c in now.values())
        note = (f"{'quiet' if quiet else 'busy'}: largest partition-day {per_partition_mib:.1f} MiB, "
                f"{'below' if quiet else 'at or above'} quiet_day_bytes (32 MiB), so "
                f"{'one file per day once the UTC day has closed' if quiet else 'merged hour by hour'}; "
                f"this UTC day {'had closed' if closed else 'was still open'} at compaction; "
                f"{day_files} hour=all file(s); files per partition after: "
                + ", ".join(f"p{p}={c['files']}" for p, c in sorted(now.items())) + f"; {batches}")
        bench.row("compaction", f"files per partition per day, {topic} ({label}), {date}", mean(now), mean(was),
                  "before compaction", "files", "lower", note=note)


# ---------------------------------------------------------------- subprocess modes

def pyarrow_rewrite(archive, out, level):
    """Reads every segment file of the archive and writes them as one
    Parquet file at zstd `level`, on one thread; streams file by file."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    files = sorted((Path(archive) / "segments").rglob("*.parquet"))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    writer, rows, bytes_in = None, 0, 0
    for path in files:
        bytes_in += path.stat().st_size
        table = pq.read_table(path, use_threads=False)
        if writer is None:
            schema = table.schema
            writer = pq.ParquetWriter(out, schema, compression="zstd", compression_level=level)
        elif not table.schema.equals(schema, check_metadata=False):
            table = table.cast(schema)
        writer.write_table(table.replace_schema_metadata(schema.metadata))
        rows += table.num_rows
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - started
    done = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps(dict(files=len(files), rows=rows, bytes_in=bytes_in,
                          bytes_out=Path(out).stat().st_size if writer else 0, seconds=seconds,
                          cpu_seconds=done.ru_utime - usage.ru_utime + done.ru_stime - usage.ru_stime)))


def hive_check(archive):
    """Whether DuckDB reads the compacted tree as a Hive dataset (hour=all
    directories make `hour` text)."""
    import duckdb
    try:
        rows, hour_type = duckdb.connect().execute(
            f"SELECT count(*), any_value(typeof(hour)) FROM read_parquet('{archive}/segments/**/*.parquet', "
            "hive_partitioning = true)").fetchone()
        print(json.dumps(dict(rows=rows, hour_type=hour_type, error=None)))
    except duckdb.Error as error:
        print(json.dumps(dict(rows=None, hour_type=None, error=str(error))))


if __name__ == "__main__":
    if sys.argv[1:2] == ["pyarrow-rewrite"] and len(sys.argv) == 5:
        pyarrow_rewrite(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1:2] == ["hive-check"] and len(sys.argv) == 3:
        hive_check(sys.argv[2])
    else:
        sys.exit(__doc__)
