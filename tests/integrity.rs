//! Damaged segments are found and named: a flipped bit in a data page fails
//! SQL and `hindsight verify` (page checksums, catalog checksums), errors name
//! segments by their object keys and never by a server path, and one damaged
//! segment does not break fetching events by id from the others.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::{
    archive_demo, hindsight, http_get, parquet_files, query_rows, serve_data_dir, terminate,
    START_SERVICES,
};

/// Where the `payload` column chunk of the first row group starts, and its length.
fn payload_chunk(file: &Path) -> (u64, u64) {
    let script = "import sys, pyarrow.parquet as pq\n\
        group = pq.ParquetFile(sys.argv[1]).metadata.row_group(0)\n\
        column = [group.column(i) for i in range(group.num_columns) \
                  if group.column(i).path_in_schema == 'payload'][0]\n\
        print(column.data_page_offset, column.total_compressed_size)";
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); run {START_SERVICES}"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let mut numbers = text.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

fn verify(data: &Path, extra: &[&str]) -> std::process::Output {
    hindsight()
        .arg("--data-dir")
        .arg(data)
        .arg("verify")
        .args(extra)
        .output()
        .unwrap()
}

fn first_segment_of(data: &Path, topic: &str) -> String {
    parquet_files(data)
        .into_iter()
        .find(|file| file.contains(&format!("topic={topic}/")))
        .unwrap_or_else(|| panic!("a {topic} segment"))
}

#[test]
fn a_bit_flipped_in_a_data_page_fails_sql_and_verify_naming_the_segment() {
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), 5000);
    let healthy = verify(data.path(), &[]);
    assert!(
        healthy.status.success(),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );
    assert!(String::from_utf8_lossy(&healthy.stdout).contains(": 0 problem(s)"));

    // One bit inside the payload pages of an orders segment.
    let flipped = first_segment_of(data.path(), "orders");
    let file = data.path().join(&flipped);
    let (start, length) = payload_chunk(&file);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[(start + length * 3 / 4) as usize] ^= 0x04;
    std::fs::write(&file, &bytes).unwrap();
    // And one segment gone.
    let removed = first_segment_of(data.path(), "payments");
    std::fs::remove_file(data.path().join(&removed)).unwrap();

    let failing = hindsight()
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "query",
            // Every payload value is decoded (`encode` takes any bytes; `length`
            // would cast them to text and fail on the demo's binary payloads).
            "SELECT sum(length(encode(payload, 'base64'))) FROM events WHERE topic = 'orders'",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&failing.stderr);
    assert!(
        !failing.status.success(),
        "a damaged page must fail the query"
    );
    assert!(stderr.contains(&flipped), "must name {flipped}: {stderr}");
    assert!(stderr.contains("damaged"), "{stderr}");

    // Replay reads segments through `decode_segment`, which checks the same
    // page checksums: the dry-run already stops on the segment and names it.
    let replay = hindsight()
        .arg("--data-dir")
        .arg(data.path())
        .args(["replay", "dry-run", "--topic", "orders", "--kafka"])
        .arg(crate::util::kafka_brokers())
        .args(["--to-topic", "hs-integrity-never-created"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&replay.stderr);
    assert!(
        !replay.status.success(),
        "a damaged page must stop a replay"
    );
    assert!(stderr.contains(&flipped), "must name {flipped}: {stderr}");
    assert!(stderr.contains("--skip-damaged"), "{stderr}");

    let missing = hindsight()
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "query",
            "SELECT count(*) FROM events WHERE topic = 'payments'",
        ])
        // The server's own log may name its files; the error may not.
        .env("HINDSIGHT_LOG", "error")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(stderr.contains(&removed), "must name {removed}: {stderr}");
    let canonical = data.path().canonicalize().unwrap();
    assert!(
        !stderr.contains(canonical.to_str().unwrap()),
        "a server path leaked: {stderr}"
    );

    let report = verify(data.path(), &["--json"]);
    assert!(!report.status.success(), "verify must fail on damage");
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    let problems: Vec<(&str, &str)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["uri"].as_str().unwrap(), p["problem"].as_str().unwrap()))
        .collect();
    assert_eq!(
        problems.len(),
        2,
        "exactly the two damaged segments: {report:#}"
    );
    assert!(
        problems.contains(&(flipped.as_str(), "damaged")),
        "{report:#}"
    );
    assert!(
        problems.contains(&(removed.as_str(), "missing")),
        "{report:#}"
    );
    // --source narrows the scrub: the demo's only source, then none.
    let none = verify(data.path(), &["--source", "nobody"]);
    assert!(none.status.success());
    assert!(String::from_utf8_lossy(&none.stdout).contains("checked 0 segment(s)"));
}

/// One event id from the segment `file` (`…/{partition}-{first}-{last}-{unique}.parquet`).
fn an_event_in(data: &Path, topic: &str, file: &str) -> String {
    let name = file.rsplit('/').next().unwrap();
    let numbers: Vec<i64> = name
        .split('-')
        .take(3)
        .map(|n| n.parse().unwrap())
        .collect();
    let rows = query_rows(
        data,
        &format!(
            "SELECT event_id FROM events WHERE topic = '{topic}' AND \"partition\" = {} \
             AND \"offset\" BETWEEN {} AND {} ORDER BY \"offset\" LIMIT 1",
            numbers[0], numbers[1], numbers[2]
        ),
    );
    rows[0]["event_id"].as_str().unwrap().to_owned()
}

#[test]
fn one_truncated_segment_does_not_break_fetching_events_by_id_elsewhere() {
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), 10_000);
    let victim = first_segment_of(data.path(), "shipments");
    let healthy = first_segment_of(data.path(), "orders");
    let id_elsewhere = an_event_in(data.path(), "orders", &healthy);
    let id_in_victim = an_event_in(data.path(), "shipments", &victim);
    let path = data.path().join(&victim);
    let length = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(length / 2).unwrap();
    drop(file);

    let (mut server, address) = serve_data_dir(data.path());
    let (status, body) = http_get(&address, &format!("/api/v1/events/{id_elsewhere}"));
    assert_eq!(status, 200, "{body}");
    let fetched: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(fetched["event_id"], id_elsewhere.as_str(), "{body}");
    // The truncated segment's own events cannot be served: the error names it.
    let (status, body) = http_get(&address, &format!("/api/v1/events/{id_in_victim}"));
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("segment_unreadable"), "{body}");
    assert!(body.contains(&victim), "must name {victim}: {body}");
    assert!(terminate(&mut server).success());
}
