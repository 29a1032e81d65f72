"""Reads Hindsight's Iceberg tables through PyIceberg's SqlCatalog, or through
Hindsight's REST catalog with --uri http://HOST:PORT/iceberg (an outside reader).

usage: iceberg_read.py --uri SQLALCHEMY_URI|REST_URL [--token T] [--catalog hindsight]
                       [--s3-endpoint URL --s3-key K --s3-secret S --s3-region R]
                       COMMAND ...

  tables                                   -> [["namespace", "table"], ...] (every namespace, every table)
  count NS TABLE [--snapshot ID]           -> {"count": n, "snapshot_id": id_or_null, "files": planned_files,
                                               "metadata_location": the table's current metadata file}
  ids NS TABLE --out FILE [--snapshot ID]  -> writes the event ids, sorted, one per line, to FILE;
                                              prints {"count": n}
  sample NS TABLE --ids ID1,ID2,... [--encoding base64|hex]
                                           -> {"ID": {"payload": bytes_or_null, "key": bytes_or_null,
                                                      "headers": [[name, bytes_or_null], ...]}, ...}
  plan NS TABLE --from-us A --to-us B      -> {"planned": files planned for A <= event_time < B,
                                               "total": files planned with no filter}
  snapshots NS TABLE                       -> [{"snapshot_id", "parent_id", "sequence_number",
                                                "timestamp_ms", "operation", "summary"}, ...], oldest first
  manifests NS TABLE                       -> the current snapshot's manifests:
                                              [{"path", "spec_id", "added", "existing", "deleted"}, ...]

Tables are pairs (namespace, table), never joined with a dot: topic names may
hold dots. Bytes are base64 unless --encoding hex (the hex of `hindsight query`'s
JSON). SQLite URIs: sqlite:////abs/path/catalog.db; PostgreSQL:
postgresql+psycopg2://user:pw@host:port/db. The catalog tables are never
created here (init_catalog_tables=false): the reader writes nothing.
Errors go to stderr with exit status 1.
"""
import argparse
import base64
import json
import sys


def catalog_from(args):
    if args.uri.startswith("http://") or args.uri.startswith("https://"):
        from pyiceberg.catalog.rest import RestCatalog

        properties = {"uri": args.uri}
        if args.token is not None:
            properties["token"] = args.token
        return RestCatalog(args.catalog, **properties)

    from pyiceberg.catalog.sql import SqlCatalog

    properties = {"uri": args.uri, "init_catalog_tables": "false"}
    s3 = {
        "s3.endpoint": args.s3_endpoint,
        "s3.access-key-id": args.s3_key,
        "s3.secret-access-key": args.s3_secret,
        "s3.region": args.s3_region,
    }
    properties.update({name: value for name, value in s3.items() if value is not None})
    return SqlCatalog(args.catalog, **properties)


def load(catalog, args):
    return catalog.load_table((args.namespace, args.table))


def scan_of(table, snapshot, **options):
    if snapshot is not None:
        if table.metadata.snapshot_by_id(snapshot) is None:
            raise ValueError(f"no snapshot {snapshot} in {table.name()}")
        options["snapshot_id"] = snapshot
    return table.scan(**options)


def event_ids(table, snapshot):
    arrow = scan_of(table, snapshot, selected_fields=("event_id",)).to_arrow()
    return arrow.column("event_id").to_pylist()


def encode(value, encoding):
    if value is None:
        return None
    if encoding == "hex":
        return bytes(value).hex()
    return base64.b64encode(bytes(value)).decode("ascii")


def command_tables(catalog, _args):
    found = []

    def walk(namespace):
        for child in catalog.list_namespaces(namespace):
            for identifier in catalog.list_tables(child):
                found.append([".".join(identifier[:-1]), identifier[-1]])
            walk(child)

    walk(())
    return sorted(found)


def command_count(catalog, args):
    table = load(catalog, args)
    snapshot = args.snapshot
    if snapshot is None and table.current_snapshot() is not None:
        snapshot = table.current_snapshot().snapshot_id
    files = len(list(scan_of(table, args.snapshot).plan_files()))
    count = len(event_ids(table, args.snapshot))
    return {
        "count": count,
        "snapshot_id": snapshot,
        "files": files,
        "metadata_location": table.metadata_location,
    }


