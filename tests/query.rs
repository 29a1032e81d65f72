//! SQL and the HTTP API over real archives: results against DuckDB over the
//! same files (the demo archive and a million events archived from Kafka),
//! catalog pruning, streaming formats, event search and fetch, hostile
//! requests, a truncated segment, limits, and the OpenAPI document.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{
    archive_demo, hex, hindsight, http_get, parquet_files, read_until, run_ok, spawn_with_stdout,
    terminate, START_SERVICES,
};

// ---------------------------------------------------------------- helpers --

/// One query, in Hindsight's SQL and in DuckDB's (they differ in function names).
struct Comparison {
    name: &'static str,
    ours: String,
    duckdb: String,
}

fn same(name: &'static str, sql: &str) -> Comparison {
    Comparison {
        name,
        ours: sql.to_owned(),
        duckdb: sql.to_owned(),
    }
}

fn pair(name: &'static str, ours: &str, duckdb: &str) -> Comparison {
    Comparison {
        name,
        ours: ours.to_owned(),
        duckdb: duckdb.to_owned(),
    }
}

/// Payloads that are whole JSON objects: both engines parse them the same way
/// (DuckDB rejects truncated JSON that a lazy parser could still read a field from).
const WHOLE_JSON: &str = "payload_text LIKE '{%}'";

/// Queries both archives answer: filters, aggregates, JSON fields, headers,
/// time ranges, group by topic and hour. `hour` is an RFC 3339 hour inside the
/// archive, `key` a key that occurs in it.
fn comparisons(hour: &str, next_hour: &str, key: &str) -> Vec<Comparison> {
    let time_range = format!("event_time >= '{hour}' AND event_time < '{next_hour}'");
    vec![
        same("count", "SELECT count(*) AS n FROM events"),
        same(
            "count per topic",
            "SELECT topic AS t, count(*) AS n FROM events GROUP BY topic",
        ),
        same(
            "offsets per partition",
            "SELECT topic AS t, \"partition\" AS p, count(*) AS n, min(\"offset\") AS lo, \
             max(\"offset\") AS hi, count(DISTINCT \"offset\") AS d FROM events GROUP BY 1, 2",
        ),
        same(
            "distinct event ids",
            "SELECT count(DISTINCT event_id) AS n FROM events",
        ),
        same(
            "payloads that are not UTF-8",
            "SELECT topic AS t, count(*) AS n FROM events WHERE payload_text IS NULL GROUP BY 1",
        ),
        same(
            "empty payloads",
            "SELECT count(*) AS n, sum(payload_size) AS s FROM events WHERE payload_size = 0",
        ),
        same(
            "payload sizes per topic",
            "SELECT topic AS t, avg(payload_size) AS a, max(payload_size) AS m, \
             sum(payload_size) AS s FROM events GROUP BY 1",
        ),
        pair(
            "top customers (json string field)",
            &format!(
                "SELECT json_get_str(payload_text, 'customer') AS c, count(*) AS n FROM events \
                 WHERE {WHOLE_JSON} GROUP BY 1 ORDER BY n DESC, c LIMIT 10"
            ),
            &format!(
                "SELECT json_extract_string(payload_text, '$.customer') AS c, count(*) AS n \
                 FROM events WHERE {WHOLE_JSON} GROUP BY 1 ORDER BY n DESC, c LIMIT 10"
            ),
        ),
        pair(
            "totals per currency (json number field)",
            &format!(
                "SELECT json_get_str(payload_text, 'currency') AS c, \
                 sum(json_get_float(payload_text, 'total')) AS s, count(*) AS n FROM events \
                 WHERE {WHOLE_JSON} AND topic LIKE '%orders%' GROUP BY 1"
            ),
            &format!(
                "SELECT json_extract_string(payload_text, '$.currency') AS c, \
                 sum(CAST(json_extract(payload_text, '$.total') AS DOUBLE)) AS s, count(*) AS n \
                 FROM events WHERE {WHOLE_JSON} AND topic LIKE '%orders%' GROUP BY 1"
            ),
        ),
        pair(
            "large payments (json filter)",
            &format!(
                "SELECT count(*) AS n FROM events WHERE {WHOLE_JSON} \
                 AND json_get_float(payload_text, 'amount') > 100"
            ),
            &format!(
                "SELECT count(*) AS n FROM events WHERE {WHOLE_JSON} \
                 AND CAST(json_extract(payload_text, '$.amount') AS DOUBLE) > 100"
            ),
        ),
        pair(
            "nested json path",
            &format!(
                "SELECT json_get_str(payload_text, 'items', 0, 'sku') AS sku, \
                 sum(json_get_int(payload_text, 'items', 0, 'quantity')) AS q FROM events \
                 WHERE {WHOLE_JSON} GROUP BY 1"
            ),
            &format!(
                "SELECT json_extract_string(payload_text, '$.items[0].sku') AS sku, \
                 sum(CAST(json_extract(payload_text, '$.items[0].quantity') AS BIGINT)) AS q \
                 FROM events WHERE {WHOLE_JSON} GROUP BY 1"
            ),
        ),
        pair(
            "json arrow operator",
            &format!(
                "SELECT payload_text ->> 'type' AS kind, count(*) AS n FROM events \
                 WHERE {WHOLE_JSON} GROUP BY 1"
            ),
            &format!(
                "SELECT payload_text ->> '$.type' AS kind, count(*) AS n FROM events \
                 WHERE {WHOLE_JSON} GROUP BY 1"
            ),
        ),
        same(
            "text search in payloads",
            "SELECT topic AS t, count(*) AS n FROM events \
             WHERE payload_text LIKE '%\"currency\":\"EUR\"%' GROUP BY 1",
        ),
        pair(
            "events per topic and hour",
            "SELECT topic AS t, to_char(event_time, '%Y-%m-%dT%H') AS h, count(*) AS n \
             FROM events GROUP BY 1, 2",
            "SELECT topic AS t, strftime(event_time, '%Y-%m-%dT%H') AS h, count(*) AS n \
             FROM events GROUP BY 1, 2",
        ),
        same(
            "one hour range",
            &format!(
                "SELECT topic AS t, count(*) AS n, sum(payload_size) AS s FROM events \
                 WHERE {time_range} GROUP BY 1"
            ),
        ),
        pair(
            "time span",
            "SELECT CAST(min(event_time) AS BIGINT) AS lo, CAST(max(event_time) AS BIGINT) AS hi \
             FROM events",
            "SELECT epoch_us(min(event_time)) AS lo, epoch_us(max(event_time)) AS hi FROM events",
        ),
        pair(
            "key lookup",
            &format!(
                "SELECT topic AS t, \"partition\" AS p, \"offset\" AS o, event_id AS id \
                 FROM events WHERE key = CAST('{key}' AS BYTEA)"
            ),
            &format!(
                "SELECT topic AS t, \"partition\" AS p, \"offset\" AS o, event_id AS id \
                 FROM events WHERE key = '{key}'::BLOB"
            ),
        ),
        pair(
            "key lookup within one hour",
            &format!(
                "SELECT count(*) AS n FROM events WHERE key = CAST('{key}' AS BYTEA) AND {time_range}"
            ),
            &format!("SELECT count(*) AS n FROM events WHERE key = '{key}'::BLOB AND {time_range}"),
        ),
        same(
            "offset range and partition IN list",
            "SELECT topic AS t, count(*) AS n FROM events \
             WHERE \"offset\" BETWEEN 100 AND 2000 AND \"partition\" IN (0, 1) GROUP BY 1",
        ),
        pair(
            "events with a repeated header",
            "SELECT topic AS t, count(*) AS n FROM events WHERE has_header(headers, 'x-retry', '2') \
             GROUP BY 1",
            "SELECT topic AS t, count(*) AS n FROM events WHERE len(list_filter(headers, \
             lambda h: h.name = 'x-retry' AND h.value = '2'::BLOB)) > 0 GROUP BY 1",
        ),
        pair(
            "header values",
            "SELECT header_text(headers, 'event-type') AS e, count(*) AS n FROM events GROUP BY 1",
            "SELECT decode(list_filter(headers, lambda h: h.name = 'event-type')[1].value) AS e, \
             count(*) AS n FROM events GROUP BY 1",
        ),
        pair(
            "header counts",
            "SELECT topic AS t, sum(cardinality(headers)) AS n FROM events GROUP BY 1",
            "SELECT topic AS t, sum(len(headers)) AS n FROM events GROUP BY 1",
        ),
        same(
            "latest two offsets per partition (window)",
            "SELECT t, p, o FROM (SELECT topic AS t, \"partition\" AS p, \"offset\" AS o, \
             row_number() OVER (PARTITION BY topic, \"partition\" ORDER BY \"offset\" DESC) AS r \
             FROM events) WHERE r <= 2",
        ),
        pair(
            "dedup view",
            "SELECT count(*) AS n FROM events_dedup",
            "SELECT count(DISTINCT (source, topic, event_id)) AS n FROM events",
        ),
        same(
            "timestamp types",
            "SELECT timestamp_type AS k, count(*) AS n FROM events GROUP BY 1",
        ),
    ]
}

