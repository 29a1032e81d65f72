//! The Kafka ingester against a real Kafka-protocol broker (Tansu): round
//! trip byte for byte, SIGKILL at random moments, and failover in a group.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hindsight_archive::catalog::{Catalog, SegmentFilter};
use hindsight_archive::segment::decode_segment;
use hindsight_archive::{Event, Header};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::util::{
    archived_count, catalog_url, start_archive, start_archive_ready, terminate, wait_for_archived,
    ChildGuard, START_SERVICES,
};

fn brokers() -> String {
    crate::util::kafka_brokers()
}

fn create_topic(partitions: u32) -> String {
    create_named_topic(
        &format!("hs-test-{}", uuid::Uuid::new_v4().simple()),
        partitions,
    )
}

fn create_named_topic(topic: &str, partitions: u32) -> String {
    crate::util::create_kafka_topic(topic, partitions)
}

// The deterministic event of number `seq`; mirrors tests/support/kafka_produce.py.
pub(crate) fn expected_key(seq: u64) -> Vec<u8> {
    format!("key-{}", seq % 997).into_bytes()
}

pub(crate) fn expected_payload(seq: u64) -> Vec<u8> {
    if seq % 101 == 0 {
        return Vec::new();
    }
    if seq % 50 == 0 {
        return vec![0xff, 0xfe, (seq % 256) as u8, 0x00];
    }
    format!(
        r#"{{"seq":{seq},"customer":"c-{}","pad":"{}"}}"#,
        seq % 5000,
        "x".repeat((seq % 300) as usize)
    )
    .into_bytes()
}

pub(crate) fn expected_headers(seq: u64) -> Vec<Header> {
    let mut headers = vec![
        Header::new("seq", seq.to_string()),
        Header::new("bin", vec![(seq % 256) as u8, 0, 255]),
    ];
    if seq % 3 == 0 {
        headers.push(Header::new("dup", "1"));
        headers.push(Header::new("dup", "2"));
    }
    headers
}

/// `single_record_batches`: see tests/support/kafka_produce.py (a Tansu defect).
fn produce_with_python(
    topic: &str,
    first: u64,
    count: u64,
    rate: u64,
    single_record_batches: bool,
) -> Child {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/kafka_produce.py"
    );
    let batching = if single_record_batches {
        "single"
    } else {
        "batched"
    };
    Command::new("python3")
        .args([
            script,
            &brokers(),
            topic,
            &first.to_string(),
            &count.to_string(),
            &rate.to_string(),
            batching,
        ])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); set up with {START_SERVICES}"))
}

fn wait_success(mut child: Child, what: &str) {
    let status = child.wait().unwrap();
    assert!(status.success(), "{what} failed: {status:?}");
}

/// Produces with the project's own client (rdkafka, the crate the ingester uses).
fn produce_with_rdkafka(topic: &str, first: u64, count: u64) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "20")
        .set("acks", "all")
        .create()
        .unwrap();
    for seq in first..first + count {
        let (key, payload) = (expected_key(seq), expected_payload(seq));
        let mut headers = OwnedHeaders::new();
        for header in expected_headers(seq) {
            headers = headers.insert(KafkaHeader {
                key: &header.name,
                value: header.value.as_deref(),
            });
        }
        let mut record = BaseRecord::to(topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, rejected)) => {
                    record = rejected;
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}

fn topics_line(topic: &str) -> String {
    format!("topics = [\"{topic}\"]")
}

