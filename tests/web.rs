//! The web UI in real headless Chromium (Debian's `/usr/bin/chromium`,
//! driven by `playwright-core` from npm) against `hindsight demo` and
//! `hindsight serve`: `tests/web/e2e.mjs` clicks through the overview,
//! a key search, an event, the SQL console and a replay to Tansu, and fails
//! on any browser console error. Screenshots go to
//! `$CARGO_TARGET_DIR/web-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{
    archive_demo, create_kafka_topic, hindsight, kafka_brokers, local_connections, read_until,
    spawn_with_stdout, ChildGuard, START_SERVICES,
};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Where scripts/services.sh installs playwright-core.
fn web_test_modules() -> PathBuf {
    std::env::var_os("HINDSIGHT_WEB_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/hindsight/web-tests")
        })
}

/// Fails loudly, with the command that installs them, when the browser
/// tools are missing.
fn require_browser_tools() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install chromium, node and playwright-core with {START_SERVICES}"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|output| output.status.success()),
        "node is missing ({node:?}): install it with {START_SERVICES}"
    );
    let playwright = web_test_modules().join("node_modules/playwright-core/package.json");
    assert!(
        playwright.exists(),
        "{} is missing: install playwright-core with {START_SERVICES}",
        playwright.display()
    );
}

fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory holds tmp/")
        .join("web-screenshots")
}

/// Starts `hindsight demo` or `serve`; returns it (killed on drop) and its
/// base URL, from "serving the API and UI on http://ADDRESS/".
pub(crate) fn start_server(command: &mut Command, timeout: Duration) -> (ChildGuard, String) {
    let (child, mut stdout) = spawn_with_stdout(command);
    let server = ChildGuard(child);
    let lines = read_until(&mut stdout, "serving the API and UI on", timeout);
    let address = lines
        .last()
        .and_then(|line| line.split("http://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {lines:#?}"))
        .to_owned();
    (server, format!("http://{address}"))
}

/// Runs e2e.mjs; panics with its whole output unless it passed. Returns
/// stdout and the JSON of its `RESULT` line.
fn run_browser(args: &[&str]) -> (String, serde_json::Value) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/web/e2e.mjs");
    let output = Command::new("node")
        .arg(script)
        .args(args)
        .env("HINDSIGHT_WEB_TEST_DIR", web_test_modules())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run node ({e}); set up with {START_SERVICES}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "browser test failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    let result = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{stdout}\n{stderr}"));
    (stdout.clone(), serde_json::from_str(result).unwrap())
}

