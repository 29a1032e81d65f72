//! Schema-aware payloads (issue 17) against real producers: confluent-kafka's
//! own `AvroSerializer`, `ProtobufSerializer` and `JSONSerializer` write the
//! wire format and register their schemas in `tests/support/schema_registry.py`
//! (a test double of the Schema Registry REST subset: no registry server can
//! be installed on these machines), into Tansu. Hindsight archives the
//! topics, keeps the schemas in its catalog, and must decode every event to
//! what the Python deserializers return, after the registry is gone.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::replay::unique;
use crate::util::{
    create_kafka_topic, hex, hindsight, http_get, kafka_brokers, query_json, run_ok,
    serve_data_dir, start_archive_ready, terminate, wait_for_archived, ChildGuard, START_SERVICES,
};

const REGISTRY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/schema_registry.py"
);
const PRODUCER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/schema_produce.py"
);

fn events_per_format() -> u64 {
    std::env::var("HINDSIGHT_SCHEMAS_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000)
}

/// The user and password of the registry of the main test (basic auth).
const REGISTRY_USER: &str = "hindsight";
const REGISTRY_PASSWORD: &str = "registry-secret-4711";

/// The test registry on a free port; killed when dropped.
struct Registry {
    _child: ChildGuard,
    url: String,
    log: PathBuf,
    /// `user:password` when it asks for basic auth.
    user: Option<String>,
}

impl Registry {
    fn start(directory: &Path) -> Registry {
        Self::start_with(directory, None)
    }

    fn start_with(directory: &Path, user: Option<String>) -> Registry {
        Self::start_with_args(directory, user, &[], "http")
    }

    /// With more arguments of schema_registry.py; `scheme` is https when
    /// they include `--tls-cert`.
    fn start_with_args(
        directory: &Path,
        user: Option<String>,
        args: &[&std::ffi::OsStr],
        scheme: &str,
    ) -> Registry {
        let port_file = directory.join("registry.port");
        let log = directory.join("registry.log");
        let child = Command::new("python3")
            .arg(REGISTRY)
            .args(["--port", "0", "--port-file"])
            .arg(&port_file)
            .arg("--log")
            .arg(&log)
            .args(user.iter().flat_map(|user| ["--user", user.as_str()]))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 ({e}); set up with {START_SERVICES}"));
        let child = ChildGuard(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                if !port.trim().is_empty() {
                    break port.trim().to_owned();
                }
            }
            assert!(Instant::now() < deadline, "the test registry did not start");
            std::thread::sleep(Duration::from_millis(100));
        };
        Registry {
            _child: child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            log,
            user,
        }
    }

    /// The requests it served, one `METHOD TARGET` per line.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// One producer run; returns the expected decodings by key.
fn produce(
    registry: &Registry,
    directory: &Path,
    topic: &str,
    format: &str,
    start: u64,
    count: u64,
    extra: &[&str],
) -> Vec<(String, Value)> {
    let expected = directory.join(format!("expected-{topic}-{start}.ndjson"));
    let status = Command::new("python3")
        .arg(PRODUCER)
        .args(["--brokers", &kafka_brokers(), "--registry", &registry.url])
        .args(
            registry
                .user
                .iter()
                .flat_map(|user| ["--registry-user", user.as_str()]),
        )
        .args(["--topic", topic, "--format", format])
        .args(["--start", &start.to_string(), "--count", &count.to_string()])
        .arg("--expected")
        .arg(&expected)
        .args(extra)
        .status()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); set up with {START_SERVICES}"));
    assert!(status.success(), "producing {format} to {topic} failed");
    std::io::BufReader::new(std::fs::File::open(&expected).unwrap())
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(&line.unwrap()).unwrap();
            (
                line["key"].as_str().unwrap().to_owned(),
                line["value"].clone(),
            )
        })
        .collect()
}

/// Payloads that must not decode, and must not stop anything: an unknown
/// schema id, a truncated Avro body, a bare magic byte, garbage.
fn produce_undecodable(topic: &str, avro_payload_hex: &str) -> usize {
    let sample = &avro_payload_hex[..avro_payload_hex.len() / 4 * 2];
    let bad = [
        format!("00000003e7{}", hex(b"junk")),
        sample.to_owned(),
        "00".to_owned(),
        format!("0000000001{}", "ff".repeat(11)),
    ];
    let events: Vec<(String, String)> = bad
        .into_iter()
        .enumerate()
        .map(|(i, payload)| (format!("undecodable-{i}"), payload))
        .collect();
    produce_raw(topic, &events);
    events.len()
}

