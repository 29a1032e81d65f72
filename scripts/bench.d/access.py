"""The `access` section of scripts/bench (`scripts/bench --only access`):
what scopes and redaction cost on the P5 queries. Called from bench.py as
`access.run(bench, log, count, runs)`; needs no services.

One demo archive, one `hindsight serve` with two tokens: an admin (no
scope, nothing masked: the baseline) and an analyst scoped to the demo's
three topics by name (every segment goes through the scope check) under a
redaction policy that masks `$.customer` in every topic (every payload is
parsed, masked and written again before any query sees it). The policy
masks no field the queries look at, so both answer the same; the harness
checks that, then reports each query's median time as the analyst over its
time as the admin.
"""
import json
import subprocess


def run(bench, log, count, runs):
    data_dir = bench.out / f"access-archive-{count}"
    if not (data_dir / "catalog.db").exists():
        log(f"access: archiving {count} demo events")
        subprocess.run(["rm", "-rf", str(data_dir)], check=True, timeout=600)
        bench.run([str(bench.bin), "demo", "--events", str(count), "--no-serve", "--data-dir", str(data_dir)])
    tokens = {}
    entries = []
    for name, role, topics in [("bench-admin", "admin", []),
                               ("bench-analyst", "analyst", ["orders", "payments", "shipments"])]:
        command = [str(bench.bin), "token", "create", name, "--role", role, "--config-only", "--json"]
        for topic in topics:
            command += ["--topic", topic]
        _, out = bench.run(command)
        made = json.loads(out)
        tokens[name] = made["token"]
        entries.append(made["config"])
    config = bench.out / "access.toml"
    config.write_text(f'data_dir = "{data_dir}"\n' + "".join(entries) +
                      '[[redaction]]\njson_paths = ["$.customer"]\n')
    admin = bench.serve_queries(data_dir, runs, config=config, name="access-admin",
                                token=tokens["bench-admin"])
    analyst = bench.serve_queries(data_dir, runs, config=config, name="access-analyst",
                                  token=tokens["bench-analyst"])
    bench.facts["access"] = dict(events=count, runs=runs, admin=admin, analyst=analyst)
    for plain, scoped in zip(admin, analyst):
        if plain["rows"] != scoped["rows"]:
            raise SystemExit(f"access: {plain['name']} returns {scoped['rows']} rows under scope and "
                             f"redaction, {plain['rows']} without")
        bench.row("access", f"{plain['name']} as a scoped analyst under a redaction policy",
                  scoped["hindsight_ms"], plain["hindsight_ms"],
                  "the same query as an admin (no scope, nothing masked)", "ms (median)", "lower")