/// `subscription`: the source's lines that choose topics (and any other
/// source setting).
pub(crate) fn write_config(
    directory: &Path,
    subscription: &str,
    group: &str,
    extra_client: &str,
    grace: &str,
) -> PathBuf {
    let file = directory.join("hindsight.toml");
    let text = format!(
        r#"data_dir = "{data}"
[catalog]
pending_grace = "{grace}"
[flush]
max_rows = 20000
max_age = "1s"
[[sources]]
type = "kafka"
name = "kafka-test"
brokers = ["{brokers}"]
{subscription}
group_id = "{group}"
start = "earliest"
[sources.client]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
{extra_client}
"#,
        data = directory.join("data").display(),
        brokers = brokers(),
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// Reads every committed event and checks: exactly once per (partition,
/// offset), offsets dense from 0, and each event byte-identical to `seq`.
async fn verify_exactly_once(directory: &Path, topic: &str, total: u64) {
    let catalog = Catalog::connect(&catalog_url(directory)).await.unwrap();
    let segments = catalog.segments(&SegmentFilter::default()).await.unwrap();
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut seqs: std::collections::HashMap<u64, (i32, i64)> = std::collections::HashMap::new();
    for record in &segments {
        let path = directory.join("data").join(&record.segment.uri);
        let events: Vec<Event> = decode_segment(std::fs::read(path).unwrap().into()).unwrap();
        for event in events {
            assert_eq!(event.topic, topic);
            offsets
                .entry(event.partition.unwrap())
                .or_default()
                .push(event.offset.unwrap());
            let seq: u64 = std::str::from_utf8(event.headers[0].value.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            let position = (event.partition.unwrap(), event.offset.unwrap());
            if let Some(earlier) = seqs.insert(seq, position) {
                panic!(
                    "seq {seq} archived twice: at (partition, offset) {earlier:?} and {position:?}"
                );
            }
            assert_eq!(
                event.key.as_deref(),
                Some(expected_key(seq).as_slice()),
                "key of {seq}"
            );
            assert_eq!(
                event.payload,
                Some(expected_payload(seq)),
                "payload of {seq}"
            );
            assert_eq!(event.payload_size, event.payload_bytes().len() as i64);
            assert_eq!(event.headers, expected_headers(seq), "headers of {seq}");
            assert_eq!(event.timestamp_type.as_deref(), Some("create_time"));
        }
    }
    let mut total_offsets = 0;
    for (partition, mut list) in offsets {
        list.sort_unstable();
        let expected: Vec<i64> = (0..list.len() as i64).collect();
        assert!(
            list == expected,
            "partition {partition}: offsets are not exactly 0..{}",
            list.len()
        );
        total_offsets += list.len() as u64;
    }
    assert_eq!(total_offsets, total, "archived events");
    assert_eq!(seqs.len() as u64, total);
    assert!(seqs.keys().all(|seq| *seq < total));
    // The catalog checkpoints end exactly where the archive ends.
    for checkpoint in catalog.checkpoints("kafka-test").await.unwrap() {
        assert_eq!(checkpoint.topic, topic);
    }
    catalog.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_round_trip_is_byte_identical() {
    const TOTAL: u64 = 200_000;
    let directory = tempfile::tempdir().unwrap();
    let topic = create_topic(6);
    wait_success(
        produce_with_python(&topic, 0, TOTAL / 2, 0, false),
        "confluent-kafka producer",
    );
    produce_with_rdkafka(&topic, TOTAL / 2, TOTAL / 2);

    let config = write_config(
        directory.path(),
        &topics_line(&topic),
        &format!("g-{topic}"),
        "",
        "15m",
    );
    let started = Instant::now();
    let (mut archive, _stdout) = start_archive_ready(&config);
    wait_for_archived(directory.path(), TOTAL as i64, Duration::from_secs(300)).await;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "archived {TOTAL} kafka events in {elapsed:.1} s ({:.0} events/s, debug build)",
        TOTAL as f64 / elapsed
    );
    let status = terminate(&mut archive.0);
    assert!(
        status.success(),
        "archive did not exit cleanly on SIGTERM: {status:?}"
    );
    verify_exactly_once(directory.path(), &topic, TOTAL).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_sigkill_loses_nothing_and_duplicates_nothing() {
    const TOTAL: u64 = 200_000;
    let directory = tempfile::tempdir().unwrap();
    let topic = create_topic(6);
    // Each restart joins a fresh consumer group. Tansu 0.6 never evicts a
    // SIGKILLed member, so in one group the dead members would keep their
    // partitions. Hindsight never reads Kafka's committed offsets (every start
    // resumes from the catalog), so a new group changes nothing it relies on.
    let config_for_run = |run: usize| {
        write_config(
            directory.path(),
            &topics_line(&topic),
            &format!("g-{topic}-{run}"),
            "",
            "0s",
        )
    };
    // Produce while the ingester is being killed: about 20 s of traffic. One
    // record per batch: restarts resume mid-stream, where Tansu would skip the
    // rest of a batch (see tests/support/kafka_produce.py).
    let producer = produce_with_python(&topic, 0, TOTAL, 10_000, true);
    let mut seed = u64::from(std::process::id()).wrapping_mul(2_654_435_761) | 1;
    let mut kills = 0;
    let mut last_count = 0;
    let mut runs_that_archived = 0;
    while kills < 12 {
        let mut archive = ChildGuard(start_archive(&config_for_run(kills)));
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(1500 + seed % 3000)).await;
        archive.0.kill().unwrap(); // SIGKILL
        archive.0.wait().unwrap();
        kills += 1;
        let count = archived_count(directory.path()).await;
        runs_that_archived += usize::from(count > last_count);
        last_count = count;
        println!("kill {kills}: {count} events archived so far");
    }
    assert!(
        runs_that_archived >= 4,
        "too few runs archived anything before their kill (the kills must land mid-flow)"
    );
    wait_success(producer, "confluent-kafka producer");
    let (mut archive, _stdout) = start_archive_ready(&config_for_run(kills));
    wait_for_archived(directory.path(), TOTAL as i64, Duration::from_secs(300)).await;
    let status = terminate(&mut archive.0);
    assert!(status.success(), "{status:?}");
    verify_exactly_once(directory.path(), &topic, TOTAL).await;
}

/// Two ingesters share a group; one stops mid-flow and the other takes over its
/// partitions. The stop is a SIGTERM (the member leaves the group): Tansu 0.6
/// does not expire a SIGKILLed member's session, with any client, so a
/// SIGKILL failover cannot be shown against it.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_failover_within_a_group_loses_and_duplicates_nothing() {
    const TOTAL: u64 = 60_000;
    let directory = tempfile::tempdir().unwrap();
    let topic = create_topic(6);
    let config = write_config(
        directory.path(),
        &topics_line(&topic),
        &format!("g-{topic}"),
        "",
        "15m",
    );
    let producer = produce_with_python(&topic, 0, TOTAL, 5_000, true);
    let (mut first, _first_stdout) = start_archive_ready(&config);
    let (mut second, _second_stdout) = start_archive_ready(&config);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = archived_count(directory.path()).await;
    let status = terminate(&mut first.0);
    assert!(status.success(), "{status:?}");
    println!("stopped one of two ingesters after {before} events");
    wait_success(producer, "confluent-kafka producer");
    wait_for_archived(directory.path(), TOTAL as i64, Duration::from_secs(300)).await;
    let status = terminate(&mut second.0);
    assert!(status.success(), "{status:?}");
    verify_exactly_once(directory.path(), &topic, TOTAL).await;
}

/// Topics by regular expression, and payloads over `max_payload_bytes`
/// archived truncated with a flag and their original size.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_regex_subscription_and_payload_truncation() {
    const PER_TOPIC: u64 = 2_000;
    const MAX_PAYLOAD: usize = 64;
    let directory = tempfile::tempdir().unwrap();
    // Two topics that match the pattern, one that does not.
    let prefix = format!("hs-rx-{}", uuid::Uuid::new_v4().simple());
    let matching: Vec<String> = ["a", "b"]
        .iter()
        .map(|suffix| create_named_topic(&format!("{prefix}-{suffix}"), 2))
        .collect();
    let other = create_named_topic(&format!("{prefix}x-other"), 1);
    for (index, topic) in matching.iter().enumerate() {
        produce_with_rdkafka(topic, index as u64 * PER_TOPIC, PER_TOPIC);
    }
    produce_with_rdkafka(&other, 10 * PER_TOPIC, 100);

    let subscription =
        format!("topic_pattern = \"{prefix}-[ab]$\"\nmax_payload_bytes = {MAX_PAYLOAD}");
    let config = write_config(
        directory.path(),
        &subscription,
        &format!("g-{prefix}"),
        "",
        "15m",
    );
    let (mut archive, _stdout) = start_archive_ready(&config);
    wait_for_archived(
        directory.path(),
        2 * PER_TOPIC as i64,
        Duration::from_secs(120),
    )
    .await;
    // Anything from the other topic would have arrived with the rest.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = terminate(&mut archive.0);
    assert!(status.success(), "{status:?}");

    let catalog = Catalog::connect(&catalog_url(directory.path()))
        .await
        .unwrap();
    let segments = catalog.segments(&SegmentFilter::default()).await.unwrap();
    catalog.close().await;
    let mut per_topic: BTreeMap<String, u64> = BTreeMap::new();
    let mut truncated = 0;
    for record in &segments {
        let path = directory.path().join("data").join(&record.segment.uri);
        for event in decode_segment(std::fs::read(path).unwrap().into()).unwrap() {
            *per_topic.entry(event.topic.clone()).or_default() += 1;
            let seq: u64 = std::str::from_utf8(event.headers[0].value.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            let original = expected_payload(seq);
            let kept = original.len().min(MAX_PAYLOAD);
            assert_eq!(event.payload_bytes(), &original[..kept], "payload of {seq}");
            assert_eq!(event.payload_size, original.len() as i64);
            assert_eq!(event.payload_truncated, original.len() > MAX_PAYLOAD);
            truncated += u64::from(event.payload_truncated);
        }
    }
    let expected: BTreeMap<String, u64> = matching.iter().map(|t| (t.clone(), PER_TOPIC)).collect();
    assert_eq!(per_topic, expected, "only the matching topics, each whole");
    println!("{truncated} of {} payloads truncated", 2 * PER_TOPIC);
    assert!(
        truncated > PER_TOPIC,
        "the test must truncate most payloads"
    );
}