/// Rows as sorted lists of (column, value), numbers made comparable.
fn canonical(rows: &[Value]) -> Vec<Vec<(String, Value)>> {
    let mut out: Vec<Vec<(String, Value)>> = rows
        .iter()
        .map(|row| {
            let mut pairs: Vec<(String, Value)> = row
                .as_object()
                .unwrap_or_else(|| panic!("row {row} is not an object"))
                .iter()
                .map(|(name, value)| (name.to_lowercase(), number_as_f64(value)))
                .collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            pairs
        })
        .collect();
    out.sort_by_key(|row| serde_json::to_string(row).unwrap());
    out
}

fn number_as_f64(value: &Value) -> Value {
    match value {
        Value::Number(number) => number
            .as_f64()
            .map_or_else(|| value.clone(), |f| serde_json::json!(f)),
        other => other.clone(),
    }
}

fn values_match(ours: &Value, theirs: &Value) -> bool {
    match (ours.as_f64(), theirs.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        _ => ours == theirs,
    }
}

fn rows_match(ours: &[Value], theirs: &[Value]) -> bool {
    let (ours, theirs) = (canonical(ours), canonical(theirs));
    ours.len() == theirs.len()
        && ours.iter().zip(&theirs).all(|(a, b)| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((na, va), (nb, vb))| na == nb && values_match(va, vb))
        })
}

/// Runs `hindsight query --format ndjson`; returns the rows and its stderr.
fn hindsight_rows(data_or_config: &Target, sql: &str) -> (Vec<Value>, String) {
    let output = run_ok(
        data_or_config
            .command()
            .args(["query", "--format", "ndjson", "--stats", sql]),
    );
    let rows = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    (rows, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Runs queries with DuckDB over every Parquet file under `root`.
fn duckdb_rows(root: &Path, queries: &[String]) -> Vec<Vec<Value>> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/duckdb_queries.py"
    );
    let glob = format!("{}/**/*.parquet", root.display());
    let mut child = Command::new("python3")
        .args([script, &glob])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 for duckdb ({e}); run {START_SERVICES}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(queries).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "duckdb failed (is the duckdb pip package installed? run {START_SERVICES})"
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    results
        .into_iter()
        .zip(queries)
        .map(|(result, sql)| match result {
            Value::Array(rows) => rows,
            other => panic!("duckdb could not run {sql}: {other}"),
        })
        .collect()
}