/// Reads `topic` back with confluent-kafka; returns the JSON lines of
/// tests/support/replay_consume.py.
fn consume(topic: &str, at_most: u64) -> Vec<serde_json::Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/replay_consume.py"
    );
    let output = Command::new("python3")
        .args([script, &kafka_brokers(), topic, &at_most.to_string(), "5"])
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); set up with {START_SERVICES}"));
    assert!(
        output.status.success(),
        "the confluent-kafka consumer failed"
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn header(record: &serde_json::Value, name: &str) -> Option<String> {
    record["h"].as_array()?.iter().find_map(|pair| {
        (pair[0].as_str() == Some(name)).then(|| {
            let hex = pair[1].as_str().unwrap_or_default();
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            String::from_utf8(bytes).unwrap()
        })
    })
}

#[test]
fn browser_overview_search_event_sql_and_replay_to_kafka() {
    require_browser_tools();
    let data = tempfile::tempdir().unwrap();
    // The replay wizard's targets: the named connections local-kafka (at
    // kafka_brokers()) and local-rabbit. Outside the data directory, which
    // is the store's root.
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("hindsight.toml");
    std::fs::write(&config, local_connections()).unwrap();
    let (_server, base) = start_server(
        hindsight()
            .arg("--config")
            .arg(&config)
            .arg("demo")
            .args(["--events", "20000", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path()),
        Duration::from_secs(300),
    );
    let topic = create_kafka_topic(&format!("web-replay-{}", uuid::Uuid::new_v4().simple()), 3);
    let shots = screenshot_dir();
    let (output, result) = run_browser(&[
        "flows",
        &base,
        shots.to_str().unwrap(),
        &kafka_brokers(),
        &topic,
    ]);
    println!("{output}");

    // What the browser saw finish is on the broker, once, from this replay.
    let replay_id = result["replay_id"]
        .as_str()
        .expect("a replay id")
        .to_owned();
    let replayed = result["replayed"].as_u64().expect("a replayed count");
    assert!(replayed > 0);
    assert!(
        result["paused_at"].as_u64().unwrap() < replayed,
        "the replay was paused mid-way: {result}"
    );
    let records = consume(&topic, replayed * 2);
    assert_eq!(records.len() as u64, replayed, "records on {topic}");
    let mut event_ids: Vec<String> = records
        .iter()
        .map(|record| {
            assert_eq!(
                header(record, "hindsight-replay-id").as_deref(),
                Some(replay_id.as_str())
            );
            assert_eq!(header(record, "hindsight-topic").as_deref(), Some("orders"));
            header(record, "hindsight-event-id").expect("provenance event id")
        })
        .collect();
    event_ids.sort();
    event_ids.dedup();
    assert_eq!(
        event_ids.len() as u64,
        replayed,
        "each event published once"
    );
}

#[test]
fn browser_explorer_first_render_over_a_million_events() {
    require_browser_tools();
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), 1_000_000);
    let (_server, base) = start_server(
        hindsight()
            .arg("--data-dir")
            .arg(data.path())
            .args(["serve", "--listen", "127.0.0.1:0"]),
        Duration::from_secs(60),
    );
    let shots = screenshot_dir();
    let (output, result) = run_browser(&["first-render", &base, shots.to_str().unwrap()]);
    assert_eq!(result["events"].as_u64(), Some(1_000_000), "{result}");
    assert_eq!(result["measurements"].as_array().map(Vec::len), Some(3));
    // Printed, not asserted: a figure for people (also kept next to the screenshots).
    let figures: String = output
        .lines()
        .filter(|line| line.starts_with("explorer first render"))
        .map(|line| format!("{line}\n"))
        .collect();
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let report = format!("hindsight {build} build\n{figures}");
    std::fs::write(shots.join("first-render.txt"), &report).unwrap();
    println!("{report}");
    eprintln!("{report}");
}

#[test]
fn browser_asks_for_the_api_token_and_then_works() {
    require_browser_tools();
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), 2_000);
    let token = format!("web-{}", uuid::Uuid::new_v4().simple());
    let (_server, base) = start_server(
        hindsight()
            .env("HINDSIGHT__HTTP__AUTH_TOKEN", &token)
            .arg("--data-dir")
            .arg(data.path())
            .args(["serve", "--listen", "127.0.0.1:0"]),
        Duration::from_secs(60),
    );
    let shots = screenshot_dir();
    let (_, result) = run_browser(&["token", &base, shots.to_str().unwrap(), &token]);
    assert!(result["refused"].as_u64().unwrap() >= 2, "{result}");
}

/// Runs e2e.mjs `tombstone` on a served archive that holds `topic`: the
/// event pages of a tombstone and of an empty value, and the explorer's
/// previews, tell the two apart (called by tests/tombstone.rs).
pub(crate) fn check_tombstones_in_the_browser(
    base: &str,
    topic: &str,
    tombstone_id: &str,
    empty_id: &str,
) {
    require_browser_tools();
    let shots = screenshot_dir();
    let (_, result) = run_browser(&[
        "tombstone",
        base,
        shots.to_str().unwrap(),
        topic,
        tombstone_id,
        empty_id,
    ]);
    assert!(
        result["tombstones_listed"].as_u64().unwrap() > 0,
        "{result}"
    );
}
