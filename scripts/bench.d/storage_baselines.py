"""P4 baselines: the rows of an archive as raw NDJSON, zstd -3 of that NDJSON,
and zstd Parquet written by pyarrow (default settings, level 3).

usage: storage_baselines.py ARCHIVE_DIR WORK_DIR  (prints sizes as JSON)

"The same rows" are what a user would otherwise keep of each Kafka record:
topic, partition, offset, timestamp, key, headers and payload. Hindsight's
segments hold more per event (event_id, ingest_time, payload_size, empty
AMQP columns, bloom filters, page index).
"""
import base64
import json
import os
import subprocess
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq


def main():
    archive, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    glob = f"{archive}/segments/**/*.parquet"
    table = duckdb.connect().sql(
        "SELECT topic, partition, \"offset\", epoch_ms(event_time) AS timestamp_ms, key, headers, payload "
        f"FROM read_parquet('{glob}', hive_partitioning = false) ORDER BY topic, partition, \"offset\"").to_arrow_table()
    ndjson = os.path.join(work, "events.ndjson")
    with open(ndjson, "w") as out:
        columns = table.to_pydict()
        for index in range(table.num_rows):
            payload = columns["payload"][index]
            try:
                payload_value = json.loads(payload)
            except (ValueError, UnicodeDecodeError):
                payload_value = base64.b64encode(payload).decode()
            key = columns["key"][index]
            out.write(json.dumps({
                "topic": columns["topic"][index], "partition": columns["partition"][index],
                "offset": columns["offset"][index], "timestamp": columns["timestamp_ms"][index],
                "key": key.decode("utf-8", "replace") if key is not None else None,
                "headers": {h["name"]: (h["value"] or b"").decode("utf-8", "replace") for h in columns["headers"][index]},
                "payload": payload_value}, separators=(",", ":")) + "\n")
    subprocess.run(["zstd", "-3", "-q", "-f", ndjson, "-o", ndjson + ".zst"], check=True)
    parquet = os.path.join(work, "events.parquet")
    pq.write_table(table, parquet, compression="zstd")
    print(json.dumps({"rows": table.num_rows, "ndjson_bytes": os.path.getsize(ndjson),
                      "ndjson_zstd3_bytes": os.path.getsize(ndjson + ".zst"),
                      "pyarrow_zstd_bytes": os.path.getsize(parquet)}))


main()
