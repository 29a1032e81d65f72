"""Runs SQL queries with DuckDB over an archive's Parquet files, for comparison.

usage: duckdb_queries.py PARQUET_GLOB < queries.json > results.json

It defines the view `events` over the files (with `payload_text`, as
Hindsight's own view), runs each query of the JSON list, and prints a JSON
list: for each query, its rows as objects (column name -> value), or
{"error": message}. Values are JSON scalars: timestamps as ISO 8601 UTC text,
bytes as hex, decimals as floats.
"""
import datetime
import decimal
import json
import sys

import duckdb


def plain(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def main():
    glob = sys.argv[1]
    queries = json.load(sys.stdin)
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute(
        "CREATE VIEW events AS SELECT *, try(decode(payload)) AS payload_text "
        f"FROM read_parquet('{glob}', hive_partitioning = false)"
    )
    results = []
    for sql in queries:
        try:
            cursor = connection.execute(sql)
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, (plain(v) for v in row))) for row in cursor.fetchall()]
            results.append(rows)
        except Exception as error:  # reported back to the Rust test, which fails
            results.append({"error": str(error)})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
