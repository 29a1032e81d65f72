//! Secured clusters, as production runs them: every Kafka compression
//! codec; Kafka over SASL (SCRAM), TLS, SASL over TLS and mutual TLS; and
//! the one-line start-up error of a misconfigured connection. The brokers
//! come from `scripts/services.sh`: Tansu with `--authentication` for SASL,
//! and stunnel in front of Tansu for TLS (Tansu 0.6 accepts `--cert` and
//! `--key` but never serves TLS itself). confluent-kafka is the outside
//! client that produces and reads back.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use std::time::{Duration, Instant};

use hindsight_archive::catalog::{Catalog, SegmentFilter};
use hindsight_archive::segment::decode_segment;
use hindsight_archive::Event;

use crate::kafka::{expected_headers, expected_key, expected_payload};
use crate::replay::{consume_kafka_from, unique};
use crate::util::{
    catalog_url, hindsight, kafka_brokers, run_ok, start_archive_ready, terminate,
    wait_for_archived, ChildGuard, START_SERVICES,
};

/// Events per topic in the round trips.
const EVENTS: u64 = 10_000;
/// The provenance headers a replay adds after the original ones.
const PROVENANCE: usize = 6;

pub(crate) fn service_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the secured brokers with {START_SERVICES}")
    })
}

pub(crate) fn tls_file(name: &str) -> PathBuf {
    let path = PathBuf::from(service_env("HINDSIGHT_TEST_TLS_DIR")).join(name);
    assert!(
        path.exists(),
        "{} is missing: {START_SERVICES} makes it",
        path.display()
    );
    path
}

/// One way of reaching Kafka: the brokers, the confluent-kafka settings
/// (JSON) and the same as a Hindsight `[connections.NAME]` body.
pub(crate) struct Secured {
    pub(crate) brokers: String,
    pub(crate) client: String,
    pub(crate) connection: String,
}

pub(crate) enum Mode {
    Plain,
    /// SASL_PLAINTEXT, SCRAM-SHA-512.
    Scram512,
    /// SSL: the broker's certificate checked against the test CA.
    Tls,
    /// SASL_SSL, SCRAM-SHA-256.
    Scram256OverTls,
    /// SSL with a client certificate (its key encrypted).
    MutualTls,
}

pub(crate) fn secured(mode: Mode, directory: &Path) -> Secured {
    let user = || service_env("HINDSIGHT_TEST_KAFKA_USER");
    let password = || service_env("HINDSIGHT_TEST_KAFKA_PASSWORD");
    let ca = || tls_file("ca.pem").display().to_string();
    // The password reaches Hindsight through a file, as in production.
    let password_file = || {
        let file = directory.join("kafka-password");
        std::fs::write(&file, format!("{}\n", password())).unwrap();
        file.display().to_string()
    };
    match mode {
        Mode::Plain => Secured {
            brokers: kafka_brokers(),
            client: "{}".to_owned(),
            connection: format!("bus = \"kafka\"\nbrokers = [{:?}]\n", kafka_brokers()),
        },
        Mode::Scram512 => Secured {
            brokers: service_env("HINDSIGHT_TEST_KAFKA_SASL_BROKERS"),
            client: serde_json::json!({
                "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": user(), "sasl.password": password(),
            })
            .to_string(),
            connection: format!(
                "bus = \"kafka\"\nbrokers = [{:?}]\nsecurity_protocol = \"sasl_plaintext\"\n\
                 sasl = {{ mechanism = \"scram-sha-512\", username = {:?}, password_file = {:?} }}\n",
                service_env("HINDSIGHT_TEST_KAFKA_SASL_BROKERS"),
                user(),
                password_file()
            ),
        },
        Mode::Tls => Secured {
            brokers: service_env("HINDSIGHT_TEST_KAFKA_SSL_BROKERS"),
            client: serde_json::json!({"security.protocol": "SSL", "ssl.ca.location": ca()})
                .to_string(),
            connection: format!(
                "bus = \"kafka\"\nbrokers = [{:?}]\nsecurity_protocol = \"ssl\"\n\
                 tls = {{ ca_file = {:?} }}\n",
                service_env("HINDSIGHT_TEST_KAFKA_SSL_BROKERS"),
                ca()
            ),
        },
        Mode::Scram256OverTls => Secured {
            brokers: service_env("HINDSIGHT_TEST_KAFKA_SASL_SSL_BROKERS"),
            client: serde_json::json!({
                "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.username": user(), "sasl.password": password(), "ssl.ca.location": ca(),
            })
            .to_string(),
            connection: format!(
                "bus = \"kafka\"\nbrokers = [{:?}]\nsecurity_protocol = \"sasl_ssl\"\n\
                 sasl = {{ mechanism = \"scram-sha-256\", username = {:?}, password_file = {:?} }}\n\
                 tls = {{ ca_file = {:?} }}\n",
                service_env("HINDSIGHT_TEST_KAFKA_SASL_SSL_BROKERS"),
                user(),
                password_file(),
                ca()
            ),
        },
        Mode::MutualTls => Secured {
            brokers: service_env("HINDSIGHT_TEST_KAFKA_MTLS_BROKERS"),
            client: serde_json::json!({
                "security.protocol": "SSL", "ssl.ca.location": ca(),
                "ssl.certificate.location": tls_file("client.pem").display().to_string(),
                "ssl.key.location": tls_file("client.key").display().to_string(),
            })
            .to_string(),
            connection: format!(
                "bus = \"kafka\"\nbrokers = [{:?}]\nsecurity_protocol = \"ssl\"\n\
                 tls = {{ ca_file = {:?}, cert_file = {:?}, key_file = {:?}, key_password = \"key-secret\" }}\n",
                service_env("HINDSIGHT_TEST_KAFKA_MTLS_BROKERS"),
                ca(),
                tls_file("client.pem").display().to_string(),
                tls_file("client-encrypted.key").display().to_string(),
            ),
        },
    }
}

