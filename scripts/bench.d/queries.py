"""P5/P6: hot query latency, Hindsight (HTTP SQL API of a running `hindsight
serve`) against DuckDB (one in-process connection) over the same Parquet files.

usage: queries.py ARCHIVE_DIR HINDSIGHT_URL RUNS [TOKEN]  (prints JSON)

Each query runs once to warm up, then RUNS times; the median wall time is
reported. Both sides return their full result; the row counts and the first
row are compared.
"""
import datetime
import json
import statistics
import sys
import time
import urllib.error
import urllib.request

import duckdb


def main():
    archive, url, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    token = sys.argv[4] if len(sys.argv) > 4 else None
    duck = duckdb.connect()
    duck.execute("SET TimeZone = 'UTC'")
    duck.execute("CREATE VIEW events AS SELECT *, try(decode(payload)) AS payload_text "
                 f"FROM read_parquet('{archive}/segments/**/*.parquet', hive_partitioning = false)")
    low, high = duck.execute("SELECT epoch_us(min(event_time)), epoch_us(max(event_time)) FROM events").fetchall()[0]
    hour = datetime.datetime.fromtimestamp((low + high) // 2 // 1_000_000, datetime.timezone.utc) \
        .replace(minute=0, second=0, microsecond=0)
    start = hour.strftime("%Y-%m-%dT%H:00:00Z")
    end = (hour + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:00:00Z")
    key = duck.execute("SELECT key FROM events WHERE key IS NOT NULL LIMIT 1").fetchall()[0][0].decode()
    queries = [
        ("key lookup in a 1 h range",
         f"SELECT event_time, \"offset\", payload_text FROM events WHERE key = CAST('{key}' AS BYTEA) "
         f"AND event_time >= TIMESTAMP '{start}' AND event_time < TIMESTAMP '{end}' ORDER BY event_time, \"offset\"",
         f"SELECT event_time, \"offset\", payload_text FROM events WHERE key = '{key}'::BLOB "
         f"AND event_time >= TIMESTAMPTZ '{start}' AND event_time < TIMESTAMPTZ '{end}' ORDER BY event_time, \"offset\""),
        ("counts by topic and hour",
         "SELECT topic, date_trunc('hour', event_time) AS hour, count(*) AS n FROM events GROUP BY 1, 2 ORDER BY 1, 2",
         "SELECT topic, date_trunc('hour', event_time) AS hour, count(*) AS n FROM events GROUP BY 1, 2 ORDER BY 1, 2"),
        ("JSON field filter",
         "SELECT count(*) AS n FROM events WHERE json_get_str(payload_text, 'currency') = 'EUR'",
         "SELECT count(*) AS n FROM events WHERE try(json_extract_string(payload_text, '$.currency')) = 'EUR'"),
        ("full-text contains",
         "SELECT count(*) AS n FROM events WHERE payload_text LIKE '%dhl%'",
         "SELECT count(*) AS n FROM events WHERE payload_text LIKE '%dhl%'"),
        ("top 10 keys",
         "SELECT key, count(*) AS n FROM events GROUP BY key ORDER BY n DESC, key LIMIT 10",
         "SELECT key, count(*) AS n FROM events GROUP BY key ORDER BY n DESC, key LIMIT 10"),
    ]

    def hindsight(sql):
        headers = {"Accept": "application/x-ndjson", "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"{url}/api/v1/sql", data=json.dumps({"sql": sql}).encode(),
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                return [json.loads(line) for line in response.read().splitlines() if line.strip()]
        except urllib.error.HTTPError as error:
            sys.exit(f"hindsight refused {sql!r}: {error.code} {error.read().decode(errors='replace')}")

    def duckdb_rows(sql):
        # Arrow, not Python objects: the whole result, without per-value conversion.
        return duck.sql(sql).to_arrow_table()

    def median_ms(run, sql):
        run(sql)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            result = run(sql)
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times), result

    results = []
    for name, ours, theirs in queries:
        hindsight_ms, our_rows = median_ms(hindsight, ours)
        duckdb_ms, their_rows = median_ms(duckdb_rows, theirs)
        same = len(our_rows) == their_rows.num_rows
        if same and our_rows and "n" in our_rows[0]:
            same = our_rows[0]["n"] == their_rows.column("n")[0].as_py()
        results.append(dict(name=name, hindsight_ms=hindsight_ms, duckdb_ms=duckdb_ms, rows=len(our_rows),
                            same_answer=same, sql=ours))
    print(json.dumps(results))


main()
