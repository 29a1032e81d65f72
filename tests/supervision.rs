//! A replay started over HTTP belongs to the server's task tree: SIGTERM
//! stops it at a checkpoint (status `interrupted`) and the server exits
//! promptly and cleanly; after a restart, `POST …/resume` finishes it, and
//! every archived event reaches the target, copies coming only from the
//! windows in flight at the stop (at most two, ARCHITECTURE.md).

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::query::{http, HttpResponse};
use crate::replay::{consume_kafka, unique};
use crate::util::{archive_demo, create_kafka_topic, query_rows, serve_data_dir, ChildGuard};

const EVENTS: u64 = 20_000;
const WINDOW: u64 = 1_000;
/// Events per second: 20,000 events take ten seconds, so the replay still
/// runs when SIGTERM comes.
const RATE: f64 = 2_000.0;

fn get_json(address: &str, path: &str) -> Value {
    let response = http(address, "GET", path, &[], b"");
    assert_eq!(response.status, 200, "GET {path}: {}", response.text());
    response.json()
}

/// A POST as the UI sends it: `Content-Type: application/json`, body or not.
fn post_json(address: &str, path: &str, body: &str) -> HttpResponse {
    http(
        address,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// Polls `GET path` until `done` holds for the replay's view, and returns it.
fn wait_for(
    address: &str,
    path: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let view = get_json(address, path);
        if done(&view) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {timeout:?}: {view}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends SIGTERM and waits at most `limit` for the exit.
fn terminate_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let started = Instant::now();
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {} failed", child.id());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            eprintln!("exited {:?} after SIGTERM", started.elapsed());
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "still running {limit:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_replay_stopped_by_sigterm_is_interrupted_and_resumes_over_http_after_a_restart_losing_nothing()
{
    stop_serve_mid_replay_then_resume_over_http(Stop::Term);
}

/// A killed server leaves its replay `running`, with no process to run it:
/// `resume` with `take_over` starts it on the restarted server.
#[test]
fn a_replay_left_running_by_a_killed_server_is_taken_over_over_http_losing_nothing() {
    stop_serve_mid_replay_then_resume_over_http(Stop::Kill);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Term,
    Kill,
}

fn stop_serve_mid_replay_then_resume_over_http(stop: Stop) {
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), EVENTS);
    let archived: HashSet<String> = query_rows(data.path(), "SELECT event_id FROM events")
        .iter()
        .map(|row| row["event_id"].as_str().expect("event_id").to_owned())
        .collect();
    assert_eq!(archived.len() as u64, EVENTS);
    let target = create_kafka_topic(&unique("hs-supervised"), 3);

    let (child, address) = serve_data_dir(data.path());
    let mut server = ChildGuard(child);
    let spec = json!({
        "selection": {"type": "filter", "source": "demo"},
        "target": {"type": "kafka", "connection": "local-kafka", "topic": target},
        "options": {"rate": RATE, "window": WINDOW},
    });
    let response = post_json(&address, "/api/v1/replays", &spec.to_string());
    assert_eq!(response.status, 202, "{}", response.text());
    let id = response.json()["id"]
        .as_str()
        .expect("the started replay's id")
        .to_owned();
    let path = format!("/api/v1/replays/{id}");
    // Two windows checkpointed, most of the replay still ahead.
    let running = wait_for(
        &address,
        &path,
        "two checkpointed windows",
        Duration::from_secs(60),
        |view| {
            view["status"] != "running"
                || view["progress"]["published"].as_u64().unwrap_or(0) >= 2 * WINDOW
        },
    );
    assert_eq!(running["status"], "running", "{running}");

    match stop {
        Stop::Term => {
            let status = terminate_within(&mut server.0, Duration::from_secs(30));
            assert!(
                status.success(),
                "serve exited with {status:?} on SIGTERM while a replay ran"
            );
        }
        Stop::Kill => {
            server.0.kill().unwrap();
            server.0.wait().unwrap();
        }
    }

    let (child, address) = serve_data_dir(data.path());
    let mut server = ChildGuard(child);
    let interrupted = get_json(&address, &path);
    let expected = match stop {
        Stop::Term => "interrupted",
        Stop::Kill => "running",
    };
    assert_eq!(
        interrupted["status"], expected,
        "a replay whose server was stopped ({stop:?}): {interrupted}"
    );
    let published = interrupted["progress"]["published"]
        .as_u64()
        .unwrap_or_else(|| panic!("no progress.published in {interrupted}"));
    assert!(
        (2 * WINDOW..EVENTS).contains(&published),
        "SIGTERM must land mid-replay, after the windows seen published: {interrupted}"
    );
    let resend = interrupted["progress"]["resend_on_resume"]
        .as_u64()
        .unwrap_or_else(|| panic!("no progress.resend_on_resume in {interrupted}"));

    let body = match stop {
        Stop::Term => "",
        Stop::Kill => r#"{"take_over": true}"#,
    };
    let response = post_json(&address, &format!("{path}/resume"), body);
    assert!(
        [200, 202].contains(&response.status),
        "resume: {} {}",
        response.status,
        response.text()
    );
    let finished = wait_for(
        &address,
        &path,
        "end of the resumed replay",
        Duration::from_secs(120),
        |view| {
            ["completed", "failed", "cancelled"]
                .iter()
                .any(|status| view["status"] == *status)
        },
    );
    assert_eq!(finished["status"], "completed", "{finished}");
    assert_eq!(finished["progress"]["failed"], 0, "{finished}");

    let consumed = consume_kafka(&target, EVENTS + 2 * WINDOW, 15);
    let mut copies: HashMap<String, u64> = HashMap::new();
    for message in &consumed {
        assert_eq!(
            message.header("hindsight-replay-id").as_deref(),
            Some(id.as_str()),
            "a record of another replay on {target}"
        );
        let event_id = message
            .header("hindsight-event-id")
            .expect("a hindsight-event-id header");
        *copies.entry(event_id).or_default() += 1;
    }
    let missing: Vec<&String> = archived
        .iter()
        .filter(|event_id| !copies.contains_key(*event_id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {EVENTS} archived events never reached {target}, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let foreign = copies
        .keys()
        .filter(|event_id| !archived.contains(*event_id))
        .count();
    assert_eq!(
        foreign, 0,
        "events that were never archived reached {target}"
    );
    let duplicates = consumed.len() as u64 - copies.len() as u64;
    eprintln!(
        "{published} published before the stop, {resend} to send again, \
         {} records on the target, {duplicates} copies",
        consumed.len()
    );
    assert!(
        duplicates <= 2 * WINDOW,
        "{duplicates} copies: more than the two windows a stop can leave unconfirmed"
    );
    if stop == Stop::Term {
        assert!(
            duplicates <= resend,
            "the interrupted record said a resume sends {resend} events again, yet the target \
             holds {duplicates} copies"
        );
    }

    let status = terminate_within(&mut server.0, Duration::from_secs(30));
    assert!(status.success(), "serve exited with {status:?} on SIGTERM");
}