/// Events as they are: (key, payload in hex) each, with confluent-kafka.
fn produce_raw(topic: &str, events: &[(String, String)]) {
    let events = serde_json::to_string(events).unwrap();
    let script = format!(
        r#"
import confluent_kafka, json
p = confluent_kafka.Producer({{"bootstrap.servers": "{brokers}"}})
for key, payload in json.loads({events:?}):
    p.produce("{topic}", key=key.encode(), value=bytes.fromhex(payload))
p.flush(30)
"#,
        brokers = kafka_brokers(),
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every event of `topic`: its decoding must equal the expected value.
fn assert_decodes_like_python(config: &Path, topic: &str, expected: &[(String, Value)]) {
    let rows = query_json(
        config,
        &format!(
            "SELECT utf8_or_null(key) AS key, decode_payload(payload, topic, headers) AS value, \
             decode_error(payload, topic, headers) AS error FROM events WHERE topic = '{topic}'"
        ),
    );
    let mut decoded: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
    for row in rows {
        decoded.insert(
            row["key"].as_str().unwrap().to_owned(),
            (
                row["value"].as_str().map(str::to_owned),
                row["error"].as_str().map(str::to_owned),
            ),
        );
    }
    let mut checked = 0;
    for (key, value) in expected {
        let (text, error) = decoded
            .get(key)
            .unwrap_or_else(|| panic!("{topic}: no archived event with key {key}"));
        let text = text
            .as_deref()
            .unwrap_or_else(|| panic!("{topic}: {key} did not decode: {error:?}"));
        let actual: Value = serde_json::from_str(text).unwrap();
        assert_eq!(&actual, value, "{topic}: {key} decodes differently");
        checked += 1;
    }
    assert_eq!(checked, expected.len());
    println!("{topic}: {checked} events decode as the Python deserializers do");
}

/// A Kafka source over `topics`, and the registry with basic auth, its
/// password in a file.
/// `decoded_<source>_<topic>` (arrow-avro) holds every event of the topic,
/// the undecodable ones with NULL fields and a reason, and the fields equal
/// what the Python deserializer returned, versions 1 and 2 resolved to
/// version 3 (`channel` defaults to "store", `rank` to 0).
fn assert_typed_view_matches(config: &Path, topic: &str, expected: &[(String, Value)], bad: usize) {
    let view = format!("decoded_kafka_test_{}", topic.replace(['.', '-'], "_"));
    let totals = query_json(
        config,
        &format!(
            "SELECT count(*) AS n, count(_decode_error) AS bad, count(id) AS decoded FROM {view}"
        ),
    );
    assert_eq!(totals[0]["n"], expected.len() + bad, "{totals:?}");
    assert_eq!(totals[0]["bad"], bad, "{totals:?}");
    assert_eq!(totals[0]["decoded"], expected.len(), "{totals:?}");
    let rows = query_json(
        config,
        &format!(
            "SELECT utf8_or_null(_key) AS key, id, sequence, quantity, amount, CAST(status AS VARCHAR) AS status, \
             channel, rank, customer['address']['city'] AS city, cardinality(lines) AS lines, note \
             FROM {view} WHERE _decode_error IS NULL ORDER BY sequence, key"
        ),
    );
    assert_eq!(rows.len(), expected.len());
    let by_key: BTreeMap<&str, &Value> = rows
        .iter()
        .map(|row| (row["key"].as_str().unwrap(), row))
        .collect();
    for (key, value) in expected {
        let row = by_key
            .get(key.as_str())
            .unwrap_or_else(|| panic!("{key} is missing from {view}"));
        let channel = value
            .get("channel")
            .cloned()
            .unwrap_or(Value::from("store"));
        let rank = value.get("rank").cloned().unwrap_or(Value::from(0));
        for (column, want) in [
            ("id", value["id"].clone()),
            ("sequence", value["sequence"].clone()),
            ("quantity", value["quantity"].clone()),
            ("status", value["status"].clone()),
            ("channel", channel),
            ("rank", rank),
            ("city", value["customer"]["address"]["city"].clone()),
            (
                "lines",
                Value::from(value["lines"].as_array().unwrap().len()),
            ),
            ("note", value["note"].clone()),
        ] {
            assert_eq!(
                row[column], want,
                "{column} of {key} in {view}: {row} against {value}"
            );
        }
        assert_eq!(
            row["amount"].as_f64(),
            value["amount"].as_f64(),
            "amount of {key}: {row} against {value}"
        );
    }
}

fn write_config(directory: &Path, topics: &[&str], registry: &Registry) -> PathBuf {
    let topics: Vec<String> = topics.iter().map(|topic| format!("{topic:?}")).collect();
    let password_file = directory.join("registry-password");
    std::fs::write(&password_file, format!("{REGISTRY_PASSWORD}\n")).unwrap();
    crate::kafka::write_config(
        directory,
        &format!("topics = [{}]", topics.join(", ")),
        &unique("hs-schemas"),
        &format!(
            "\n[schemas.registries.main]\nurl = {:?}\nusername = {REGISTRY_USER:?}\npassword_file = {:?}\n",
            registry.url,
            password_file.display().to_string()
        ),
        "15m",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn avro_protobuf_and_json_schema_payloads_decode_like_the_python_deserializers_after_the_registry_is_gone(
) {
    let count = events_per_format();
    let directory = tempfile::tempdir().unwrap();
    let registry = Registry::start_with(
        directory.path(),
        Some(format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}")),
    );
    let avro = create_kafka_topic(&unique("hs.schemas.avro"), 3);
    let protobuf = create_kafka_topic(&unique("hs.schemas.proto"), 3);
    let json = create_kafka_topic(&unique("hs.schemas.json"), 3);

    // Avro whose schema changed twice: versions 1, 2 and 3 of one subject.
    let evolved = (count / 10).max(10);
    let mut expected_avro = produce(&registry, directory.path(), &avro, "avro", 0, count, &[]);
    for (version, start) in [(2, count), (3, count + evolved)] {
        expected_avro.extend(produce(
            &registry,
            directory.path(),
            &avro,
            "avro",
            start,
            evolved,
            &["--schema-version", &version.to_string()],
        ));
    }
    // Schema GUIDs in the `__value_schema_id` header, as confluent-kafka 2.16 writes them.
    expected_avro.extend(produce(
        &registry,
        directory.path(),
        &avro,
        "avro",
        count + 2 * evolved,
        evolved,
        &["--header-ids"],
    ));
    // Protobuf: the second message of the file ([1]), the first (the short
    // form [0]), a nested one ([1, 0]), and GUID headers.
    let mut expected_protobuf = produce(
        &registry,
        directory.path(),
        &protobuf,
        "protobuf",
        0,
        count,
        &[],
    );
    for (start, extra) in [
        (count, vec!["--protobuf-message", "Envelope"]),
        (count + evolved, vec!["--protobuf-message", "Order.Line"]),
        (count + 2 * evolved, vec!["--header-ids"]),
    ] {
        expected_protobuf.extend(produce(
            &registry,
            directory.path(),
            &protobuf,
            "protobuf",
            start,
            evolved,
            &extra,
        ));
    }
    let expected_json = produce(&registry, directory.path(), &json, "json", 0, count, &[]);

    let config = write_config(directory.path(), &[&avro, &protobuf, &json], &registry);
    let shown = run_ok(hindsight().arg("--config").arg(&config).arg("check-config"));
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains(&registry.url), "{shown}");
    assert!(
        !shown.contains(REGISTRY_PASSWORD),
        "check-config shows the registry password"
    );
    let total = expected_avro.len() + expected_protobuf.len() + expected_json.len();
    let (mut archive, _stdout) = start_archive_ready(&config);
    wait_for_archived(
        directory.path(),
        total as i64,
        Duration::from_secs(300 + total as u64 / 2_000),
    )
    .await;
    // The registry is still up: nothing has decoded yet, and still every
    // schema the archived events name was fetched once while archiving.
    let fetched_while_archiving = registry.requests();
    let status = terminate(&mut archive.0);
    assert!(status.success(), "archive did not stop cleanly: {status:?}");
    let schema_fetches = fetched_while_archiving
        .iter()
        .filter(|line| {
            line.starts_with("GET /schemas/ids/") || line.starts_with("GET /schemas/guids/")
        })
        .count();
    println!("schema fetches while archiving {total} events: {schema_fetches}");

    let listed = run_ok(
        hindsight()
            .arg("--config")
            .arg(&config)
            .args(["schemas", "list", "--json"]),
    );
    let listed: Vec<Value> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let subjects: BTreeMap<String, usize> =
        listed.iter().fold(BTreeMap::new(), |mut counts, schema| {
            let subject = schema["subject"].as_str().unwrap_or("-").to_owned();
            *counts.entry(subject).or_default() += 1;
            counts
        });
    println!("stored schemas by subject: {subjects:?}");
    assert_eq!(
        subjects.get(&format!("{avro}-value")),
        Some(&3),
        "three versions of the Avro subject are kept: {listed:?}"
    );
    assert!(
        schema_fetches <= 2 * listed.len() + 2,
        "{schema_fetches} fetches for {} schemas: the capture is not cached",
        listed.len()
    );

    // The registry is gone for good: every decoding below comes from the catalog.
    drop(registry);
    let undecodable_topic = avro.clone();
    let sample = query_json(
        &config,
        &format!("SELECT encode(payload, 'hex') AS p FROM events WHERE topic = '{avro}' LIMIT 1"),
    );
    let bad = produce_undecodable(&undecodable_topic, sample[0]["p"].as_str().unwrap());
    // A JSON body framed with the JSON Schema's id that does not match it
    // (confluent-kafka's JSONDeserializer refuses it too).
    let json_id = query_json(
        &config,
        &format!("SELECT max(payload_schema_id(payload)) AS id FROM events WHERE topic = '{json}'"),
    );
    let json_id = json_id[0]["id"].as_i64().unwrap();
    let mut mismatch = vec![0u8];
    mismatch.extend((json_id as u32).to_be_bytes());
    mismatch.extend(br#"{"id": 7, "sequence": "seven"}"#);
    produce_raw(&json, &[("json-mismatch".to_owned(), hex(&mismatch))]);
    let (mut archive, _stdout) = start_archive_ready(&config);
    wait_for_archived(
        directory.path(),
        (total + bad + 1) as i64,
        Duration::from_secs(120),
    )
    .await;
    let status = terminate(&mut archive.0);
    assert!(status.success(), "archive did not stop cleanly: {status:?}");

    assert_decodes_like_python(&config, &avro, &expected_avro);
    assert_decodes_like_python(&config, &protobuf, &expected_protobuf);
    assert_decodes_like_python(&config, &json, &expected_json);

    // Each Avro version decodes with its own schema id.
    let ids = query_json(
        &config,
        &format!(
            "SELECT count(DISTINCT payload_schema_id(payload)) AS ids FROM events \
             WHERE topic = '{avro}' AND payload_schema_id(payload) IS NOT NULL \
             AND utf8_or_null(key) NOT LIKE 'undecodable-%'"
        ),
    );
    assert_eq!(ids[0]["ids"], 3, "{ids:?}");

    // Bad input: NULL with a reason, and the query completes.
    let errors = query_json(
        &config,
        &format!(
            "SELECT utf8_or_null(key) AS key, decode_payload(payload, topic, headers) AS value, \
             decode_error(payload, topic, headers) AS error FROM events \
             WHERE topic = '{avro}' AND utf8_or_null(key) LIKE 'undecodable-%' ORDER BY 1"
        ),
    );
    assert_eq!(errors.len(), bad, "{errors:?}");
    for row in &errors {
        assert!(row["value"].is_null(), "{row}");
        assert!(
            row["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{row}"
        );
    }
    assert!(
        errors[0]["error"].as_str().unwrap().contains("999"),
        "an unknown id is named: {}",
        errors[0]
    );

    let mismatched = query_json(
        &config,
        &format!(
            "SELECT decode_payload(payload, topic, headers) AS value, \
             decode_error(payload, topic, headers) AS error FROM events \
             WHERE topic = '{json}' AND utf8_or_null(key) = 'json-mismatch'"
        ),
    );
    assert_eq!(mismatched.len(), 1, "{mismatched:?}");
    assert!(mismatched[0]["value"].is_null(), "{mismatched:?}");
    let reason = mismatched[0]["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("does not match its JSON Schema at /"),
        "the reason says where: {reason}"
    );

    // The typed view: real columns, every version read as the newest.
    assert_typed_view_matches(&config, &avro, &expected_avro, bad);

    // The API and search, from the catalog alone.
    let data = directory.path().join("data");
    let (server, address) = serve_data_dir(&data);
    let _server = ChildGuard(server);
    let first_key = &expected_avro[0].0;
    let found = query_json(
        &config,
        &format!("SELECT event_id FROM events WHERE topic = '{avro}' AND key = CAST('{first_key}' AS BYTEA)"),
    );
    let event_id = found[0]["event_id"].as_str().unwrap();
    let (status, body) = http_get(&address, &format!("/api/v1/events/{event_id}"));
    assert_eq!(status, 200, "{body}");
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["decoded"]["format"], "avro", "{event}");
    assert_eq!(event["decoded"]["value"], expected_avro[0].1);
    assert_eq!(event["decoded"]["subject"], format!("{avro}-value"));
    assert_eq!(event["decoded"]["version"], 1);
    let wanted_id = expected_avro[0].1["id"].as_str().unwrap();
    let (status, body) = http_get(
        &address,
        &format!("/api/v1/events?topic={avro}&json=id={wanted_id}&limit=50"),
    );
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    let keys: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event["key"].as_str())
        .collect();
    assert!(
        keys.contains(&first_key.as_str()),
        "search by a decoded field finds {first_key}: {keys:?}"
    );
    // A replay selected by the same decoded field selects the same events.
    let selected = expected_avro
        .iter()
        .filter(|(_, value)| value["id"].as_str() == Some(wanted_id))
        .count();
    let dry_run = run_ok(
        hindsight()
            .arg("--config")
            .arg(&config)
            .args(["replay", "dry-run", "--topic", &avro])
            .args(["--json-field", &format!("id={wanted_id}")])
            .args([
                "--kafka",
                &kafka_brokers(),
                "--to-topic",
                "hs-schemas-never-created",
            ])
            .arg("--json"),
    );
    let report: Value = serde_json::from_slice(&dry_run.stdout).unwrap();
    assert_eq!(report["totals"]["events"], selected, "{report}");
    // The explorer's rows preview the decoded value, not the binary.
    let row = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["key"].as_str() == Some(first_key.as_str()))
        .unwrap();
    let preview = row["decoded_preview"].as_str().unwrap_or_default();
    let whole = expected_avro[0].1.to_string();
    assert!(
        preview.len() > 100 && whole.starts_with(preview.trim_end_matches('…')),
        "a decoded preview of {first_key}: {row}"
    );
}

/// A registry export imported into a fresh catalog decodes the same events.
#[tokio::test(flavor = "multi_thread")]
async fn an_archive_whose_registry_is_lost_decodes_after_importing_an_export() {
    let directory = tempfile::tempdir().unwrap();
    let registry = Registry::start(directory.path());
    let topic = create_kafka_topic(&unique("hs.schemas.lost"), 1);
    let expected = produce(&registry, directory.path(), &topic, "avro", 0, 500, &[]);
    let (status, export) = http_get(
        registry.url.trim_start_matches("http://"),
        "/hindsight-test/export",
    );
    assert_eq!(status, 200, "{export}");
    let export_file = directory.path().join("export.json");
    std::fs::write(&export_file, &export).unwrap();
    drop(registry);

    // No registry configured: archived without capturing anything.
    let config = crate::kafka::write_config(
        directory.path(),
        &format!("topics = [{topic:?}]"),
        &unique("hs-schemas"),
        "",
        "15m",
    );
    let (mut archive, _stdout) = start_archive_ready(&config);
    wait_for_archived(
        directory.path(),
        expected.len() as i64,
        Duration::from_secs(120),
    )
    .await;
    terminate(&mut archive.0);
    let before = query_json(
        &config,
        &format!("SELECT count(*) AS n FROM events WHERE topic = '{topic}' AND decode_payload(payload, topic) IS NULL"),
    );
    assert_eq!(
        before[0]["n"],
        expected.len(),
        "nothing decodes before the import"
    );

    let imported = run_ok(
        hindsight()
            .arg("--config")
            .arg(&config)
            .args(["schemas", "import", "--registry", "lost", "--export"])
            .arg(&export_file),
    );
    println!("{}", String::from_utf8_lossy(&imported.stdout));
    assert_decodes_like_python(&config, &topic, &expected);
    // Importing again keeps what is stored.
    let again = run_ok(
        hindsight()
            .arg("--config")
            .arg(&config)
            .args(["schemas", "import", "--registry", "lost", "--export"])
            .arg(&export_file),
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("imported 0 schema(s)"));
    let shown = run_ok(
        hindsight()
            .arg("--config")
            .arg(&config)
            .args(["schemas", "show", "1", "--json"]),
    );
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["registry"], "lost");
    assert_eq!(shown["format"], "avro");
}

/// The registry behind TLS (the CA of scripts/services.sh), asking for a
/// bearer token: Hindsight's client verifies its certificate with
/// `ca_file`, sends the token, and `check-config --connect` names the
/// registry, its address and the cause when the CA or the token is wrong.
#[tokio::test(flavor = "multi_thread")]
async fn a_registry_behind_tls_with_a_bearer_token_is_used_and_a_wrong_ca_or_token_is_named() {
    const TOKEN: &str = "registry-bearer-5150";
    let directory = tempfile::tempdir().unwrap();
    let state = directory.path().join("registry-state.json");
    let topic = create_kafka_topic(&unique("hs.schemas.tls"), 1);
    // The producer registers through a plain registry; the secure one
    // serves the same schemas from the state file.
    let expected = {
        let plain_dir = directory.path().join("plain");
        std::fs::create_dir_all(&plain_dir).unwrap();
        let plain = Registry::start_with_args(
            &plain_dir,
            None,
            &["--state".as_ref(), state.as_os_str()],
            "http",
        );
        produce(&plain, &plain_dir, &topic, "avro", 0, 300, &[])
    };
    let secure_dir = directory.path().join("secure");
    std::fs::create_dir_all(&secure_dir).unwrap();
    let cert = crate::secure::tls_file("server.pem");
    let key = crate::secure::tls_file("server.key");
    let registry = Registry::start_with_args(
        &secure_dir,
        None,
        &[
            "--state".as_ref(),
            state.as_os_str(),
            "--token".as_ref(),
            TOKEN.as_ref(),
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
        ],
        "https",
    );
    let port = registry.url.rsplit(':').next().unwrap().to_owned();
    let config_with = |name: &str, ca: &str, token: &str| {
        let dir = directory.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let token_file = dir.join("registry-token");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        crate::kafka::write_config(
            &dir,
            &format!("topics = [{topic:?}]"),
            &unique("hs-schemas"),
            &format!(
                "\n[schemas.registries.main]\nurl = {:?}\ntoken_file = {:?}\nca_file = {:?}\n",
                registry.url,
                token_file.display().to_string(),
                crate::secure::tls_file(ca).display().to_string()
            ),
            "15m",
        )
    };
    let connect = |config: &Path| {
        let output = hindsight()
            .arg("--config")
            .arg(config)
            .args(["check-config", "--connect"])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // The first failure's line, if any.
        let failed = text
            .lines()
            .find(|line| line.starts_with("FAILED"))
            .unwrap_or_default()
            .to_owned();
        (output.status.success(), text, failed)
    };
    let good = config_with("good", "ca.pem", TOKEN);
    let (ok, text, _) = connect(&good);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!(
            "ok      schema registry \"main\" (https://127.0.0.1:{port}/): serves AVRO"
        )),
        "{text}"
    );
    let (ok, text, line) = connect(&config_with("wrong-ca", "other-ca.pem", TOKEN));
    assert!(!ok, "{text}");
    assert!(
        line.contains("schema registry \"main\"")
            && line.contains(&format!("127.0.0.1:{port}"))
            && line.to_lowercase().contains("certificate"),
        "one line naming the registry, its address and the certificate: {text}"
    );
    println!("{line}");
    let (ok, text, line) = connect(&config_with("wrong-token", "ca.pem", "not-the-token"));
    assert!(!ok, "{text}");
    assert!(
        line.contains("schema registry \"main\"") && line.contains("401"),
        "{text}"
    );
    println!("{line}");
    assert!(
        !text.contains("not-the-token") && !text.contains(TOKEN),
        "a token is shown: {text}"
    );

    // Archived with the good configuration, every event decodes with the
    // schemas fetched over TLS with the token.
    let (mut archive, _stdout) = start_archive_ready(&good);
    wait_for_archived(
        good.parent().unwrap(),
        expected.len() as i64,
        Duration::from_secs(120),
    )
    .await;
    terminate(&mut archive.0);
    assert_decodes_like_python(&good, &topic, &expected);
    let fetched = registry
        .requests()
        .iter()
        .filter(|request| request.starts_with("GET /schemas/ids/"))
        .count();
    assert!(
        fetched > 0,
        "nothing was fetched from the secure registry: {:?}",
        registry.requests()
    );
}
