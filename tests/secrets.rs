//! Secrets never leave the configuration: the S3 secret key, a RabbitMQ
//! source's password, a Kafka source's SASL password, the API token, a
//! replay target's password, and every secret of the named connections (a
//! SASL password read from a file, an OAUTHBEARER token, an OIDC client
//! secret, a TLS key password, a RabbitMQ password given by environment
//! variable) are absent from `check-config` (and its `--connect` report),
//! from logs at debug level, from every API response, from the catalog's
//! files and from the replay commands' output, while what they guard (the
//! bucket, the sources, the connections) still shows.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::query::{http, HttpResponse};
use crate::replay::amqp_url;
use crate::store::{create_bucket, s3_endpoint};
use crate::util::{
    catalog_url, hindsight, kafka_brokers, read_until, run_ok, terminate, ChildGuard,
};

/// One fresh random string for every place the configuration holds a secret.
struct Secrets {
    s3_secret_access_key: String,
    amqp_source_password: String,
    kafka_sasl_password: String,
    http_auth_token: String,
    replay_target_password: String,
    connection_sasl_password: String,
    connection_oauth_token: String,
    connection_oidc_client_secret: String,
    connection_tls_key_password: String,
    connection_amqp_password: String,
}

impl Secrets {
    fn new() -> Self {
        let fresh = || uuid::Uuid::new_v4().simple().to_string();
        Secrets {
            s3_secret_access_key: fresh(),
            amqp_source_password: fresh(),
            kafka_sasl_password: fresh(),
            http_auth_token: fresh(),
            replay_target_password: fresh(),
            connection_sasl_password: fresh(),
            connection_oauth_token: fresh(),
            connection_oidc_client_secret: fresh(),
            connection_tls_key_password: fresh(),
            // From an environment variable: a prefix keeps figment from
            // reading an all-digit value as a number.
            connection_amqp_password: format!("env-{}", fresh()),
        }
    }