def command_ids(catalog, args):
    ids = sorted(event_ids(load(catalog, args), args.snapshot))
    with open(args.out, "w", encoding="utf-8") as out:
        for event_id in ids:
            out.write(event_id)
            out.write("\n")
    return {"count": len(ids)}


def command_sample(catalog, args):
    from pyiceberg.expressions import In

    wanted = [event_id for event_id in args.ids.split(",") if event_id]
    if not wanted:
        return {}
    table = load(catalog, args)
    arrow = table.scan(
        row_filter=In("event_id", wanted),
        selected_fields=("event_id", "payload", "key", "headers"),
    ).to_arrow()
    sample = {}
    for row in arrow.to_pylist():
        if row["event_id"] in sample:
            continue  # a redelivered copy: the first one stands for the id
        sample[row["event_id"]] = {
            "payload": encode(row["payload"], args.encoding),
            "key": encode(row["key"], args.encoding),
            "headers": [
                [header["name"], encode(header["value"], args.encoding)]
                for header in (row["headers"] or [])
            ],
        }
    return sample


def command_plan(catalog, args):
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    table = load(catalog, args)
    window = And(
        GreaterThanOrEqual("event_time", args.from_us),
        LessThan("event_time", args.to_us),
    )
    planned = len(list(table.scan(row_filter=window).plan_files()))
    total = len(list(table.scan().plan_files()))
    return {"planned": planned, "total": total}


def command_snapshots(catalog, args):
    table = load(catalog, args)
    snapshots = []
    for snapshot in sorted(table.snapshots(), key=lambda s: (s.sequence_number or 0, s.timestamp_ms)):
        summary = snapshot.summary
        operation = summary.operation.value if summary is not None else None
        properties = {}
        if summary is not None:
            properties = {str(name): str(value) for name, value in summary.additional_properties.items()}
            properties["operation"] = operation
        snapshots.append(
            {
                "snapshot_id": snapshot.snapshot_id,
                "parent_id": snapshot.parent_snapshot_id,
                "sequence_number": snapshot.sequence_number,
                "timestamp_ms": snapshot.timestamp_ms,
                "operation": operation,
                "summary": properties,
            }
        )
    return snapshots


def command_manifests(catalog, args):
    """The current snapshot's manifests, with each one's entries by status."""
    table = load(catalog, args)
    snapshot = table.current_snapshot()
    if snapshot is None:
        return []
    manifests = []
    for manifest in snapshot.manifests(table.io):
        statuses = {"added": 0, "existing": 0, "deleted": 0}
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
            statuses[entry.status.name.lower()] += 1
        manifests.append({"path": manifest.manifest_path, "spec_id": manifest.partition_spec_id, **statuses})
    return manifests


def parser():
    root = argparse.ArgumentParser(description="Read Hindsight's Iceberg tables with PyIceberg.")
    root.add_argument("--uri", required=True, help="SQLAlchemy URI of the catalog database, or the REST catalog's URL")
    root.add_argument("--token", help="the bearer token for the REST catalog")
    root.add_argument("--catalog", default="hindsight", help="the Iceberg catalog name")
    root.add_argument("--s3-endpoint")
    root.add_argument("--s3-key")
    root.add_argument("--s3-secret")
    root.add_argument("--s3-region")
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("tables")

    def table_command(name):
        command = commands.add_parser(name)
        command.add_argument("namespace")
        command.add_argument("table")
        return command

    count = table_command("count")
    count.add_argument("--snapshot", type=int)
    ids = table_command("ids")
    ids.add_argument("--out", required=True)
    ids.add_argument("--snapshot", type=int)
    sample = table_command("sample")
    sample.add_argument("--ids", required=True, help="comma-separated event ids")
    sample.add_argument("--encoding", choices=("base64", "hex"), default="base64")
    plan = table_command("plan")
    plan.add_argument("--from-us", type=int, required=True)
    plan.add_argument("--to-us", type=int, required=True)
    table_command("snapshots")
    table_command("manifests")
    return root


COMMANDS = {
    "tables": command_tables,
    "count": command_count,
    "ids": command_ids,
    "sample": command_sample,
    "plan": command_plan,
    "snapshots": command_snapshots,
    "manifests": command_manifests,
}


def main():
    args = parser().parse_args()
    try:
        result = COMMANDS[args.command](catalog_from(args), args)
    except Exception as error:  # noqa: BLE001 - every failure is one line and exit 1
        print(f"iceberg_read.py {args.command}: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