/// The segments-scanned figure of `hindsight query --stats`.
fn scanned_of(stats: &str) -> (u64, u64) {
    let line = stats
        .lines()
        .find(|line| line.starts_with("segments: "))
        .unwrap_or_else(|| panic!("no stats line in {stats:?}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[1].parse().unwrap(), words[4].parse().unwrap())
}

/// How `hindsight` finds the archive: a data directory or a config file.
pub(crate) enum Target {
    DataDir(PathBuf),
    Config(PathBuf),
}

impl Target {
    fn command(&self) -> Command {
        let mut command = hindsight();
        match self {
            Target::DataDir(dir) => command.arg("--data-dir").arg(dir),
            Target::Config(file) => command.arg("--config").arg(file),
        };
        command
    }
}

/// The first whole hour after the archive's oldest event, and the one after.
fn an_hour_inside(target: &Target) -> (String, String) {
    let (rows, _) = hindsight_rows(
        target,
        "SELECT CAST(min(event_time) AS BIGINT) AS lo FROM events",
    );
    let oldest = rows[0]["lo"].as_i64().unwrap();
    let hour = 3_600_000_000i64;
    let start = oldest - oldest.rem_euclid(hour) + hour;
    let format = |micros: i64| hindsight_archive::event::rfc3339(micros).unwrap();
    (format(start), format(start + hour))
}

/// A key of the orders topic with events inside [hour, next_hour).
fn a_key_inside(target: &Target, hour: &str, next_hour: &str) -> String {
    let (rows, _) = hindsight_rows(
        target,
        &format!(
            "SELECT CAST(key AS VARCHAR) AS k FROM events WHERE topic LIKE '%orders%' \
             AND event_time >= '{hour}' AND event_time < '{next_hour}' ORDER BY event_id LIMIT 1"
        ),
    );
    rows[0]["k"]
        .as_str()
        .expect("a key inside the hour")
        .to_owned()
}

fn compare_with_duckdb(target: &Target, files: &Path, queries: &[Comparison]) {
    assert!(queries.len() >= 20, "the acceptance asks for 20 queries");
    let theirs = duckdb_rows(
        files,
        &queries.iter().map(|q| q.duckdb.clone()).collect::<Vec<_>>(),
    );
    let mut failures = Vec::new();
    for (query, expected) in queries.iter().zip(theirs) {
        let started = Instant::now();
        let (ours, stats) = hindsight_rows(target, &query.ours);
        let elapsed = started.elapsed();
        assert!(
            !expected.is_empty(),
            "{}: duckdb returned nothing; the query tests nothing",
            query.name
        );
        println!(
            "{:<45} {:>5} rows  {:>6.0} ms  {}",
            query.name,
            ours.len(),
            elapsed.as_secs_f64() * 1000.0,
            stats.lines().next().unwrap_or_default()
        );
        if !rows_match(&ours, &expected) {
            failures.push(format!(
                "{}:\n  ours:   {:?}\n  duckdb: {:?}",
                query.name,
                canonical(&ours).into_iter().take(5).collect::<Vec<_>>(),
                canonical(&expected).into_iter().take(5).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "results differ from DuckDB:\n{}",
        failures.join("\n")
    );
}

// ------------------------------------------------------------ HTTP client --

pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request on a fresh connection; decodes chunked bodies.
/// `Host` is the address unless `headers` name one.
pub(crate) fn http(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream =
        TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    // The server may answer (413) before reading a large body, then close.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            panic!("truncated chunked body");
        };
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        data = &data[end + 2..];
        if size == 0 {
            return out;
        }
        assert!(data.len() >= size + 2, "truncated chunk");
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn post_sql(address: &str, token: Option<&str>, accept: &str, sql: &str) -> HttpResponse {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![("Accept", accept), ("Content-Type", "application/sql")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer.as_str()));
    }
    http(address, "POST", "/api/v1/sql", &headers, sql.as_bytes())
}

/// A running `hindsight serve`; stopped with SIGTERM when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) address: String,
}

impl Server {
    pub(crate) fn start(target: &Target) -> Server {
        let (child, mut stdout) =
            spawn_with_stdout(target.command().args(["serve", "--listen", "127.0.0.1:0"]));
        let lines = read_until(&mut stdout, "serving the API", Duration::from_secs(60));
        let address = lines
            .last()
            .and_then(|line| line.split("http://").nth(1))
            .and_then(|rest| rest.split('/').next())
            .expect("address in the serving line")
            .to_owned();
        // Keep the pipe open: a closed stdout would kill the server on its next print.
        std::mem::forget(stdout);
        Server { child, address }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let status = terminate(&mut self.child);
            if !std::thread::panicking() {
                assert!(status.success(), "serve did not exit cleanly: {status:?}");
            }
        }
    }
}

pub(crate) fn write_config(directory: &Path, data: &Path, extra: &str) -> PathBuf {
    let file = directory.join("hindsight.toml");
    std::fs::write(
        &file,
        format!("data_dir = \"{}\"\n{extra}\n", data.display()),
    )
    .unwrap();
    file
}

// ------------------------------------------------------------------ tests --

#[test]
fn sql_over_the_demo_archive_matches_duckdb() {
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), 60_000);
    let target = Target::DataDir(data.path().to_owned());
    let (hour, next_hour) = an_hour_inside(&target);
    let key = a_key_inside(&target, &hour, &next_hour);
    let mut queries = comparisons(&hour, &next_hour, &key);
    queries.push(same(
        "correlation id lookup",
        "SELECT topic AS t, count(*) AS n FROM events WHERE correlation_id = 'ord-4200000042' GROUP BY 1",
    ));
    queries.push(same(
        "message id prefix",
        "SELECT count(*) AS n FROM events WHERE message_id LIKE 'a%'",
    ));
    compare_with_duckdb(&target, data.path(), &queries);

    // Every CLI format carries the same rows.
    let sql = "SELECT topic, \"partition\", \"offset\", payload_text, headers FROM events \
               WHERE topic = 'payments' ORDER BY \"partition\", \"offset\" LIMIT 500";
    let table = run_ok(target.command().args(["query", sql]));
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.trim_end().ends_with("500 rows"), "{table}");
    assert!(table.contains("| topic "), "{table}");
    let json = run_ok(target.command().args(["query", "--format", "json", sql]));
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 500);
    assert_eq!(json[0]["topic"], "payments");
    let csv = run_ok(target.command().args(["query", "--format", "csv", sql]));
    assert_eq!(String::from_utf8(csv.stdout).unwrap().lines().count(), 501);
    // The statement can come from standard input.
    let mut piped = target
        .command()
        .args(["query", "--format", "csv", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    piped
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let piped = piped.wait_with_output().unwrap();
    assert!(piped.status.success());
    assert_eq!(
        String::from_utf8(piped.stdout).unwrap().lines().count(),
        501
    );
    let parquet_file = data.path().join("result.parquet.out");
    let parquet = run_ok(target.command().args(["query", "--format", "parquet", sql]));
    std::fs::write(&parquet_file, parquet.stdout).unwrap();
    assert_eq!(
        crate::util::duckdb_scalar(&format!(
            "SELECT count(*) FROM read_parquet('{}') WHERE topic = 'payments'",
            parquet_file.display()
        )),
        "500"
    );
    // Read-only: refused with the reason, and nothing changed.
    let refused = target
        .command()
        .args(["query", "DROP TABLE events"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("DROP TABLE is not allowed"), "{stderr}");
}

/// Creates a Kafka topic named `<prefix>-<uuid>` on the test broker.
fn create_topic(prefix: &str, partitions: u32) -> String {
    crate::util::create_kafka_topic(
        &format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
        partitions,
    )
}

fn kafka_brokers() -> String {
    crate::util::kafka_brokers()
}

/// Produces the query data set to Kafka, archives it with `hindsight archive`,
/// and returns the config that points at it. The archive spans `span_hours`.
fn archive_from_kafka(directory: &Path, events: u64, span_hours: u64) -> PathBuf {
    let orders = create_topic("q-orders", 4);
    let payments = create_topic("q-payments", 2);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/query_produce.py"
    );
    let started = Instant::now();
    let produced = Command::new("python3")
        .args([
            script,
            &kafka_brokers(),
            &orders,
            &payments,
            &events.to_string(),
            &span_hours.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); set up with {START_SERVICES}"));
    assert!(produced.status.success(), "producing the data set failed");
    println!(
        "produced {events} events in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&produced.stdout).trim()
    );
    let data = directory.join("data");
    let config = directory.join("hindsight.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[flush]
max_rows = 50000
max_age = "2s"
[[sources]]
type = "kafka"
name = "kafka-query"
brokers = ["{brokers}"]
topics = ["{orders}", "{payments}"]
group_id = "g-{orders}"
start = "earliest"
"#,
            data = data.display(),
            brokers = kafka_brokers(),
        ),
    )
    .unwrap();
    let started = Instant::now();
    let (mut archive, _stdout) = spawn_with_stdout(
        hindsight()
            .arg("--config")
            .arg(&config)
            .arg("archive")
            .env("HINDSIGHT_LOG", "warn"),
    );
    let target = Target::Config(config.clone());
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let (rows, _) = hindsight_rows(
            &target,
            "SELECT CAST(COALESCE(sum(\"rows\"), 0) AS BIGINT) AS n FROM segments",
        );
        let archived = rows[0]["n"].as_u64().unwrap_or_default();
        if archived >= events {
            assert_eq!(archived, events, "archived more events than produced");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "archived only {archived} of {events} events"
        );
    }
    let status = terminate(&mut archive);
    assert!(status.success(), "archive did not stop cleanly: {status:?}");
    println!(
        "archived {events} events from kafka in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    config
}

#[test]
fn sql_over_a_million_kafka_events_matches_duckdb_and_key_lookups_prune() {
    const EVENTS: u64 = 1_000_000;
    const SPAN_HOURS: u64 = 72;
    let directory = tempfile::tempdir().unwrap();
    let config = archive_from_kafka(directory.path(), EVENTS, SPAN_HOURS);
    let target = Target::Config(config);
    let data = directory.path().join("data");
    let files = parquet_files(&data).len() as u64;
    println!("{files} segments");

    let (hour, next_hour) = an_hour_inside(&target);
    let key = a_key_inside(&target, &hour, &next_hour);
    // The key-lookup acceptance: one hour, one key, under 10% of segments opened.
    let lookup = format!(
        "SELECT topic, \"partition\", \"offset\" FROM events WHERE key = CAST('{key}' AS BYTEA) \
         AND event_time >= '{hour}' AND event_time < '{next_hour}'"
    );
    let started = Instant::now();
    let (rows, stats) = hindsight_rows(&target, &lookup);
    let (scanned, total) = scanned_of(&stats);
    println!(
        "key lookup in one hour: {} rows, {scanned} of {total} segments opened ({:.1}%), {:.0} ms",
        rows.len(),
        100.0 * scanned as f64 / total as f64,
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(total, files, "every segment is in the catalog");
    assert!(
        scanned * 10 < total,
        "a key lookup in one hour opened {scanned} of {total} segments"
    );
    let (rows_everywhere, stats) = hindsight_rows(
        &target,
        &format!("SELECT count(*) AS n FROM events WHERE key = CAST('{key}' AS BYTEA)"),
    );
    println!(
        "the same key over all time: {} events, {}",
        rows_everywhere[0]["n"],
        stats.lines().next().unwrap_or_default()
    );
    // Inside the opened segments, bloom filters and statistics skip row groups.
    let (plan, _) = hindsight_rows(&target, &format!("EXPLAIN ANALYZE {lookup}"));
    let plan_text = plan
        .iter()
        .filter_map(|row| row["plan"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let pruning = |name: &str| -> (u64, u64) {
        let start = plan_text
            .find(&format!("{name}="))
            .unwrap_or_else(|| panic!("no {name} in the plan:\n{plan_text}"));
        let numbers: Vec<u64> = plan_text[start + name.len() + 1..]
            .split(',')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|word| word.parse().ok())
            .collect();
        (numbers[0], numbers[1])
    };
    let (row_groups, after_statistics) = pruning("row_groups_pruned_statistics");
    let (_, after_bloom) = pruning("row_groups_pruned_bloom_filter");
    println!(
        "inside those segments: {row_groups} row groups, {after_statistics} left after \
         statistics, {after_bloom} read after bloom filters"
    );
    assert!(
        after_bloom < row_groups,
        "statistics and bloom filters on key pruned no row group"
    );

    compare_with_duckdb(&target, &data, &comparisons(&hour, &next_hour, &key));
}

#[test]
fn http_sql_streams_formats_and_events_page_and_fetch() {
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), 20_000);
    let server = Server::start(&Target::DataDir(data.path().to_owned()));
    let address = server.address.as_str();

    // NDJSON by default, one object per row.
    let sql = "SELECT topic, count(*) AS n FROM events GROUP BY topic ORDER BY topic";
    let response = post_sql(address, None, "*/*", sql);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/x-ndjson")
    );
    let rows: Vec<Value> = response
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    let total: u64 = rows.iter().map(|row| row["n"].as_u64().unwrap()).sum();
    assert_eq!(total, 20_000);
    assert!(response.header("x-hindsight-segments-scanned").is_some());

    // CSV, JSON in a body, and Arrow IPC read by pyarrow.
    let response = post_sql(address, None, "text/csv", sql);
    assert_eq!(response.status, 200);
    assert_eq!(response.text().lines().next(), Some("topic,n"));
    assert_eq!(response.text().lines().count(), 4);
    let response = http(
        address,
        "POST",
        "/api/v1/sql?format=json",
        &[("Content-Type", "application/json")],
        serde_json::json!({ "sql": sql }).to_string().as_bytes(),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json().as_array().unwrap().len(), 3);
    let big = "SELECT * FROM events ORDER BY event_id";
    let response = post_sql(address, None, "application/vnd.apache.arrow.stream", big);
    assert_eq!(response.status, 200);
    let arrow_file = data.path().join("result.arrows");
    std::fs::write(&arrow_file, &response.body).unwrap();
    let read = Command::new("python3")
        .args([
            "-c",
            "import pyarrow.ipc, sys; t = pyarrow.ipc.open_stream(sys.argv[1]).read_all(); \
             print(t.num_rows, t.schema.field('payload_text').type)",
        ])
        .arg(&arrow_file)
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "20000 string");

    // Event search: newest first, pages that neither repeat nor skip.
    let filter = "topic=payments&header=event-type%3Dpayment.declined";
    let (expected_rows, _) = {
        let response = post_sql(
            address,
            None,
            "application/x-ndjson",
            "SELECT event_id FROM events WHERE topic = 'payments' \
             AND header_text(headers, 'event-type') = 'payment.declined' \
             ORDER BY event_time DESC, event_id DESC",
        );
        assert_eq!(response.status, 200);
        let ids: Vec<String> = response
            .text()
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()["event_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        (ids, ())
    };
    assert!(expected_rows.len() > 20, "the demo declines some payments");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/events?{filter}&limit=7&cursor={cursor}"),
            None => format!("/api/v1/events?{filter}&limit=7"),
        };
        let response = http(address, "GET", &path, &[], b"");
        assert_eq!(response.status, 200, "{}", response.text());
        let page = response.json();
        for event in page["events"].as_array().unwrap() {
            assert_eq!(event["topic"], "payments");
            seen.push(event["event_id"].as_str().unwrap().to_owned());
        }
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen, expected_rows,
        "pages must walk the result newest first"
    );
    assert!(pages > 3);

    // Key, text, JSON field and time filters agree with SQL.
    let response = post_sql(
        address,
        None,
        "*/*",
        "SELECT CAST(key AS VARCHAR) AS k FROM events WHERE topic = 'orders' ORDER BY event_id LIMIT 1",
    );
    let key = serde_json::from_str::<Value>(response.text().trim()).unwrap()["k"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_query = format!("key={key}");
    let key_condition = format!("key = CAST('{key}' AS BYTEA)");
    let checks = [
        (key_query.as_str(), key_condition.as_str()),
        ("contains=%22carrier%22%3A%22dhl%22", "payload_text LIKE '%\"carrier\":\"dhl\"%'"),
        ("json=currency%3DGBP&json=items.0.sku%3Dmug", "(payload_text ->> 'currency') = 'GBP' AND json_get_str(payload_text, 'items', 0, 'sku') = 'mug'"),
    ];
    for (query, condition) in checks {
        let response = post_sql(
            address,
            None,
            "application/x-ndjson",
            &format!("SELECT count(*) AS n FROM events WHERE {condition}"),
        );
        let expected = serde_json::from_str::<Value>(response.text().trim()).unwrap()["n"]
            .as_u64()
            .unwrap();
        assert!(
            expected > 0,
            "{condition} matches nothing: the check tests nothing"
        );
        let response = http(
            address,
            "GET",
            &format!("/api/v1/events?{query}&limit=1000"),
            &[],
            b"",
        );
        assert_eq!(response.status, 200, "{}", response.text());
        let found = response.json()["events"].as_array().unwrap().len() as u64;
        assert_eq!(found, expected.min(1000), "{query}");
    }

    // Fetch one whole event; its bytes equal DuckDB's reading of the file.
    let id = &seen[0];
    let response = http(address, "GET", &format!("/api/v1/events/{id}"), &[], b"");
    assert_eq!(response.status, 200, "{}", response.text());
    let event = response.json();
    assert_eq!(event["event_id"], id.as_str());
    assert_eq!(event["copies"], 1);
    let glob = format!("{}/**/*.parquet", data.path().display());
    let payload_hex = crate::util::duckdb_scalar(&format!(
        "SELECT hex(payload) FROM read_parquet('{glob}') WHERE event_id = '{id}'"
    ));
    let payload = decode_base64(event["payload_base64"].as_str().unwrap());
    assert_eq!(hex(&payload), payload_hex.to_lowercase());
    assert_eq!(
        event["payload_text"].as_str().map(str::as_bytes),
        Some(payload.as_slice())
    );
    assert!(event["headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["name"] == "event-type"));
    let response = http(
        address,
        "GET",
        "/api/v1/events/0123456789abcdef0123456789abcdef",
        &[],
        b"",
    );
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["error"], "not_found");

    // /metrics counts the requests by route.
    let (status, metrics) = http_get(address, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("route=\"/api/v1/sql\""),
        "no request counter for /api/v1/sql in {metrics}"
    );
}

fn decode_base64(text: &str) -> Vec<u8> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import base64, sys; sys.stdout.write(base64.b64decode(sys.argv[1]).hex())",
            text,
        ])
        .output()
        .unwrap();
    let hex_text = String::from_utf8(output.stdout).unwrap();
    (0..hex_text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex_text[i..i + 2], 16).unwrap())
        .collect()
}

