//! Shared helpers: the binary under test, services, DuckDB and a tiny HTTP client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use hindsight_archive::catalog::Catalog;

pub const START_SERVICES: &str = "bash scripts/services.sh";

pub fn hindsight() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hindsight"));
    command.env("HINDSIGHT_LOG", "warn");
    command
}

/// Runs a command to completion; panics with its stderr unless it succeeded.
pub fn run_ok(command: &mut Command) -> std::process::Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `hindsight demo --no-serve` to completion on `data`; panics with its stderr on failure.
pub fn archive_demo(data: &Path, events: u64) {
    run_ok(
        hindsight()
            .args([
                "demo",
                "--no-serve",
                "--events",
                &events.to_string(),
                "--data-dir",
            ])
            .arg(data),
    );
}

/// PostgreSQL for the catalog tests: `HINDSIGHT_TEST_POSTGRES_URL`, or the
/// default that `scripts/services.sh` sets up.
pub fn postgres_url() -> String {
    std::env::var("HINDSIGHT_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        "postgres://hindsight:hindsight@127.0.0.1:5432/hindsight_test".to_owned()
    })
}

/// Creates a fresh, empty PostgreSQL database named `<prefix>_<uuid>` and
/// returns its URL: tests never share catalog tables.
pub async fn fresh_postgres_database(prefix: &str) -> String {
    let admin_url = postgres_url();
    let admin = hindsight_archive::catalog::Catalog::connect(&admin_url)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "PostgreSQL is not reachable at {admin_url} ({}); start it with {START_SERVICES}",
                error.full_message()
            )
        });
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_raw(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// Runs a DuckDB query through Python's duckdb package; returns the first
/// column of the first row as text.
pub fn duckdb_scalar(sql: &str) -> String {
    let script = "import duckdb, sys\nprint(duckdb.connect().execute(sys.argv[1]).fetchone()[0])";
    let output = Command::new("python3")
        .args(["-c", script, sql])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 for duckdb ({e}); run {START_SERVICES}"));
    assert!(
        output.status.success(),
        "duckdb failed (is the duckdb pip package installed? run {START_SERVICES}): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Reads a child's stdout until a line containing `marker`; returns all lines read.
pub fn read_until(
    stdout: &mut BufReader<ChildStdout>,
    marker: &str,
    timeout: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {marker:?}; got {lines:#?}"
        );
        let mut line = String::new();
        let read = stdout.read_line(&mut line).expect("read child stdout");
        assert!(
            read > 0,
            "child exited before printing {marker:?}; got {lines:#?}"
        );
        let found = line.contains(marker);
        lines.push(line.trim_end().to_owned());
        if found {
            return lines;
        }
    }
}

/// A plain HTTP/1.1 GET; returns (status, body).
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    let mut stream =
        TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Sends SIGTERM and waits for the exit status.
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    child.wait().expect("wait for child")
}

/// Every `*.parquet` file under `root`, as paths relative to it, sorted.
pub fn parquet_files(root: &Path) -> Vec<String> {
    fn walk(root: &Path, directory: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(directory).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, found);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut found = Vec::new();
    walk(root, root, &mut found);
    found.sort();
    found
}

pub fn spawn_with_stdout(command: &mut Command) -> (Child, BufReader<ChildStdout>) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hindsight");
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    (child, stdout)
}

pub fn start_archive(config: &Path) -> Child {
    hindsight()
        .arg("--config")
        .arg(config)
        .arg("archive")
        .env("HINDSIGHT_LOG", "warn,hindsight_ingest=info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hindsight archive")
}

/// Starts the ingester and waits until it runs (its signal handling is in place).
pub fn start_archive_ready(
    config: &Path,
) -> (ChildGuard, std::io::BufReader<std::process::ChildStdout>) {
    let mut command = hindsight();
    command
        .arg("--config")
        .arg(config)
        .arg("archive")
        .env("HINDSIGHT_LOG", "warn,hindsight_ingest=info");
    let (child, mut stdout) = spawn_with_stdout(&mut command);
    let guard = ChildGuard(child);
    read_until(&mut stdout, "archiving", Duration::from_secs(60));
    (guard, stdout)
}

pub fn catalog_url(directory: &Path) -> String {
    format!("sqlite://{}/data/catalog.db", directory.display())
}