fn python(script: &str, args: &[&str], client: &str) -> Output {
    let path = format!("{}/tests/support/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("python3")
        .arg(&path)
        .args(args)
        .env("HINDSIGHT_TEST_KAFKA_CLIENT", client)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); set up with {START_SERVICES}"));
    assert!(
        output.status.success(),
        "{script} {args:?} failed (its error is above); start the brokers with {START_SERVICES}"
    );
    output
}

pub(crate) fn create_topic(secured: &Secured, prefix: &str, partitions: u32) -> String {
    let topic = unique(prefix);
    python(
        "kafka_create_topic.py",
        &[&secured.brokers, &topic, &partitions.to_string()],
        &secured.client,
    );
    topic
}

/// Produces events 0..count (tests/support/kafka_produce.py) with extra
/// confluent-kafka `settings` on top of the connection's.
fn produce(secured: &Secured, topic: &str, count: u64, settings: serde_json::Value) {
    let mut client: serde_json::Value = serde_json::from_str(&secured.client).unwrap();
    client
        .as_object_mut()
        .unwrap()
        .extend(settings.as_object().unwrap().clone());
    python(
        "kafka_produce.py",
        &[
            &secured.brokers,
            topic,
            "0",
            &count.to_string(),
            "0",
            "batched",
        ],
        &client.to_string(),
    );
}