/// A tiny deterministic generator for hostile inputs.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn a_thousand_hostile_requests_get_4xx_and_the_server_stays_up() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    archive_demo(&data, 5_000);
    const TOKEN: &str = "correct-horse-battery-staple";
    let config = write_config(
        directory.path(),
        &data,
        &format!("[http]\nauth_token = \"{TOKEN}\"\nmax_body_bytes = 65536\n"),
    );
    let server = Server::start(&Target::Config(config));
    let address = server.address.as_str();
    let bearer = format!("Bearer {TOKEN}");

    let refused_sql = [
        "DROP TABLE events",
        "DELETE FROM events_raw",
        "INSERT INTO events_raw SELECT * FROM events_raw",
        "UPDATE events_raw SET topic = 'x'",
        "CREATE TABLE t AS SELECT * FROM events",
        "CREATE VIEW v AS SELECT 1",
        "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
        "COPY (SELECT * FROM events) TO '/tmp/stolen.csv'",
        "SET datafusion.execution.target_partitions = 1000",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM 'file:///etc/shadow'",
        "SELECT * FROM 'https://example.invalid/data.parquet'",
        "SELECT * FROM events e, '/etc/hosts' h",
        "EXPLAIN DROP TABLE events",
        "DROP VIEW events",
        "ALTER TABLE events RENAME TO x",
        "TRUNCATE events_raw",
        "SELECT 1; DROP TABLE events",
        "SELECT * FROM nope",
        "SELECT nope FROM events",
        "SELECT * FROM events WHERE",
        "SELECT json_get_str() FROM events",
        "SELECT CAST('x' AS INT)",
        "SELECT 1 / 0",
        "",
        "   ",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM generate_series('a')",
        "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n FROM r) SELECT * FROM r JOIN nope",
        "SELECT ((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1",
    ];
    let words = [
        "SELECT", "FROM", "WHERE", "events", "(", ")", ",", "*", "GROUP", "BY", "x", "\"", ";",
        "--", "/*", "DROP", "1e999999", "NULL", "JOIN", "ON", "payload", "->>", "::", "$1", "?",
        "\\", "\u{0}", "🦀", "LIMIT", "-1",
    ];
    let bad_parameters = [
        "/api/v1/events?partition=abc",
        "/api/v1/events?limit=0",
        "/api/v1/events?limit=100000",
        "/api/v1/events?limit=-5",
        "/api/v1/events?from=yesterday",
        "/api/v1/events?to=2026-13-45T99:00:00Z",
        "/api/v1/events?cursor=not-a-cursor",
        "/api/v1/events?header=no-equals-sign",
        "/api/v1/events?json=%3Dvalue",
        "/api/v1/events?json=a..b%3D1",
        "/api/v1/events?unknown=1",
        "/api/v1/events?source=a&source=b",
        "/api/v1/events/histogram",
        "/api/v1/events/histogram?step_ms=0",
        "/api/v1/events/histogram?step_ms=1&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z",
        "/api/v1/events/sql?json=a..b%3D1",
        "/api/v1/events?key=%FF%FE",
        "/api/v1/events/not-an-event-id",
        "/api/v1/events/%FF",
        "/api/v1/events/0123456789ABCDEF0123456789ABCDEF",
        "/api/v1/segments?partition=abc",
        "/api/v1/segments?bogus=1",
        "/api/v1/nope",
        "/api/v1/sql?format=table",
        "/api/v1/sql?format=xml",
    ];
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    let mut statuses: BTreeMap<u16, u32> = BTreeMap::new();
    let mut sent = 0;
    let huge = vec![b'x'; 2 * 1024 * 1024];
    while sent < 1000 {
        let response = match sent % 10 {
            0 | 1 => {
                let sql = refused_sql[sent / 10 % refused_sql.len()];
                let response = post_sql(address, Some(TOKEN), "*/*", sql);
                let body = response.json();
                assert!(
                    body["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{sql}: no message in {body}"
                );
                response
            }
            2 | 3 => {
                let mut sql: Vec<&str> = (0..(random.next() % 12 + 1))
                    .map(|_| random.pick(&words))
                    .collect();
                // The only single quote: whatever came before, the string never ends.
                sql.push("\n'unterminated");
                post_sql(address, Some(TOKEN), "*/*", &sql.join(" "))
            }
            4 => {
                let path = bad_parameters[sent / 10 % bad_parameters.len()];
                let method = if path.starts_with("/api/v1/sql") {
                    "POST"
                } else {
                    "GET"
                };
                http(
                    address,
                    method,
                    path,
                    &[
                        ("Authorization", &bearer),
                        ("Content-Type", "application/sql"),
                    ],
                    b"SELECT 1",
                )
            }
            5 => match sent / 10 % 6 {
                0 => http(
                    address,
                    "POST",
                    "/api/v1/sql",
                    &[
                        ("Authorization", &bearer),
                        ("Content-Type", "application/sql"),
                    ],
                    &huge,
                ),
                1 => http(
                    address,
                    "POST",
                    "/api/v1/sql",
                    &[
                        ("Authorization", &bearer),
                        ("Content-Type", "application/sql"),
                    ],
                    b"SELECT '\xff\xfe'",
                ),
                2 => http(
                    address,
                    "POST",
                    "/api/v1/sql",
                    &[
                        ("Authorization", &bearer),
                        ("Content-Type", "application/json"),
                    ],
                    b"{\"sql\": 42}",
                ),
                3 => http(
                    address,
                    "POST",
                    "/api/v1/sql",
                    &[("Authorization", &bearer), ("Content-Type", "image/png")],
                    b"SELECT 1",
                ),
                4 => http(
                    address,
                    "POST",
                    "/api/v1/sql",
                    &[
                        ("Authorization", &bearer),
                        ("Accept", "image/png"),
                        ("Content-Type", "application/sql"),
                    ],
                    b"SELECT 1",
                ),
                _ => http(
                    address,
                    "DELETE",
                    "/api/v1/sql",
                    &[
                        ("Authorization", &bearer),
                        ("Content-Type", "application/json"),
                    ],
                    b"",
                ),
            },
            _ => {
                // Missing or wrong tokens, on every protected route.
                let path = random.pick(&[
                    "/api/v1/topics",
                    "/api/v1/sources",
                    "/api/v1/segments",
                    "/api/v1/events",
                    "/api/v1/events/0123456789abcdef0123456789abcdef",
                    "/metrics",
                ]);
                let wrong = random.pick(&[
                    "",
                    "Bearer",
                    "Bearer ",
                    "Bearer wrong",
                    "bearer correct-horse-battery-stapl",
                    "Bearer correct-horse-battery-staple2",
                    "Basic Y29ycmVjdA==",
                    "Token correct-horse-battery-staple",
                ]);
                if random.next() % 3 == 0 {
                    post_sql(
                        address,
                        if wrong.is_empty() {
                            None
                        } else {
                            Some("wrong")
                        },
                        "*/*",
                        "SELECT 1",
                    )
                } else if wrong.is_empty() {
                    http(address, "GET", path, &[], b"")
                } else {
                    http(address, "GET", path, &[("Authorization", wrong)], b"")
                }
            }
        };
        assert!(
            (400..500).contains(&response.status),
            "request {sent} got {}: {}",
            response.status,
            response.text()
        );
        if response.status != 413 || !response.body.is_empty() {
            let body = response.json();
            assert!(body["error"].is_string(), "request {sent}: {body}");
        }
        *statuses.entry(response.status).or_default() += 1;
        sent += 1;
    }
    println!("1000 hostile requests, by status: {statuses:?}");
    for status in [400, 401, 404, 405, 406, 413, 415] {
        assert!(
            statuses.contains_key(&status),
            "no {status} among {statuses:?}"
        );
    }
    let (status, body) = http_get(address, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok"));
    let response = post_sql(
        address,
        Some(TOKEN),
        "*/*",
        "SELECT count(*) AS n FROM events",
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text().trim(), r#"{"n":5000}"#);
}

#[test]
fn a_truncated_segment_names_itself_and_other_queries_still_work() {
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), 10_000);
    let target = Target::DataDir(data.path().to_owned());
    let victim = parquet_files(data.path())
        .into_iter()
        .find(|file| file.contains("topic=shipments"))
        .expect("a shipments segment");
    let path = data.path().join(&victim);
    let length = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(length / 2).unwrap();
    drop(file);

    let failing = target
        .command()
        .args([
            "query",
            "SELECT count(*) FROM events WHERE topic = 'shipments'",
        ])
        .output()
        .unwrap();
    assert!(
        !failing.status.success(),
        "a truncated segment must fail the query"
    );
    let stderr = String::from_utf8_lossy(&failing.stderr);
    assert!(
        stderr.contains(&victim),
        "the error must name {victim}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let (before, _) = hindsight_rows(
        &target,
        "SELECT topic AS t, count(*) AS n FROM events WHERE topic <> 'shipments' GROUP BY 1",
    );
    assert_eq!(
        before.len(),
        2,
        "orders and payments still answer: {before:?}"
    );

    let server = Server::start(&target);
    let address = server.address.as_str();
    for _ in 0..3 {
        // An aggregate reads every shipments segment before its first row,
        // so the error always comes before the status is sent. (A streaming
        // `SELECT *` that reads a sound segment first has sent its 200 by
        // then, and can only cut the body short: `server/src/sql.rs`.)
        let response = post_sql(
            address,
            None,
            "*/*",
            "SELECT count(*) AS n, sum(length(encode(payload, 'base64'))) AS bytes FROM events WHERE topic = 'shipments'",
        );
        assert_eq!(response.status, 500, "{}", response.text());
        let body = response.json();
        assert_eq!(body["error"], "segment_unreadable");
        assert!(
            body["message"].as_str().unwrap().contains(&victim),
            "{body}"
        );
        let response = post_sql(
            address,
            None,
            "*/*",
            "SELECT count(*) AS n FROM events WHERE topic = 'orders'",
        );
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let (status, _) = http_get(address, "/healthz");
    assert_eq!(status, 200);
}

#[test]
fn query_limits_answer_with_a_status_and_free_their_memory() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    archive_demo(&data, 20_000);
    let config = write_config(
        directory.path(),
        &data,
        "[query]\ntimeout = \"2s\"\nmax_memory_bytes = 2097152\nmax_concurrent = 1\n",
    );
    let server = Server::start(&Target::Config(config));
    let address = server.address.as_str();
    let response = post_sql(
        address,
        None,
        "*/*",
        "SELECT payload FROM events ORDER BY payload DESC",
    );
    assert_eq!(response.status, 422, "{}", response.text());
    assert_eq!(response.json()["error"], "resources_exhausted");
    println!("memory: {}", response.json()["message"]);
    let started = Instant::now();
    let response = post_sql(
        address,
        None,
        "*/*",
        "SELECT count(*) FROM generate_series(1, 100000000000)",
    );
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.json()["error"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(10));
    // One slot: these run only because both failures gave theirs back.
    for _ in 0..3 {
        let response = post_sql(address, None, "*/*", "SELECT count(*) AS n FROM events");
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.text().trim(), r#"{"n":20000}"#);
    }
}