pub async fn archived_count(directory: &Path) -> i64 {
    let Ok(catalog) = Catalog::connect(&catalog_url(directory)).await else {
        return 0;
    };
    let count = catalog
        .topic_stats()
        .await
        .map(|stats| stats.iter().map(|s| s.events).sum())
        .unwrap_or(0);
    catalog.close().await;
    count
}

pub async fn wait_for_archived(directory: &Path, expected: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let count = archived_count(directory).await;
        if count >= expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "archived {count} of {expected} events in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Kills the child when a failed assertion unwinds past it.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Kafka-protocol test broker: `HINDSIGHT_TEST_KAFKA_BROKERS`, or Tansu's default.
pub fn kafka_brokers() -> String {
    std::env::var("HINDSIGHT_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Creates the Kafka topic `topic` with `partitions` partitions on the test broker.
pub fn create_kafka_topic(topic: &str, partitions: u32) -> String {
    create_kafka_topic_with_config(topic, partitions, &[])
}

/// Creates a Kafka topic with topic configs (`name=value`, e.g.
/// `max.message.bytes=8388608`) on the test broker.
pub fn create_kafka_topic_with_config(topic: &str, partitions: u32, configs: &[&str]) -> String {
    let brokers = kafka_brokers();
    let output = Command::new("tansu")
        .args([
            "topic",
            "create",
            topic,
            "--partitions",
            &partitions.to_string(),
        ])
        .args(configs.iter().flat_map(|config| ["--config", config]))
        .args(["--broker", &format!("tcp://{brokers}")])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run tansu ({e}); install and start it with {START_SERVICES}")
        });
    assert!(
        output.status.success(),
        "cannot create topic {topic} on {brokers} (start the broker with {START_SERVICES}): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    topic.to_owned()
}

/// Runs `hindsight --data-dir DATA query --format ndjson SQL`; returns the rows.
pub fn query_rows(data: &Path, sql: &str) -> Vec<serde_json::Value> {
    let output = run_ok(
        hindsight()
            .arg("--data-dir")
            .arg(data)
            .args(["query", "--format", "ndjson", sql]),
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

/// The named connections of the test services, as a configuration file
/// section: `local-kafka` (Tansu) and `local-rabbit` (RabbitMQ).
pub fn local_connections() -> String {
    format!(
        "[connections.local-kafka]\nbus = \"kafka\"\nbrokers = [{:?}]\n\n\
         [connections.local-rabbit]\nbus = \"amqp\"\nurl = {:?}\n",
        kafka_brokers(),
        crate::replay::amqp_url()
    )
}

/// `hindsight serve` on a free port over DATA, with the test services as
/// named connections ([`local_connections`]); returns the child and its
/// address.
pub fn serve_data_dir(data: &Path) -> (Child, String) {
    // Outside the data directory, which is the store's root.
    let config = tempfile::Builder::new()
        .prefix("hindsight-serve-")
        .suffix(".toml")
        .tempfile()
        .unwrap()
        .into_temp_path()
        .keep()
        .unwrap();
    std::fs::write(&config, local_connections()).unwrap();
    let (child, mut stdout) = spawn_with_stdout(
        hindsight()
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"]),
    );
    let lines = read_until(&mut stdout, "serving the API", Duration::from_secs(60));
    let address = lines
        .last()
        .and_then(|line| line.split("http://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .expect("address in the serving line")
        .to_owned();
    // Keep the pipe open: a closed stdout would kill the server on its next print.
    std::mem::forget(stdout);
    (child, address)
}

/// `hindsight --config CONFIG query --format FORMAT SQL`: its stdout.
/// (`query_rows` reads a data directory; this reads any catalog and store.)
pub fn query_output(config: &Path, format: &str, sql: &str) -> String {
    let output = run_ok(
        hindsight()
            .arg("--config")
            .arg(config)
            // A million ids take a while in a debug build.
            .env("HINDSIGHT__QUERY__TIMEOUT", "600s")
            .args(["query", "--format", format, sql]),
    );
    String::from_utf8(output.stdout).unwrap()
}

/// [`query_output`] as NDJSON rows.
pub fn query_json(config: &Path, sql: &str) -> Vec<serde_json::Value> {
    query_output(config, "ndjson", sql)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{line}: {error}")))
        .collect()
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