    fn all(&self) -> [(&'static str, &str); 10] {
        [
            ("storage.secret_access_key", &self.s3_secret_access_key),
            ("the RabbitMQ source's password", &self.amqp_source_password),
            (
                "the Kafka source's sasl.password",
                &self.kafka_sasl_password,
            ),
            ("http.auth_token", &self.http_auth_token),
            ("the replay target's password", &self.replay_target_password),
            (
                "connections.secret-kafka.sasl.password_file's content",
                &self.connection_sasl_password,
            ),
            (
                "connections.secret-token.sasl.token",
                &self.connection_oauth_token,
            ),
            (
                "connections.secret-oidc.sasl.oidc.client_secret",
                &self.connection_oidc_client_secret,
            ),
            (
                "connections.secret-oidc.tls.key_password",
                &self.connection_tls_key_password,
            ),
            (
                "HINDSIGHT__CONNECTIONS__SECRET_RABBIT__PASSWORD",
                &self.connection_amqp_password,
            ),
        ]
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Fails naming every secret found in any of `places` (what, bytes), with
/// the text around it.
fn assert_no_secret(secrets: &Secrets, places: &[(String, Vec<u8>)]) {
    assert!(!places.is_empty(), "nothing was checked for secrets");
    let mut leaks = Vec::new();
    for (what, bytes) in places {
        for (name, secret) in secrets.all() {
            if let Some(at) = bytes
                .windows(secret.len())
                .position(|window| window == secret.as_bytes())
            {
                let start = at.saturating_sub(80);
                let end = (at + secret.len() + 80).min(bytes.len());
                leaks.push(format!(
                    "{name} in {what}: …{}…",
                    String::from_utf8_lossy(&bytes[start..end])
                ));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

/// `host:port` of the test RabbitMQ.
fn amqp_host() -> String {
    let url = amqp_url();
    let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let after_user = after_scheme
        .rsplit_once('@')
        .map_or(after_scheme, |(_, rest)| rest);
    after_user
        .split('/')
        .next()
        .unwrap_or(after_user)
        .to_owned()
}

/// A configuration with every secret in its place: S3 storage (the catalog
/// stays in `<directory>/data`), the API token, a Kafka source with SASL
/// and a RabbitMQ source whose password RabbitMQ does not know.
fn write_config(directory: &Path, bucket: &str, secrets: &Secrets) -> PathBuf {
    let file = directory.join("hindsight.toml");
    let text = format!(
        r#"data_dir = "{data}"

[storage]
url = "s3://{bucket}/archive"
endpoint = "{endpoint}"
region = "us-east-1"
access_key_id = "test"
secret_access_key = "{s3}"
allow_http = true

[http]
auth_token = "{token}"

[[sources]]
type = "kafka"
name = "secret-kafka"
brokers = ["{brokers}"]
topics = ["hs-secret-test-topic"]
group_id = "hs-secret-test"
client = {{ "security.protocol" = "SASL_PLAINTEXT", "sasl.mechanism" = "PLAIN", "sasl.username" = "hs-sasl-user", "sasl.password" = "{kafka}" }}

[[sources]]
type = "amqp"
name = "secret-amqp"
url = "amqp://hs-amqp-user:{amqp}@{host}/%2f"
queue = "hs-secret-test-queue"

[[sources.bindings]]
exchange = "hs-secret-test-exchange"

[connections.secret-kafka]
bus = "kafka"
brokers = ["{sasl_brokers}"]
security_protocol = "sasl_plaintext"
sasl = {{ mechanism = "scram-sha-512", username = "hs-sasl-user", password_file = "{sasl_file}" }}

[connections.secret-token]
bus = "kafka"
brokers = ["{sasl_brokers}"]
security_protocol = "sasl_plaintext"
sasl = {{ mechanism = "oauthbearer", token = "{token_value}" }}

[connections.secret-oidc]
bus = "kafka"
brokers = ["{brokers}"]
security_protocol = "sasl_ssl"
sasl = {{ mechanism = "oauthbearer", oidc = {{ token_endpoint = "http://127.0.0.1:9/token", client_id = "hs-client", client_secret = "{oidc}" }} }}
tls = {{ key_password = "{key_password}" }}

[connections.secret_rabbit]
bus = "amqp"
url = "amqp://hs-amqp-user@{host}/%2f"
"#,
        sasl_file = {
            let file = directory.join("sasl-password");
            std::fs::write(&file, format!("{}\n", secrets.connection_sasl_password)).unwrap();
            file.display().to_string()
        },
        sasl_brokers = crate::secure::service_env("HINDSIGHT_TEST_KAFKA_SASL_BROKERS"),
        token_value = secrets.connection_oauth_token,
        oidc = secrets.connection_oidc_client_secret,
        key_password = secrets.connection_tls_key_password,
        data = directory.join("data").display(),
        endpoint = s3_endpoint(),
        s3 = secrets.s3_secret_access_key,
        token = secrets.http_auth_token,
        brokers = kafka_brokers(),
        kafka = secrets.kafka_sasl_password,
        amqp = secrets.amqp_source_password,
        host = amqp_host(),
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// `hindsight --config CONFIG` logging at debug level, with the S3 keys
/// only from the configuration (not from `AWS_*` variables).
fn hindsight_with(config: &Path, secrets: &Secrets) -> Command {
    let mut command = hindsight();
    command
        .arg("--config")
        .arg(config)
        .env(
            "HINDSIGHT__CONNECTIONS__SECRET_RABBIT__PASSWORD",
            &secrets.connection_amqp_password,
        )
        .env("HINDSIGHT_LOG", "debug")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    command
}

fn printed(output: &Output) -> Vec<u8> {
    let mut bytes = output.stdout.clone();
    bytes.extend_from_slice(&output.stderr);
    bytes
}

/// Runs `command` with stdout and stderr in files under `directory`; fails
/// when it still runs after `limit`. Returns its status and everything it printed.
fn run_within(command: &mut Command, directory: &Path, limit: Duration) -> (ExitStatus, Vec<u8>) {
    let stdout = directory.join("run.stdout");
    let stderr = directory.join("run.stderr");
    command
        .stdout(File::create(&stdout).unwrap())
        .stderr(File::create(&stderr).unwrap());
    let mut child = ChildGuard(command.spawn().expect("spawn hindsight"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < limit,
            "{command:?} still runs after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut bytes = std::fs::read(&stdout).unwrap();
    bytes.extend(std::fs::read(&stderr).unwrap());
    (status, bytes)
}

/// The SQLite catalog's files (`catalog.db`, and its `-wal` and `-shm` while
/// a process has it open), as (name, bytes).
fn catalog_files(directory: &Path) -> Vec<(String, Vec<u8>)> {
    let url = catalog_url(directory);
    let database = PathBuf::from(url.trim_start_matches("sqlite://"));
    let folder = database.parent().expect("the catalog's directory");
    let name = database
        .file_name()
        .expect("the catalog's file name")
        .to_string_lossy()
        .into_owned();
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("no catalog directory {} ({e})", folder.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.is_file()
                && path
                    .file_name()
                    .is_some_and(|file| file.to_string_lossy().starts_with(&name))
        })
        .map(|path| (path.display().to_string(), std::fs::read(&path).unwrap()))
        .collect();
    files.sort();
    assert!(
        files.iter().any(|(_, bytes)| !bytes.is_empty()),
        "no catalog file at {}",
        database.display()
    );
    files
}

#[test]
fn check_config_prints_the_configuration_without_its_secrets() {
    let directory = tempfile::tempdir().unwrap();
    let secrets = Secrets::new();
    // check-config reaches no service: the bucket need not exist.
    let bucket = format!("hs-secret-bucket-{}", uuid::Uuid::new_v4().simple());
    let config = write_config(directory.path(), &bucket, &secrets);
    let output = hindsight_with(&config, &secrets)
        .arg("check-config")
        .output()
        .unwrap();
    let bytes = printed(&output);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(output.status.success(), "check-config failed: {text}");
    for shown in [
        bucket.as_str(),
        "secret-kafka",
        "secret-amqp",
        "secret-token",
        "secret-oidc",
        "secret_rabbit",
        "hs-client",
    ] {
        assert!(
            text.contains(shown),
            "check-config must still print the configuration ({shown} is missing): {text}"
        );
    }
    // Each connection tried once: they all fail (no such users), and the
    // report names them without a secret.
    let connect = hindsight_with(&config, &secrets)
        .args(["check-config", "--connect"])
        .output()
        .unwrap();
    let report = printed(&connect);
    let report_text = String::from_utf8_lossy(&report).into_owned();
    assert!(!connect.status.success(), "{report_text}");
    for name in [
        "secret-kafka",
        "secret-token",
        "secret-oidc",
        "secret_rabbit",
    ] {
        assert!(
            report_text.contains(&format!("FAILED  connection \"{name}\"")),
            "{name} is not reported as failed: {report_text}"
        );
    }
    assert_no_secret(
        &secrets,
        &[
            ("check-config's output".to_owned(), bytes),
            ("check-config --connect's output".to_owned(), report),
        ],
    );
}

#[test]
fn an_ingester_refused_by_its_broker_names_the_source_but_no_password() {
    let directory = tempfile::tempdir().unwrap();
    let secrets = Secrets::new();
    let config = write_config(directory.path(), &create_bucket(), &secrets);
    let (status, bytes) = run_within(
        hindsight_with(&config, &secrets).arg("archive"),
        directory.path(),
        Duration::from_secs(120),
    );
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(
        !status.success(),
        "archive ran although RabbitMQ does not know its user: {text}"
    );
    // `main` prints the error that ended the command as `error: …`.
    let error = text
        .lines()
        .find(|line| line.starts_with("error:"))
        .unwrap_or_else(|| panic!("archive failed without an error line: {text}"));
    // Both sources are refused (the Kafka one by a broker without SASL,
    // the RabbitMQ one by a password it does not know); the first to
    // start is named.
    assert!(
        error.contains("secret-amqp") || error.contains("secret-kafka"),
        "the error must name the source that could not log in: {error}"
    );
    assert_no_secret(
        &secrets,
        &[("archive's output (HINDSIGHT_LOG=debug)".to_owned(), bytes)],
    );
}

#[test]
fn secrets_stay_out_of_logs_api_responses_the_catalog_and_replay_output() {
    let directory = tempfile::tempdir().unwrap();
    let secrets = Secrets::new();
    let bucket = create_bucket();
    let config = write_config(directory.path(), &bucket, &secrets);
    let host = amqp_host();
    let mut checked: Vec<(String, Vec<u8>)> = Vec::new();

    // The demo archives into S3 with the secret key.
    let demo =
        run_ok(hindsight_with(&config, &secrets).args(["demo", "--no-serve", "--events", "2000"]));
    checked.push(("demo's output".to_owned(), printed(&demo)));

    let log_file = directory.path().join("serve.log");
    let mut command = hindsight_with(&config, &secrets);
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(File::create(&log_file).unwrap());
    let mut server = ChildGuard(command.spawn().expect("spawn hindsight serve"));
    let mut stdout = BufReader::new(server.0.stdout.take().expect("piped stdout"));
    let serving = read_until(&mut stdout, "serving the API", Duration::from_secs(60));
    let address = serving
        .last()
        .and_then(|line| line.split("http://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .expect("address in the serving line")
        .to_owned();

    let bearer = format!("Bearer {}", secrets.http_auth_token);
    let get = |path: &str| {
        http(
            &address,
            "GET",
            path,
            &[("Authorization", bearer.as_str())],
            b"",
        )
    };
    let post = |path: &str, body: &Value| {
        http(
            &address,
            "POST",
            path,
            &[
                ("Authorization", bearer.as_str()),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    };
    let mut keep = |what: String, response: HttpResponse| -> Value {
        let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        checked.push((what, response.body));
        body
    };

    for path in [
        "/api/v1/topics",
        "/api/v1/sources",
        "/api/v1/openapi.json",
        "/api/v1/replays",
        "/metrics",
    ] {
        let response = get(path);
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        keep(format!("GET {path}"), response);
    }

    // The API never takes credentials: a target URL with a password is
    // refused, without echoing it.
    let response = post(
        "/api/v1/replays",
        &json!({
            "dry_run": true,
            "selection": {"type": "filter", "source": "demo"},
            "target": {
                "type": "amqp",
                "url": format!("amqp://guest:{}@{host}/%2f", secrets.replay_target_password),
                "exchange": "hs-secret-replay-target",
            },
        }),
    );
    assert_eq!(response.status, 400, "{}", response.text());
    keep("POST /api/v1/replays with a password".to_owned(), response);
    let response = get("/api/v1/connections");
    assert_eq!(response.status, 200, "{}", response.text());
    let listed = keep("GET /api/v1/connections".to_owned(), response).to_string();
    for name in [
        "secret-kafka",
        "secret-token",
        "secret-oidc",
        "secret_rabbit",
    ] {
        assert!(listed.contains(name), "{name} is not listed: {listed}");
    }

    // A dry-run and a run through a named connection whose password
    // RabbitMQ does not know: the dry-run publishes nothing, the run fails
    // to log in; both are recorded.
    let target = json!({
        "type": "amqp",
        "connection": "secret_rabbit",
        "exchange": "hs-secret-replay-target",
    });
    let mut ids = Vec::new();
    for dry_run in [true, false] {
        let what = format!("POST /api/v1/replays (dry_run {dry_run})");
        let response = post(
            "/api/v1/replays",
            &json!({
                "dry_run": dry_run,
                "selection": {"type": "filter", "source": "demo"},
                "target": target,
                "options": {"sample": 1},
            }),
        );
        let status = response.status;
        let text = response.text();
        let body = keep(what.clone(), response);
        if status == 200 || status == 202 {
            let id = body["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: no id in {body}"));
            ids.push(id.to_owned());
        } else {
            assert!(
                body["error"].is_string(),
                "{what}: {status} without a JSON error: {text}"
            );
        }
    }
    assert!(
        !ids.is_empty(),
        "neither the dry-run nor the run was recorded, so no record is checked"
    );
    for id in &ids {
        let path = format!("/api/v1/replays/{id}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let view = loop {
            let response = get(&path);
            assert_eq!(response.status, 200, "GET {path}: {}", response.text());
            let view = keep(format!("GET {path}"), response);
            if view["status"] != "running" || Instant::now() > deadline {
                break view;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        assert_ne!(
            view["status"], "running",
            "a replay to a broker that refuses its login still runs: {view}"
        );
        let shown = view["target"].to_string();
        assert!(
            shown.contains("secret_rabbit"),
            "replay {id} must still show where it went (secret_rabbit): {shown}"
        );
    }
    let response = get("/api/v1/replays");
    assert_eq!(response.status, 200, "{}", response.text());
    let list = keep("GET /api/v1/replays".to_owned(), response);
    let listed = list.to_string();
    assert!(
        ids.iter().all(|id| listed.contains(id.as_str())),
        "the list lacks {ids:?}: {list}"
    );

    // A wrong token and none: refused, without echoing anything secret.
    let response = http(
        &address,
        "GET",
        "/api/v1/topics",
        &[("Authorization", "Bearer not-the-token")],
        b"",
    );
    assert_eq!(response.status, 401, "{}", response.text());
    keep("GET /api/v1/topics with a wrong token".to_owned(), response);
    let response = http(&address, "GET", "/api/v1/replays", &[], b"");
    assert_eq!(response.status, 401, "{}", response.text());
    keep("GET /api/v1/replays without a token".to_owned(), response);

    // The catalog while the server holds it open, write-ahead log included.
    for (file, bytes) in catalog_files(directory.path()) {
        checked.push((format!("{file} while serving"), bytes));
    }
    let status = terminate(&mut server.0);
    assert!(status.success(), "serve did not exit cleanly: {status:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    checked.push((
        "serve's stdout".to_owned(),
        format!("{}\n{rest}", serving.join("\n")).into_bytes(),
    ));
    let log = std::fs::read(&log_file).unwrap();
    assert!(
        String::from_utf8_lossy(&log).contains("DEBUG"),
        "serve logged nothing at debug level, so its log proves nothing"
    );
    checked.push(("serve's log (HINDSIGHT_LOG=debug)".to_owned(), log));

    // The catalog at rest: it holds the records, not the password.
    let catalog = catalog_files(directory.path());
    let everything: Vec<u8> = catalog
        .iter()
        .flat_map(|(_, bytes)| bytes.clone())
        .collect();
    assert!(
        ids.iter().all(|id| contains(&everything, id.as_bytes())),
        "the catalog does not hold the replays {ids:?}"
    );
    assert!(
        contains(&everything, b"secret_rabbit"),
        "the catalog does not record where the replays went (secret_rabbit)"
    );
    for (file, bytes) in catalog {
        checked.push((format!("{file} at rest"), bytes));
    }

    // The replay commands.
    let list = run_ok(hindsight_with(&config, &secrets).args(["replay", "list"]));
    assert!(
        ids.iter()
            .all(|id| String::from_utf8_lossy(&list.stdout).contains(id.as_str())),
        "replay list lacks {ids:?}: {}",
        String::from_utf8_lossy(&list.stdout)
    );
    checked.push(("replay list".to_owned(), printed(&list)));
    for id in &ids {
        let show = run_ok(hindsight_with(&config, &secrets).args(["replay", "show", id]));
        let shown = String::from_utf8_lossy(&show.stdout).into_owned();
        assert!(
            shown.contains("secret_rabbit"),
            "replay show {id} must still show where it went (secret_rabbit): {shown}"
        );
        checked.push((format!("replay show {id}"), printed(&show)));
    }

    assert_no_secret(&secrets, &checked);
}
