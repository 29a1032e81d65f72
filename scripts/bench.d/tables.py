"""The `tables` section of scripts/bench (`scripts/bench --only tables`): what
the Iceberg tables cost and what they give readers. Called from bench.py as
`tables.run(bench, log, events)`; needs no services.

On a demo archive of EVENTS events written in P1-sized batches
(`[flush] max_rows = 38000`):
- `hindsight table sync` from nothing (every footer read, one snapshot per
  table), again with nothing to do, and after 10% more events arrived
  (the incremental pass `hindsight archive` runs every half max_lag);
- the metadata it wrote (bytes per data file);
- a full count through PyIceberg (the SQL catalog, every data file) against
  DuckDB reading the segments root as a Hive dataset: the same files, one
  reader through the table, the other through the directory;
- PyIceberg's planned files for a one-hour event-time filter, against all.

Also a script, run by the section in a subprocess (so it has a timeout):
  tables.py pyiceberg-count CATALOG_DB            (prints JSON)
  tables.py duckdb-count DATA_DIR                 (prints JSON)
  tables.py footers DATA_DIR                      (prints JSON)
"""
import json
import subprocess
import sys
import time
from pathlib import Path

FLUSH_ROWS = 38_000
HOUR_US = 3_600_000_000


def config_text(data_dir):
    return (f'data_dir = "{data_dir}"\n[flush]\nmax_rows = {FLUSH_ROWS}\n'
            "[compaction]\nenabled = false\n")


def sync(bench, config):
    wall, out = bench.run([str(bench.bin), "--config", str(config), "table", "sync", "--json"])
    return wall, json.loads(out)


def run(bench, log, events):
    facts = bench.facts.setdefault("tables", {})
    data_dir = bench.out / "tables-archive"
    config = bench.out / "tables-archive.toml"
    subprocess.run(["rm", "-rf", str(data_dir)], check=True, timeout=600)
    config.write_text(config_text(data_dir))
    log(f"tables: archiving {events} demo events into {data_dir}")
    bench.run([str(bench.bin), "--config", str(config), "demo", "--no-serve", "--events", str(events),
               "--seed", "7"])

    log("tables: first table sync (every footer)")
    first_wall, first = sync(bench, config)
    files = sum(report["total_files"] for report in first)
    records = sum(report["total_records"] for report in first)
    if records != events:
        raise SystemExit(f"the tables hold {records} events, not {events}")
    idle_wall, idle = sync(bench, config)
    if any(report["changed"] for report in idle):
        raise SystemExit(f"a second sync changed a table: {idle}")
    more = events // 10
    bench.run([str(bench.bin), "--config", str(config), "demo", "--no-serve", "--events", str(more),
               "--seed", "8"])
    incremental_wall, incremental = sync(bench, config)
    added = sum(report["added_files"] for report in incremental)
    metadata_bytes = sum(p.stat().st_size for p in (data_dir / "tables").rglob("*") if p.is_file())

    log("tables: a full count through PyIceberg and through DuckDB over the segments root")
    catalog_db = data_dir / "catalog.db"
    _, out = bench.run([sys.executable, Path(__file__).resolve(), "pyiceberg-count", str(catalog_db)])
    pyiceberg = json.loads(out)
    _, out = bench.run([sys.executable, Path(__file__).resolve(), "duckdb-count", str(data_dir)])
    duckdb = json.loads(out)
    total = events + more
    if pyiceberg["rows"] != total or duckdb["rows"] != total:
        raise SystemExit(f"counts differ from {total}: PyIceberg {pyiceberg}, DuckDB {duckdb}")

    facts.update(events=events, files=files, first_sync_seconds=first_wall, idle_sync_seconds=idle_wall,
                 incremental_sync_seconds=incremental_wall, incremental_files=added,
                 metadata_bytes=metadata_bytes, pyiceberg=pyiceberg, duckdb=duckdb)
    _, out = bench.run([sys.executable, Path(__file__).resolve(), "footers", str(data_dir)])
    footers = json.loads(out)
    segment_bytes = sum(p.stat().st_size for p in (data_dir / "segments").rglob("*.parquet"))
    facts.update(pyarrow_footers=footers, segment_bytes=segment_bytes)
    bench.row("tables", f"first table sync, {files} data files ({events} events), process start to exit",
              first_wall, footers["seconds"] * files / footers["files"],
              f"pyarrow reading the same {files} footers", "s", "lower")
    bench.row("tables", "table sync with nothing to do", idle_wall, first_wall, "the first sync",
              "s", "lower")
    bench.row("tables", f"incremental table sync, +{added} files (+{more} events)", incremental_wall,
              first_wall, "the first sync", "s", "lower")
    bench.row("tables", f"table metadata on disk ({files + added} data files)", metadata_bytes, segment_bytes,
              "the segments", "B", "lower")
    bench.row("tables", "full count of every table through PyIceberg (SQL catalog)", pyiceberg["seconds"],
              duckdb["seconds"], "DuckDB over the segments root", "s", "lower")
    bench.row("tables", "files planned for one hour of event time (orders)", pyiceberg["hour_planned"],
              pyiceberg["hour_total"], "every file of the table", "files", "lower")


def pyiceberg_count(catalog_db):
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan
    started = time.monotonic()
    catalog = SqlCatalog("hindsight", uri=f"sqlite:///{catalog_db}")
    rows = 0
    newest_hour = None
    for namespace in catalog.list_namespaces():
        for identifier in catalog.list_tables(namespace):
            table = catalog.load_table(identifier)
            rows += table.scan(selected_fields=("event_id",)).to_arrow().num_rows
    seconds = time.monotonic() - started
    orders = catalog.load_table(("demo", "orders"))
    times = orders.scan(selected_fields=("event_time",)).to_arrow().column("event_time")
    newest = max(times.to_pylist())
    newest_hour = int(newest.timestamp() * 1_000_000) // HOUR_US * HOUR_US - HOUR_US
    hour = And(GreaterThanOrEqual("event_time", newest_hour), LessThan("event_time", newest_hour + HOUR_US))
    planned = len(list(orders.scan(row_filter=hour).plan_files()))
    total = len(list(orders.scan().plan_files()))
    print(json.dumps(dict(rows=rows, seconds=seconds, hour_planned=planned, hour_total=total)))


def footers(data_dir):
    """pyarrow reading every segment's footer (statistics included): the
    least a table writer reads."""
    import pyarrow.parquet as pq
    files = sorted((Path(data_dir) / "segments").rglob("*.parquet"))
    started = time.monotonic()
    for path in files:
        pq.read_metadata(path)
    print(json.dumps(dict(files=len(files), seconds=time.monotonic() - started)))


def duckdb_count(data_dir):
    import duckdb
    started = time.monotonic()
    rows = duckdb.connect().execute(f"SELECT count(event_id) FROM read_parquet('{data_dir}/segments/**/*.parquet', "
                                    "hive_partitioning = true)").fetchall()[0][0]
    print(json.dumps(dict(rows=rows, seconds=time.monotonic() - started)))


if __name__ == "__main__":
    if sys.argv[1] == "pyiceberg-count":
        pyiceberg_count(sys.argv[2])
    elif sys.argv[1] == "footers":
        footers(sys.argv[2])
    elif sys.argv[1] == "duckdb-count":
        duckdb_count(sys.argv[2])
    else:
        raise SystemExit(__doc__)