/// A configuration with the connection `secured` and a source reading
/// `topics` through it.
fn write_config(directory: &Path, secured: &Secured, topics: &[String]) -> PathBuf {
    let file = directory.join("hindsight.toml");
    let text = format!(
        "data_dir = {data:?}\n[flush]\nmax_rows = 20000\nmax_age = \"1s\"\n\n\
         [connections.secured]\n{connection}\n\
         [[sources]]\ntype = \"kafka\"\nname = \"secured\"\nconnection = \"secured\"\n\
         topics = {topics:?}\ngroup_id = {group:?}\nstart = \"earliest\"\n",
        data = directory.join("data").display().to_string(),
        connection = secured.connection,
        group = unique("hs-secured"),
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// Every archived event of `topic`, checked byte for byte against its
/// number; returns how many there are.
async fn check_archived(directory: &Path, topic: &str) -> u64 {
    let catalog = Catalog::connect(&catalog_url(directory)).await.unwrap();
    let segments = catalog.segments(&SegmentFilter::default()).await.unwrap();
    let mut seqs = HashSet::new();
    for record in segments.iter().filter(|r| r.segment.topic == topic) {
        let path = directory.join("data").join(&record.segment.uri);
        let events: Vec<Event> = decode_segment(std::fs::read(path).unwrap().into()).unwrap();
        for event in events {
            let seq: u64 = std::str::from_utf8(event.headers[0].value.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            assert!(seqs.insert(seq), "{topic}: event {seq} archived twice");
            assert_eq!(event.key, Some(expected_key(seq)), "{topic}: key of {seq}");
            assert_eq!(
                event.payload,
                Some(expected_payload(seq)),
                "{topic}: payload of {seq}"
            );
            assert_eq!(
                event.headers,
                expected_headers(seq),
                "{topic}: headers of {seq}"
            );
        }
    }
    catalog.close().await;
    seqs.len() as u64
}

/// Reads `topic` back with confluent-kafka and checks every record byte for
/// byte against its number, provenance headers aside.
fn check_replayed(secured: &Secured, topic: &str, count: u64) {
    let consumed = consume_kafka_from(&secured.brokers, &secured.client, topic, count, 30);
    assert_eq!(
        consumed.len() as u64,
        count,
        "records read back from {topic}"
    );
    let mut seqs = HashSet::new();
    for message in &consumed {
        let seq: u64 = message
            .header("seq")
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| panic!("{topic}: no seq header in {message:?}"));
        assert!(seqs.insert(seq), "{topic}: {seq} replayed twice");
        assert_eq!(
            message.key,
            Some(expected_key(seq)),
            "{topic}: key of {seq}"
        );
        assert_eq!(
            message.value,
            Some(expected_payload(seq)),
            "{topic}: value of {seq}"
        );
        let original = &message.headers[..message.headers.len() - PROVENANCE];
        assert_eq!(original, expected_headers(seq), "{topic}: headers of {seq}");
    }
}

/// Produce, archive through the named connection, replay through it, read
/// back: all byte for byte.
async fn round_trip(mode: Mode) {
    let directory = tempfile::tempdir().unwrap();
    let secured = secured(mode, directory.path());
    let source = create_topic(&secured, "hs-secured-src", 3);
    let target = create_topic(&secured, "hs-secured-dst", 3);
    produce(&secured, &source, EVENTS, serde_json::json!({}));
    let config = write_config(directory.path(), &secured, std::slice::from_ref(&source));
    let started = Instant::now();
    let (mut archive, _stdout) = start_archive_ready(&config);
    wait_for_archived(directory.path(), EVENTS as i64, Duration::from_secs(180)).await;
    eprintln!(
        "archived {EVENTS} events from {} in {:.1} s",
        secured.brokers,
        started.elapsed().as_secs_f64()
    );
    let status = terminate(&mut archive.0);
    assert!(status.success(), "archive did not stop cleanly: {status:?}");
    assert_eq!(check_archived(directory.path(), &source).await, EVENTS);
    run_ok(hindsight().arg("--config").arg(&config).args([
        "replay",
        "run",
        "--topic",
        &source,
        "--target",
        "secured",
        "--to-topic",
        &target,
    ]));
    check_replayed(&secured, &target, EVENTS);
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_over_sasl_scram_512_archives_and_replays_byte_exact() {
    round_trip(Mode::Scram512).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_over_tls_archives_and_replays_byte_exact() {
    round_trip(Mode::Tls).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_over_sasl_ssl_scram_256_archives_and_replays_byte_exact() {
    round_trip(Mode::Scram256OverTls).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_over_mutual_tls_with_an_encrypted_key_archives_and_replays_byte_exact() {
    round_trip(Mode::MutualTls).await;
}

/// confluent-kafka produces with each codec; one archive reads all five
/// topics; each is replayed with the same codec and read back.
#[tokio::test(flavor = "multi_thread")]
async fn every_compression_codec_archives_and_replays_byte_exact() {
    const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
    let directory = tempfile::tempdir().unwrap();
    let plain = secured(Mode::Plain, directory.path());
    let mut topics = BTreeMap::new();
    for codec in CODECS {
        let topic = create_topic(&plain, &format!("hs-codec-{codec}"), 2);
        produce(
            &plain,
            &topic,
            EVENTS,
            serde_json::json!({"compression.type": codec}),
        );
        topics.insert(codec, topic);
    }
    let all: Vec<String> = topics.values().cloned().collect();
    let config = write_config(directory.path(), &plain, &all);
    let (mut archive, _stdout) = start_archive_ready(&config);
    wait_for_archived(
        directory.path(),
        (EVENTS * CODECS.len() as u64) as i64,
        Duration::from_secs(300),
    )
    .await;
    let status = terminate(&mut archive.0);
    assert!(status.success(), "archive did not stop cleanly: {status:?}");
    for (codec, topic) in &topics {
        assert_eq!(
            check_archived(directory.path(), topic).await,
            EVENTS,
            "{codec}: archived events"
        );
        let target = create_topic(&plain, &format!("hs-codec-{codec}-replayed"), 2);
        run_ok(hindsight().arg("--config").arg(&config).args([
            "replay",
            "run",
            "--topic",
            topic,
            "--target",
            "secured",
            "--to-topic",
            &target,
            "--kafka-property",
            &format!("compression.type={codec}"),
        ]));
        check_replayed(&plain, &target, EVENTS);
    }
}

/// Runs `hindsight archive` with `connection` as the source's connection;
/// it must fail within a minute. Returns its `error:` line.
pub(crate) fn archive_fails(directory: &Path, name: &str, connection: &str) -> String {
    let secured = Secured {
        brokers: String::new(),
        client: String::new(),
        connection: connection.to_owned(),
    };
    let config = write_config(directory, &secured, &["hs-never-read".to_owned()]);
    rename_connection(&config, name);
    archive_error_line(directory, &config, name)
}

/// Renames the connection `secured` of a written configuration (its
/// section and the source's reference) to `name`.
pub(crate) fn rename_connection(config: &Path, name: &str) {
    let text = std::fs::read_to_string(config)
        .unwrap()
        .replace("[connections.secured]", &format!("[connections.{name}]"))
        .replace(
            "connection = \"secured\"",
            &format!("connection = \"{name}\""),
        );
    std::fs::write(config, text).unwrap();
}

/// Runs `hindsight --config CONFIG archive`, which must fail within a
/// minute, and returns its one `error:` line.
pub(crate) fn archive_error_line(directory: &Path, config: &Path, name: &str) -> String {
    let stderr_file = directory.join("archive.stderr");
    let mut child = ChildGuard(
        hindsight()
            .arg("--config")
            .arg(config)
            .arg("archive")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_file).unwrap())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "archive with connection {name} still runs after a minute: a fatal error is being retried"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "archive with {name} succeeded");
    let stderr = std::fs::read_to_string(&stderr_file).unwrap();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    errors[0].to_owned()
}

/// A wrong password, an unknown CA, a missing client certificate, a
/// certificate for another host, an expired one and a plaintext client on a
/// TLS port: each stops `archive` at once, in one line naming the
/// connection, the brokers and the cause.
#[test]
fn misconfigured_kafka_connections_fail_at_start_in_one_line() {
    let directory = tempfile::tempdir().unwrap();
    let ca = tls_file("ca.pem").display().to_string();
    let other_ca = tls_file("other-ca.pem").display().to_string();
    let sasl = service_env("HINDSIGHT_TEST_KAFKA_SASL_BROKERS");
    let ssl = service_env("HINDSIGHT_TEST_KAFKA_SSL_BROKERS");
    let mutual = service_env("HINDSIGHT_TEST_KAFKA_MTLS_BROKERS");
    let wrong_host = service_env("HINDSIGHT_TEST_KAFKA_WRONG_HOST_BROKERS");
    let expired = service_env("HINDSIGHT_TEST_KAFKA_EXPIRED_BROKERS");
    let user = service_env("HINDSIGHT_TEST_KAFKA_USER");
    let cases = [
        (
            "wrong-password",
            format!("bus = \"kafka\"\nbrokers = [{sasl:?}]\nsecurity_protocol = \"sasl_plaintext\"\nsasl = {{ mechanism = \"scram-sha-512\", username = {user:?}, password = \"not-the-password\" }}\n"),
            sasl.clone(),
            "authentication failed",
        ),
        (
            "unknown-ca",
            format!("bus = \"kafka\"\nbrokers = [{ssl:?}]\nsecurity_protocol = \"ssl\"\ntls = {{ ca_file = {other_ca:?} }}\n"),
            ssl.clone(),
            "not signed by a trusted CA",
        ),
        (
            "no-client-certificate",
            format!("bus = \"kafka\"\nbrokers = [{mutual:?}]\nsecurity_protocol = \"ssl\"\ntls = {{ ca_file = {ca:?} }}\n"),
            mutual.clone(),
            "requires a client certificate",
        ),
        (
            "wrong-host",
            format!("bus = \"kafka\"\nbrokers = [{wrong_host:?}]\nsecurity_protocol = \"ssl\"\ntls = {{ ca_file = {ca:?} }}\n"),
            wrong_host.clone(),
            "does not name this host",
        ),
        (
            "expired",
            format!("bus = \"kafka\"\nbrokers = [{expired:?}]\nsecurity_protocol = \"ssl\"\ntls = {{ ca_file = {ca:?} }}\n"),
            expired.clone(),
            "has expired",
        ),
        (
            "plaintext-on-tls",
            format!("bus = \"kafka\"\nbrokers = [{ssl:?}]\n"),
            ssl.clone(),
            "TLS",
        ),
    ];
    expect_error_lines(directory.path(), cases, "not-the-password", archive_fails);
}

/// Runs each case (connection name, its `[connections.NAME]` body, its
/// address, the cause) through `fails`, which returns the error line, and
/// checks that the line names the connection, the address and the cause,
/// and not `secret`. Reports every case that falls short at once.
pub(crate) fn expect_error_lines(
    directory: &Path,
    cases: impl IntoIterator<Item = (&'static str, String, String, &'static str)>,
    secret: &str,
    fails: impl Fn(&Path, &str, &str) -> String,
) {
    let mut failures = Vec::new();
    for (name, connection, address, cause) in cases {
        let case_directory = directory.join(name);
        std::fs::create_dir_all(&case_directory).unwrap();
        let line = fails(&case_directory, name, &connection);
        eprintln!("{name}: {line}");
        for expected in [format!("connection \"{name}\""), address, cause.to_owned()] {
            if !line.contains(&expected) {
                failures.push(format!("{name}: {expected:?} missing from {line:?}"));
            }
        }
        assert!(!line.contains(secret), "{line}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Tansu offers no OAUTHBEARER, so the broker cannot accept a token here.
/// What can be checked: the OIDC client-credentials request reaches the
/// token endpoint with the client's id and secret, librdkafka is handed
/// the token, and the broker's refusal is one clear line.
#[test]
fn oauthbearer_fetches_an_oidc_token_and_a_broker_without_it_is_named() {
    use std::io::{Read, Write};
    let directory = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/oauth/token", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(read) = stream.read(&mut buffer) {
            if read == 0 {
                break;
            }
            request.extend_from_slice(&buffer[..read]);
            if String::from_utf8_lossy(&request).contains("grant_type=") {
                break;
            }
        }
        let body = r#"{"access_token":"opaque-test-token","token_type":"Bearer","expires_in":600}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).unwrap();
        String::from_utf8_lossy(&request).into_owned()
    });
    let sasl = service_env("HINDSIGHT_TEST_KAFKA_SASL_BROKERS");
    let connection = format!(
        "bus = \"kafka\"\nbrokers = [{sasl:?}]\nsecurity_protocol = \"sasl_plaintext\"\n\
         sasl = {{ mechanism = \"oauthbearer\", oidc = {{ token_endpoint = {endpoint:?}, client_id = \"hindsight\", client_secret = \"oidc-secret\", scope = \"kafka\" }} }}\n"
    );
    let line = archive_fails(directory.path(), "oidc", &connection);
    let request = server.join().unwrap();
    assert!(request.starts_with("POST /oauth/token"), "{request}");
    assert!(
        request.contains("grant_type=client_credentials&scope=kafka"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: basic "),
        "{request}"
    );
    assert!(line.contains("connection \"oidc\""), "{line}");
    assert!(line.contains(&sasl), "{line}");
    assert!(!line.contains("oidc-secret"), "{line}");
    assert!(
        line.contains("SASL mechanism") || line.contains("authentication"),
        "{line}"
    );
}

/// `check-config --connect` tries each connection once and reports each on
/// one line: a good one `ok`, a bad one `FAILED` with its cause; the exit
/// status says whether all worked.
#[test]
fn check_config_connect_reports_every_connection_on_one_line() {
    let directory = tempfile::tempdir().unwrap();
    let good = secured(Mode::Scram256OverTls, directory.path());
    let ssl = service_env("HINDSIGHT_TEST_KAFKA_SSL_BROKERS");
    let other_ca = tls_file("other-ca.pem").display().to_string();
    let config = directory.path().join("hindsight.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[connections.good]\n{}\n[connections.untrusted]\nbus = \"kafka\"\n\
             brokers = [{ssl:?}]\nsecurity_protocol = \"ssl\"\ntls = {{ ca_file = {other_ca:?} }}\n",
            directory.path().join("data").display().to_string(),
            good.connection,
        ),
    )
    .unwrap();
    let output = hindsight()
        .arg("--config")
        .arg(&config)
        .args(["check-config", "--connect"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!output.status.success(), "one connection fails: {stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per connection: {stdout}");
    assert!(
        lines[0].starts_with("ok      connection \"good\" (kafka, ")
            && lines[0].contains("sasl_ssl (scram-sha-256)"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("FAILED  connection \"untrusted\"")
            && lines[1].contains("not signed by a trusted CA"),
        "{stdout}"
    );
    assert!(!stdout.contains(&service_env("HINDSIGHT_TEST_KAFKA_PASSWORD")));
}