#[test]
fn the_openapi_document_is_valid_and_matches_the_routes() {
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), 1_000);
    let server = Server::start(&Target::DataDir(data.path().to_owned()));
    let address = server.address.as_str();
    let (status, body) = http_get(address, "/api/v1/openapi.json");
    assert_eq!(status, 200);
    let document_file = data.path().join("openapi.json");
    std::fs::write(&document_file, &body).unwrap();
    let validated = Command::new("python3")
        .args([
            "-c",
            "import json, sys\nfrom openapi_spec_validator import validate\n\
             validate(json.load(open(sys.argv[1])))\nprint('valid')",
        ])
        .arg(&document_file)
        .output()
        .unwrap();
    assert!(
        validated.status.success(),
        "openapi-spec-validator rejects the document (run {START_SERVICES} to install it): {}",
        String::from_utf8_lossy(&validated.stderr)
    );
    let document: Value = serde_json::from_str(&body).unwrap();
    let paths = document["paths"].as_object().unwrap();
    assert_eq!(
        paths.len(),
        hindsight_server::ROUTES
            .iter()
            .map(|(_, p)| p)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace("{event_id}", "0123456789abcdef0123456789abcdef");
            let content_type = if path == "/api/v1/sql" {
                "application/sql"
            } else {
                "application/json"
            };
            let response = http(
                address,
                &method.to_uppercase(),
                &concrete,
                &[("Content-Type", content_type)],
                b"SELECT 1 AS one",
            );
            assert!(
                response.status != 405
                    && !(response.status == 404 && response.text().contains("no route")),
                "{method} {path} is documented but not served: {} {}",
                response.status,
                response.text()
            );
            let documented = item[method]["responses"]
                .as_object()
                .unwrap()
                .contains_key(&response.status.to_string());
            assert!(
                documented,
                "{method} {path} answered {} which is not documented",
                response.status
            );
        }
    }
    // And nothing undocumented is served under /api/.
    let response = http(address, "GET", "/api/v1/replay", &[], b"");
    assert_eq!(response.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_over_an_s3_archive_with_a_postgres_catalog() {
    use crate::store::{create_bucket, s3_endpoint};
    let bucket = create_bucket();
    let catalog_url = crate::util::fresh_postgres_database("hindsight_query").await;
    let scratch = tempfile::tempdir().unwrap();
    let config = write_config(
        scratch.path(),
        &scratch.path().join("data"),
        &format!(
            "[storage]\nurl = \"s3://{bucket}/archive\"\nendpoint = \"{}\"\nallow_http = true\n\
             region = \"us-east-1\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n\
             [catalog]\nurl = \"{catalog_url}\"\n",
            s3_endpoint()
        ),
    );
    let target = Target::Config(config);
    run_ok(
        target
            .command()
            .args(["demo", "--no-serve", "--events", "20000"]),
    );
    assert!(parquet_files(scratch.path()).is_empty(), "nothing is local");

    let (rows, stats) = hindsight_rows(
        &target,
        "SELECT topic AS t, count(*) AS n, count(DISTINCT event_id) AS d FROM events GROUP BY 1",
    );
    let total: u64 = rows.iter().map(|row| row["n"].as_u64().unwrap()).sum();
    let distinct: u64 = rows.iter().map(|row| row["d"].as_u64().unwrap()).sum();
    assert_eq!((total, distinct), (20_000, 20_000), "{rows:?}");
    let (scanned, segments) = scanned_of(&stats);
    assert_eq!(scanned, segments);

    let (hour, next_hour) = an_hour_inside(&target);
    let key = a_key_inside(&target, &hour, &next_hour);
    let (rows, stats) = hindsight_rows(
        &target,
        &format!(
            "SELECT count(*) AS n FROM events WHERE key = CAST('{key}' AS BYTEA) \
             AND event_time >= '{hour}' AND event_time < '{next_hour}'"
        ),
    );
    assert!(rows[0]["n"].as_u64().unwrap() >= 1);
    let (scanned, _) = scanned_of(&stats);
    assert!(scanned * 4 < segments, "{stats}");

    // A missing object on S3 is named, relative to the store prefix.
    let catalog = hindsight_archive::catalog::Catalog::connect(&catalog_url)
        .await
        .unwrap();
    let victim = catalog
        .segments(&hindsight_archive::catalog::SegmentFilter {
            topic: Some("shipments".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0)
        .segment
        .uri;
    catalog.close().await;
    let store =
        hindsight_archive::store::ArchiveStore::open(&hindsight_archive::store::StoreConfig {
            url: format!("s3://{bucket}/archive"),
            endpoint: Some(s3_endpoint()),
            region: Some("us-east-1".to_owned()),
            access_key_id: Some("test".to_owned()),
            secret_access_key: Some("test".into()),
            allow_http: true,
        })
        .unwrap();
    store
        .delete(&object_store::path::Path::parse(&victim).unwrap())
        .await
        .unwrap();
    let failing = target
        .command()
        .args([
            "query",
            "SELECT count(*) FROM events WHERE topic = 'shipments'",
        ])
        .output()
        .unwrap();
    assert!(!failing.status.success());
    let stderr = String::from_utf8_lossy(&failing.stderr);
    assert!(
        stderr.contains(&format!("segment {victim} is unreadable")),
        "{stderr}"
    );
    let (rows, _) = hindsight_rows(
        &target,
        "SELECT count(*) AS n FROM events WHERE topic = 'orders'",
    );
    assert!(rows[0]["n"].as_u64().unwrap() > 0);
}
