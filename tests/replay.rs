//! Replay against the real brokers: Kafka (Tansu) read back with
//! confluent-kafka, RabbitMQ read back with lapin. Archives are written with
//! the archive's own writer (Kafka events as the Kafka source builds them,
//! RabbitMQ events through the ingester's `delivery_to_event`), so the
//! expected bytes of every event are known.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hindsight_archive::catalog::Catalog;
use hindsight_archive::event::{event_id, now_micros};
use hindsight_archive::replays::ReplayStatus;
use hindsight_archive::segment::SegmentFormat;
use hindsight_archive::store::{ArchiveStore, StoreConfig};
use hindsight_archive::writer::{ArchiveWriter, Batch, PartitionBatch};
use hindsight_archive::{Bus, Event, Header};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::util::{catalog_url, hindsight, run_ok, ChildGuard, START_SERVICES};

const PROVENANCE: [&str; 6] = [
    "hindsight-replay-id",
    "hindsight-source",
    "hindsight-topic",
    "hindsight-partition",
    "hindsight-offset",
    "hindsight-event-id",
];

fn brokers() -> String {
    crate::util::kafka_brokers()
}

pub(crate) fn amqp_url() -> String {
    std::env::var("HINDSIGHT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn create_topic(partitions: u32) -> String {
    crate::util::create_kafka_topic(&unique("hs-replay"), partitions)
}

// ---- archives written directly -------------------------------------------

fn store(directory: &Path) -> ArchiveStore {
    ArchiveStore::open(&StoreConfig {
        url: directory.join("data").display().to_string(),
        ..StoreConfig::default()
    })
    .unwrap()
}

async fn write_archive(directory: &Path, source: &str, bus: Bus, partitions: Vec<PartitionBatch>) {
    let catalog = Catalog::open(&catalog_url(directory)).await.unwrap();
    catalog.register_source(source, bus).await.unwrap();
    let writer = ArchiveWriter::new(store(directory), catalog.clone(), SegmentFormat::default());
    let mut expected: HashMap<(String, i32), Option<i64>> = HashMap::new();
    // Batches of at most 10k rows per partition, as an ingester would flush.
    let mut chunks: Vec<Batch> = Vec::new();
    for partition in partitions {
        for (index, events) in partition.events.chunks(10_000).enumerate() {
            if chunks.len() <= index {
                chunks.push(Batch {
                    source: source.to_owned(),
                    partitions: Vec::new(),
                });
            }
            chunks[index].partitions.push(PartitionBatch {
                topic: partition.topic.clone(),
                partition: partition.partition,
                events: events.to_vec(),
            });
        }
    }
    for batch in chunks {
        let summary = writer.write_batch(&batch, &expected).await.unwrap();
        for advance in summary.advanced {
            expected.insert((advance.topic, advance.partition), Some(advance.next));
        }
    }
    catalog.close().await;
}

fn kafka_key(seq: u64) -> Vec<u8> {
    format!("key-{}", seq % 997).into_bytes()
}

fn kafka_payload(seq: u64) -> Vec<u8> {
    match seq {
        s if s % 101 == 0 => Vec::new(),
        s if s % 50 == 0 => vec![0xff, 0xfe, (s % 256) as u8, 0x00],
        s => format!(
            r#"{{"seq":{s},"pad":"{}"}}"#,
            "x".repeat((s % 200) as usize)
        )
        .into_bytes(),
    }
}

fn kafka_headers(seq: u64) -> Vec<Header> {
    let mut headers = vec![
        Header::new("seq", seq.to_string()),
        Header::new("bin", vec![(seq % 256) as u8, 0, 255]),
    ];
    if seq % 3 == 0 {
        headers.push(Header::new("dup", "1"));
        headers.push(Header::new("dup", "2"));
    }
    if seq % 7 == 0 {
        headers.push(Header {
            name: "null".to_owned(),
            value: None,
        });
    }
    headers
}

/// `total` Kafka events of `topic` over `partitions`, event `seq` in
/// partition `seq % partitions`, one second apart from a fixed start.
/// Archives `total` generated events of a fresh topic over `partitions`
/// partitions, as source `kafka-src`; returns the topic.
async fn archive_kafka_topic(directory: &Path, partitions: i32, total: u64) -> String {
    let topic = unique("orders");
    let events = kafka_events("kafka-src", &topic, partitions, total);
    write_archive(directory, "kafka-src", Bus::Kafka, events).await;
    topic
}

fn kafka_events(source: &str, topic: &str, partitions: i32, total: u64) -> Vec<PartitionBatch> {
    let base = now_micros() - 3_600_000_000;
    let mut batches: Vec<PartitionBatch> = (0..partitions)
        .map(|partition| PartitionBatch {
            topic: topic.to_owned(),
            partition,
            events: Vec::new(),
        })
        .collect();
    for seq in 0..total {
        let partition = (seq % partitions as u64) as i32;
        let offset = (seq / partitions as u64) as i64;
        let payload = kafka_payload(seq);
        batches[partition as usize].events.push(Event {
            event_id: event_id::kafka(source, topic, partition, offset),
            source: source.to_owned(),
            bus: Bus::Kafka,
            topic: topic.to_owned(),
            routing_key: None,
            partition: Some(partition),
            offset: Some(offset),
            key: Some(kafka_key(seq)),
            headers: kafka_headers(seq),
            payload_size: payload.len() as i64,
            payload: Some(payload),
            payload_truncated: false,
            content_type: None,
            message_id: None,
            correlation_id: None,
            timestamp_type: Some("create_time".to_owned()),
            amqp: Default::default(),
            redelivered: None,
            event_time: base + seq as i64 * 1000,
            ingest_time: base + seq as i64 * 1000,
        });
    }
    batches
}

// ---- reading Kafka back ---------------------------------------------------

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[derive(Debug)]
pub(crate) struct Consumed {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: Option<Vec<u8>>,
    /// `None`: a tombstone.
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) headers: Vec<Header>,
}

impl Consumed {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.value.as_deref())
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
    }
}

/// Reads `topic` from the beginning with confluent-kafka.
pub(crate) fn consume_kafka(topic: &str, expected: u64, idle_seconds: u64) -> Vec<Consumed> {
    consume_kafka_from(&brokers(), "{}", topic, expected, idle_seconds)
}

/// [`consume_kafka`] from `brokers`, with `client` (a JSON object) as
/// extra confluent-kafka settings (TLS, SASL).
pub(crate) fn consume_kafka_from(
    brokers: &str,
    client: &str,
    topic: &str,
    expected: u64,
    idle_seconds: u64,
) -> Vec<Consumed> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/replay_consume.py"
    );
    let output = Command::new("python3")
        .args([
            script,
            brokers,
            topic,
            &expected.to_string(),
            &idle_seconds.to_string(),
        ])
        .env("HINDSIGHT_TEST_KAFKA_CLIENT", client)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); set up with {START_SERVICES}"));
    assert!(
        output.status.success(),
        "the confluent-kafka consumer of {topic} at {} failed (its error is above); \
         is Kafka up? start it with {START_SERVICES}",
        brokers
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            Consumed {
                partition: json["p"].as_i64().unwrap() as i32,
                offset: json["o"].as_i64().unwrap(),
                key: json["k"].as_str().map(unhex),
                value: json["v"].as_str().map(unhex),
                headers: json["h"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|pair| Header {
                        name: pair[0].as_str().unwrap().to_owned(),
                        value: pair[1].as_str().map(unhex),
                    })
                    .collect(),
            }
        })
        .collect()
}

pub(crate) fn replay_command(directory: &Path) -> Command {
    let mut command = hindsight();
    command.arg("--data-dir").arg(directory.join("data"));
    command.arg("replay");
    command
}

/// The replay id printed by `replay run` ("replay <id> started").
pub(crate) fn replay_id(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .find_map(|line| {
            line.strip_prefix("replay ")
                .and_then(|rest| rest.strip_suffix(" started"))
        })
        .unwrap_or_else(|| panic!("no replay id in {text:?}"))
        .to_owned()
}

async fn replay_record(directory: &Path, id: &str) -> hindsight_archive::replays::ReplayRecord {
    let catalog = Catalog::connect(&catalog_url(directory)).await.unwrap();
    let record = catalog.replay(id).await.unwrap().unwrap();
    catalog.close().await;
    record
}

// ---- tests ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn kafka_replay_is_byte_identical_and_keeps_partition_order() {
    const TOTAL: u64 = 100_000;
    let directory = tempfile::tempdir().unwrap();
    let source_topic = unique("orders");
    let batches = kafka_events("kafka-src", &source_topic, 4, TOTAL);
    let originals: HashMap<String, Event> = batches
        .iter()
        .flat_map(|b| b.events.iter())
        .map(|e| (e.event_id.clone(), e.clone()))
        .collect();
    write_archive(directory.path(), "kafka-src", Bus::Kafka, batches).await;
    let target = create_topic(4);
    let started = Instant::now();
    let output = run_ok(replay_command(directory.path()).args([
        "run",
        "--topic",
        &source_topic,
        "--kafka",
        &brokers(),
        "--to-topic",
        &target,
    ]));
    let seconds = started.elapsed().as_secs_f64();
    let id = replay_id(&output.stdout);
    eprintln!("replayed {TOTAL} Kafka events in {seconds:.1} s");
    let consumed = consume_kafka(&target, TOTAL, 20);
    assert_eq!(consumed.len() as u64, TOTAL);
    let mut last_source_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut ids = HashSet::new();
    let mut sorted: Vec<&Consumed> = consumed.iter().collect();
    sorted.sort_by_key(|c| (c.partition, c.offset));
    for message in sorted {
        let event_id = message.header("hindsight-event-id").unwrap();
        let original = &originals[&event_id];
        assert!(ids.insert(event_id.clone()), "{event_id} twice");
        assert_eq!(message.value, original.payload);
        assert_eq!(message.key, original.key);
        let split = message.headers.len() - PROVENANCE.len();
        assert_eq!(message.headers[..split], original.headers[..]);
        let names: Vec<&str> = message.headers[split..]
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(names, PROVENANCE);
        assert_eq!(message.header("hindsight-replay-id").unwrap(), id);
        assert_eq!(message.header("hindsight-source").unwrap(), "kafka-src");
        assert_eq!(message.header("hindsight-topic").unwrap(), source_topic);
        // Preserve partitioning: same partition, and source order within it.
        let source_partition: i32 = message
            .header("hindsight-partition")
            .unwrap()
            .parse()
            .unwrap();
        let source_offset: i64 = message.header("hindsight-offset").unwrap().parse().unwrap();
        assert_eq!(source_partition, message.partition);
        assert_eq!(Some(source_partition), original.partition);
        assert_eq!(Some(source_offset), original.offset);
        if let Some(previous) = last_source_offset.insert(message.partition, source_offset) {
            assert_eq!(
                source_offset,
                previous + 1,
                "order in partition {}",
                message.partition
            );
        }
    }
    let record = replay_record(directory.path(), &id).await;
    assert_eq!(record.status, ReplayStatus::Completed);
    assert_eq!(record.progress.published, TOTAL as i64);
    assert_eq!(record.progress.failed, 0);
    assert_eq!(record.planned, TOTAL as i64);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_publishes_nothing_and_reports_counts_per_target() {
    let directory = tempfile::tempdir().unwrap();
    let source_topic = archive_kafka_topic(directory.path(), 2, 3000).await;
    let target = create_topic(2);
    let output = run_ok(replay_command(directory.path()).args([
        "dry-run",
        "--topic",
        &source_topic,
        "--header",
        "dup=2",
        "--kafka",
        &brokers(),
        "--to-topic",
        &target,
        "--json",
    ]));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // Every third event carries dup=2.
    assert_eq!(report["totals"]["events"], 1000, "{report}");
    let bytes: i64 = (0..3000u64)
        .filter(|s| s % 3 == 0)
        .map(|s| kafka_payload(s).len() as i64)
        .sum();
    assert_eq!(report["totals"]["bytes"], bytes);
    assert_eq!(report["by_target"][&target]["events"], 1000);
    assert_eq!(report["sample"].as_array().unwrap().len(), 5);
    assert_eq!(report["problems"].as_array().unwrap().len(), 0, "{report}");
    let consumed = consume_kafka(&target, 1, 5);
    assert!(
        consumed.is_empty(),
        "a dry-run published {} records",
        consumed.len()
    );
    let id = report["id"].as_str().unwrap();
    let record = replay_record(directory.path(), id).await;
    assert_eq!(record.status, ReplayStatus::DryRun);
    assert_eq!(record.progress.selected, 1000);
    assert_eq!(record.progress.published, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn loop_guard_refuses_archived_topics_unless_allowed() {
    let directory = tempfile::tempdir().unwrap();
    // The archived topic exists on the broker, so an allowed loop can publish.
    let archived = create_topic(1);
    write_archive(
        directory.path(),
        "kafka-src",
        Bus::Kafka,
        kafka_events("kafka-src", &archived, 1, 100),
    )
    .await;
    // Into the original topic: the catalog says it is archived.
    let refused = replay_command(directory.path())
        .args(["run", "--topic", &archived, "--kafka", &brokers()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("refusing to replay into kafka topic"),
        "{message}"
    );
    assert!(message.contains("--allow-loop"), "{message}");
    // A topic only the configuration archives.
    let configured = create_topic(1);
    let config = directory.path().join("hindsight.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\ntype = \"kafka\"\nname = \"live\"\nbrokers = [\"{}\"]\ntopics = [\"{configured}\"]\ngroup_id = \"live\"\n",
            brokers()
        ),
    )
    .unwrap();
    let refused = replay_command(directory.path())
        .arg("--config")
        .arg(&config)
        .args([
            "run",
            "--topic",
            &archived,
            "--kafka",
            &brokers(),
            "--to-topic",
            &configured,
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("source \"live\" archives it"), "{message}");
    assert!(consume_kafka(&configured, 1, 3).is_empty());
    // Allowed: it runs, into the archived topic itself.
    run_ok(replay_command(directory.path()).args([
        "run",
        "--topic",
        &archived,
        "--kafka",
        &brokers(),
        "--allow-loop",
    ]));
    let consumed = consume_kafka(&archived, 100, 10);
    assert_eq!(consumed.len(), 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_replay_survives_three_sigkills_exactly_once_after_dedup() {
    const TOTAL: u64 = 200_000;
    let directory = tempfile::tempdir().unwrap();
    let source_topic = archive_kafka_topic(directory.path(), 4, TOTAL).await;
    let target = create_topic(4);
    let mut child = ChildGuard(
        replay_command(directory.path())
            .args([
                "run",
                "--topic",
                &source_topic,
                "--kafka",
                &brokers(),
                "--to-topic",
                &target,
                "--rate",
                "25000",
                "--window",
                "5000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The id is the first line; read it before killing.
    let mut stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let id = replay_id(line.as_bytes());
    let mut kills = 0;
    let mut positions = Vec::new();
    while kills < 3 {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the replay ended before kill {kills}"
        );
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        kills += 1;
        let record = replay_record(directory.path(), &id).await;
        assert_eq!(
            record.status,
            ReplayStatus::Running,
            "a SIGKILL leaves it running"
        );
        positions.push(record.progress.published);
        child = ChildGuard(
            replay_command(directory.path())
                .args(["resume", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the last resume did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(status.success());
    eprintln!("checkpoints at the kills: {positions:?}");
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]) && positions[2] < TOTAL as i64,
        "each kill must land mid-replay after progress: {positions:?}"
    );
    let consumed = consume_kafka(&target, TOTAL + 3 * 30_000, 15);
    let mut copies: HashMap<String, u32> = HashMap::new();
    for message in &consumed {
        assert_eq!(message.header("hindsight-replay-id").unwrap(), id);
        *copies
            .entry(message.header("hindsight-event-id").unwrap())
            .or_default() += 1;
    }
    let duplicates = consumed.len() as u64 - copies.len() as u64;
    eprintln!(
        "consumed {} records, {} distinct, {duplicates} duplicates",
        consumed.len(),
        copies.len()
    );
    assert_eq!(
        copies.len() as u64,
        TOTAL,
        "every event, exactly once after dedup"
    );
    let expected: HashSet<String> = (0..4)
        .flat_map(|p| {
            let topic = source_topic.clone();
            (0..(TOTAL / 4) as i64).map(move |o| event_id::kafka("kafka-src", &topic, p, o))
        })
        .collect();
    assert!(copies.keys().all(|id| expected.contains(id)));
    // Duplicates only come from the windows sent but not checkpointed at
    // each kill: at most two windows of 5000 (at 25000/s a window fills in
    // a fifth of a second, before its one-second limit).
    assert!(duplicates <= 3 * 2 * 5_000, "{duplicates} duplicates");
    let record = replay_record(directory.path(), &id).await;
    assert_eq!(record.status, ReplayStatus::Completed);
    assert_eq!(record.progress.failed, 0);
}

// ---- RabbitMQ -----------------------------------------------------------------

pub(crate) async fn connect() -> (Connection, Channel) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ is not reachable at {} ({e}); start it with {START_SERVICES}",
                amqp_url()
            )
        });
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

/// A fresh topic exchange and a queue bound to it with `#`.
pub(crate) async fn exchange_and_queue(channel: &Channel) -> (String, String) {
    let exchange = unique("hs-replay-x");
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let queue = unique("hs-replay-q");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    (exchange, queue)
}

const ROUTING_KEYS: [&str; 4] = [
    "order.eu.created",
    "order.us.paid",
    "shipment.eu.sent",
    "audit",
];

fn amqp_headers(seq: u64) -> FieldTable {
    let mut nested = FieldTable::default();
    nested.insert("depth".into(), AMQPValue::LongInt((seq % 3) as i32));
    let mut table = FieldTable::default();
    table.insert("seq".into(), AMQPValue::LongLongInt(seq as i64));
    table.insert(
        "bin".into(),
        AMQPValue::LongString(LongString::from(vec![(seq % 256) as u8, 0, 255])),
    );
    table.insert("nested".into(), AMQPValue::FieldTable(nested));
    table.insert(
        "list".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![
            AMQPValue::Boolean(seq % 2 == 0),
            AMQPValue::LongString(LongString::from(b"x".to_vec())),
            AMQPValue::Double(seq as f64 / 8.0),
        ])),
    );
    table
}

fn amqp_properties(seq: u64) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(format!("m-{seq}").as_str().into())
        .with_correlation_id(format!("c-{}", seq % 100).as_str().into())
        .with_timestamp(1_700_000_000 + seq)
        .with_content_type("application/json".into())
        .with_content_encoding("identity".into())
        .with_delivery_mode(2)
        .with_priority((seq % 10) as u8)
        .with_expiration("86400000".into())
        .with_reply_to("replies".into())
        .with_type("order".into())
        .with_app_id("hs-test".into())
        .with_user_id("guest".into())
        .with_headers(amqp_headers(seq))
}

#[tokio::test(flavor = "multi_thread")]
async fn amqp_replay_keeps_properties_headers_and_routing_keys() {
    const TOTAL: u64 = 50_000;
    let directory = tempfile::tempdir().unwrap();
    let source_exchange = unique("hs-orders");
    // As the ingester archives them from an archive queue.
    let events: Vec<Event> = (0..TOTAL)
        .map(|seq| {
            hindsight_connectors::amqp::delivery_to_event(
                "rabbit",
                hindsight_connectors::amqp::AmqpMode::ArchiveQueue,
                "hindsight.archive",
                1 << 20,
                &source_exchange,
                ROUTING_KEYS[(seq % 4) as usize],
                false,
                &amqp_properties(seq),
                format!(r#"{{"seq":{seq}}}"#).as_bytes(),
            )
        })
        .collect();
    write_archive(
        directory.path(),
        "rabbit",
        Bus::Amqp,
        vec![PartitionBatch {
            topic: source_exchange.clone(),
            partition: 0,
            events,
        }],
    )
    .await;
    let (_connection, channel) = connect().await;
    let (exchange, queue) = exchange_and_queue(&channel).await;
    let output = run_ok(replay_command(directory.path()).args([
        "run",
        "--source",
        "rabbit",
        "--amqp",
        &amqp_url(),
        "--to-exchange",
        &exchange,
    ]));
    let id = replay_id(&output.stdout);
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "replay-check".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut next_seq = 0u64;
    while next_seq < TOTAL {
        let delivery = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {next_seq} of {TOTAL} messages arrived"))
            .unwrap()
            .unwrap();
        let seq = next_seq;
        next_seq += 1;
        // One queue, one partition: archive order is publish order.
        assert_eq!(delivery.data, format!(r#"{{"seq":{seq}}}"#).as_bytes());
        assert_eq!(
            delivery.routing_key.as_str(),
            ROUTING_KEYS[(seq % 4) as usize]
        );
        assert_eq!(delivery.exchange.as_str(), exchange);
        let expected = amqp_properties(seq);
        let got = &delivery.properties;
        assert_eq!(got.message_id(), expected.message_id());
        assert_eq!(got.correlation_id(), expected.correlation_id());
        assert_eq!(got.timestamp(), expected.timestamp());
        assert_eq!(got.content_type(), expected.content_type());
        assert_eq!(got.content_encoding(), expected.content_encoding());
        assert_eq!(got.delivery_mode(), expected.delivery_mode());
        assert_eq!(got.priority(), expected.priority());
        assert_eq!(got.expiration(), expected.expiration());
        assert_eq!(got.reply_to(), expected.reply_to());
        assert_eq!(got.kind(), expected.kind());
        assert_eq!(got.app_id(), expected.app_id());
        assert_eq!(got.user_id(), expected.user_id());
        let mut headers = got.headers().clone().unwrap();
        let text = |name: &str, table: &FieldTable| match table.inner().get(name) {
            Some(AMQPValue::LongString(s)) => String::from_utf8(s.as_bytes().to_vec()).unwrap(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(text("hindsight-replay-id", &headers), id);
        assert_eq!(text("hindsight-source", &headers), "rabbit");
        assert_eq!(text("hindsight-topic", &headers), source_exchange);
        assert_eq!(text("hindsight-event-id", &headers).len(), 32);
        let mut stripped = FieldTable::default();
        for (name, value) in headers.inner() {
            if !name.as_str().starts_with("hindsight-") {
                stripped.insert(name.clone(), value.clone());
            }
        }
        headers = stripped;
        assert_eq!(headers, amqp_headers(seq), "headers of {seq}");
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    let record = replay_record(directory.path(), &id).await;
    assert_eq!(record.status, ReplayStatus::Completed);
    assert_eq!(record.progress.published, TOTAL as i64);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_holds_within_ten_percent_measured_by_the_consumer() {
    const RATE: f64 = 2000.0;
    const TOTAL: u64 = 40_000; // 20 s at 2000/s
    let directory = tempfile::tempdir().unwrap();
    let source_topic = archive_kafka_topic(directory.path(), 2, TOTAL).await;
    let (_connection, channel) = connect().await;
    let (exchange, queue) = exchange_and_queue(&channel).await;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "rate-check".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    // Kafka events onto RabbitMQ: routing key from the Kafka key.
    let mut child = ChildGuard(
        replay_command(directory.path())
            .args([
                "run",
                "--topic",
                &source_topic,
                "--amqp",
                &amqp_url(),
                "--to-exchange",
                &exchange,
                "--rate",
                "2000",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut arrivals = Vec::with_capacity(TOTAL as usize);
    while (arrivals.len() as u64) < TOTAL {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {TOTAL} messages arrived", arrivals.len()))
            .unwrap()
            .unwrap();
        arrivals.push(Instant::now());
        if arrivals.len() == 1 {
            let headers = delivery.properties.headers().clone().unwrap();
            let key = headers.inner().get("kafka-key").unwrap().clone();
            let AMQPValue::LongString(key) = key else {
                panic!("kafka-key is {key:?}");
            };
            assert_eq!(delivery.routing_key.as_str().as_bytes(), key.as_bytes());
        }
    }
    assert!(child.0.wait().unwrap().success());
    let elapsed = arrivals[arrivals.len() - 1] - arrivals[0];
    let overall = (TOTAL - 1) as f64 / elapsed.as_secs_f64();
    eprintln!("consumer measured {overall:.0} events/s over {elapsed:?}");
    assert!(
        (RATE * 0.9..=RATE * 1.1).contains(&overall),
        "{overall} events/s"
    );
    // And no 5 s window goes over the limit (a burst). A window may fall
    // short when the machine is starved (the whole suite runs in parallel on
    // two cores); the overall rate above is the figure the limit promises.
    let start = arrivals[0];
    for window in 0..4u32 {
        let from = start + Duration::from_secs(5) * window;
        let to = from + Duration::from_secs(5);
        let count = arrivals
            .iter()
            .filter(|at| **at >= from && **at < to)
            .count();
        let rate = count as f64 / 5.0;
        eprintln!("window {window}: {rate:.0} events/s");
        assert!(
            rate <= RATE * 1.1,
            "window {window}: {rate} events/s is a burst over the limit"
        );
    }
}

#[test]
fn archived_headers_tables_rebuild_exactly() {
    for seq in [0u64, 1, 7, 12345] {
        let table = amqp_headers(seq);
        let text = hindsight_connectors::amqp::convert::encode_lapin_table(&table);
        let rebuilt = hindsight_connectors::amqp::convert::decode_lapin_table(&text).unwrap();
        assert_eq!(rebuilt, table);
    }
}

/// A plain HTTP/1.1 request with a JSON body; returns (status, body as JSON).
fn http_json(address: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn http_replays_dry_run_run_pause_resume_and_cancel() {
    const TOTAL: u64 = 6000;
    let directory = tempfile::tempdir().unwrap();
    let source_topic = archive_kafka_topic(directory.path(), 2, TOTAL).await;
    let (_connection, channel) = connect().await;
    let (exchange, queue) = exchange_and_queue(&channel).await;
    let (child, address) = crate::util::serve_data_dir(&directory.path().join("data"));
    let _server = ChildGuard(child);
    // Over HTTP a target names a connection; an address, or credentials,
    // are refused.
    for (target, status) in [
        (
            serde_json::json!({"type": "amqp", "url": "amqp://127.0.0.1:5672/%2f", "exchange": exchange}),
            403,
        ),
        (
            serde_json::json!({"type": "amqp", "url": amqp_url(), "exchange": exchange}),
            400,
        ),
        (
            serde_json::json!({"type": "kafka", "connection": "local-rabbit"}),
            400,
        ),
        (
            serde_json::json!({"type": "kafka", "connection": "nope"}),
            400,
        ),
    ] {
        let body = serde_json::json!({
            "selection": {"type": "filter", "topic": source_topic},
            "target": target,
            "dry_run": true,
        });
        let (got, answer) = http_json(&address, "POST", "/api/v1/replays", &body.to_string());
        assert_eq!(got, status, "{body}: {answer}");
        assert!(!answer.to_string().contains("guest:guest"), "{answer}");
    }
    let (status, listed) = http_json(&address, "GET", "/api/v1/connections", "");
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["allow_adhoc_targets"], false);
    let names: Vec<&str> = listed["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["local-kafka", "local-rabbit"]);
    assert!(!listed.to_string().contains("guest:guest"), "{listed}");
    let spec = |dry_run: bool| {
        serde_json::json!({
            "selection": {"type": "filter", "topic": source_topic},
            "target": {"type": "amqp", "connection": "local-rabbit", "exchange": exchange},
            "options": {"rate": 1000.0, "window": 500},
            "dry_run": dry_run,
        })
        .to_string()
    };
    let (status, report) = http_json(&address, "POST", "/api/v1/replays", &spec(true));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["totals"]["events"], TOTAL);
    assert_eq!(report["by_target"][&exchange]["events"], TOTAL);
    let (status, bad) = http_json(&address, "POST", "/api/v1/replays", r#"{"selection": 1}"#);
    assert_eq!(status, 400, "{bad}");
    let (status, started) = http_json(&address, "POST", "/api/v1/replays", &spec(false));
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/replays/{id}");
    // The record names the connection, never an address or a password.
    assert_eq!(started["target"]["connection"], "local-rabbit", "{started}");
    assert!(!started.to_string().contains("guest:guest"), "{started}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = http_json(&address, "POST", &format!("{path}/pause"), "");
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let paused_at = loop {
        let (_, view) = http_json(&address, "GET", &path, "");
        if view["status"] == "paused" {
            break view["progress"]["published"].as_i64().unwrap();
        }
        assert!(Instant::now() < deadline, "never paused: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(paused_at > 0 && paused_at < TOTAL as i64, "{paused_at}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, view) = http_json(&address, "GET", &path, "");
    assert_eq!(
        view["progress"]["published"], paused_at,
        "published while paused"
    );
    let (status, _) = http_json(&address, "POST", &format!("{path}/resume"), "");
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, view) = http_json(&address, "GET", &path, "");
    assert_eq!(view["status"], "running", "{view}");
    let (status, _) = http_json(&address, "POST", &format!("{path}/cancel"), "");
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let view = loop {
        let (_, view) = http_json(&address, "GET", &path, "");
        if view["status"] == "cancelled" {
            break view;
        }
        assert!(Instant::now() < deadline, "never cancelled: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let published = view["progress"]["published"].as_i64().unwrap();
    assert!(published > paused_at && published < TOTAL as i64, "{view}");
    // The queue holds exactly what was confirmed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let declared = channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(i64::from(declared.message_count()), published);
    let (status, list) = http_json(&address, "GET", "/api/v1/replays", "");
    assert_eq!(status, 200);
    assert_eq!(
        list.as_array().unwrap().len(),
        2,
        "the dry-run and the run are audited"
    );
    let (status, _) = http_json(&address, "POST", &format!("{path}/resume"), "");
    assert_eq!(status, 400, "a cancelled replay does not resume");
}

// ---- names, sizes, damage and accounting ------------------------------------

/// Waits until `queue` holds `expected` messages (or the time runs out) and
/// returns how many it holds.
async fn queue_depth(channel: &Channel, queue: &str, expected: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        if declared.message_count() >= expected || Instant::now() > deadline {
            return declared.message_count();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// RabbitMQ events of `exchange` as the ingester archives them from an
/// archive queue, each with `properties(seq)`.
fn amqp_events(
    exchange: &str,
    total: u64,
    properties: impl Fn(u64) -> BasicProperties,
) -> PartitionBatch {
    PartitionBatch {
        topic: exchange.to_owned(),
        partition: 0,
        events: (0..total)
            .map(|seq| {
                hindsight_connectors::amqp::delivery_to_event(
                    "rabbit",
                    hindsight_connectors::amqp::AmqpMode::ArchiveQueue,
                    "hindsight.archive",
                    1 << 20,
                    exchange,
                    "order.created",
                    false,
                    &properties(seq),
                    format!(r#"{{"seq":{seq}}}"#).as_bytes(),
                )
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_reads_topics_and_exchanges_whose_names_the_layout_encodes() {
    const EACH: u64 = 40;
    let directory = tempfile::tempdir().unwrap();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    // A leading '_' or '.' is percent-encoded (Hive readers hide such files).
    let kafka_topics = [format!("_orders-{suffix}"), format!(".orders-{suffix}")];
    let batches = kafka_topics
        .iter()
        .flat_map(|topic| kafka_events("kafka-src", topic, 1, EACH))
        .collect();
    write_archive(directory.path(), "kafka-src", Bus::Kafka, batches).await;
    // Every other byte outside [A-Za-z0-9._-] is encoded too.
    let exchanges = [
        format!("billing:eu-{suffix}"),
        format!("a/b-{suffix}"),
        format!("with space-{suffix}"),
        format!("zürich-ü-{suffix}"),
        format!("_audit-{suffix}"),
    ];
    let batches = exchanges
        .iter()
        .map(|exchange| amqp_events(exchange, EACH, amqp_properties))
        .collect();
    write_archive(directory.path(), "rabbit", Bus::Amqp, batches).await;
    for topic in &kafka_topics {
        let target = create_topic(1);
        let output = run_ok(replay_command(directory.path()).args([
            "run",
            "--topic",
            topic,
            "--kafka",
            &brokers(),
            "--to-topic",
            &target,
        ]));
        let id = replay_id(&output.stdout);
        assert_eq!(
            consume_kafka(&target, EACH, 10).len() as u64,
            EACH,
            "{topic}"
        );
        let record = replay_record(directory.path(), &id).await;
        assert_eq!(record.status, ReplayStatus::Completed, "{topic}");
        assert_eq!(record.progress.published, EACH as i64, "{topic}");
    }
    let (_connection, channel) = connect().await;
    for source_exchange in &exchanges {
        let (exchange, queue) = exchange_and_queue(&channel).await;
        let output = run_ok(replay_command(directory.path()).args([
            "run",
            "--topic",
            source_exchange,
            "--amqp",
            &amqp_url(),
            "--to-exchange",
            &exchange,
        ]));
        let id = replay_id(&output.stdout);
        assert_eq!(
            u64::from(queue_depth(&channel, &queue, EACH as u32).await),
            EACH,
            "{source_exchange}"
        );
        let record = replay_record(directory.path(), &id).await;
        assert_eq!(record.progress.published, EACH as i64, "{source_exchange}");
    }
}

/// Archives `total` events of a fresh topic whose event `big` carries a
/// payload of `big_bytes`; returns the topic and that event's id.
async fn archive_with_one_big_event(
    directory: &Path,
    total: u64,
    big: u64,
    big_bytes: usize,
) -> (String, String) {
    let topic = unique("_big");
    let mut batches = kafka_events("kafka-src", &topic, 1, total);
    let event = &mut batches[0].events[big as usize];
    event.payload = Some(vec![b'x'; big_bytes]);
    event.payload_size = big_bytes as i64;
    let big_id = event.event_id.clone();
    write_archive(directory, "kafka-src", Bus::Kafka, batches).await;
    (topic, big_id)
}

/// `hindsight replay run --topic SOURCE --kafka … --to-topic TARGET EXTRA…`.
fn kafka_replay_command(
    directory: &Path,
    source_topic: &str,
    target: &str,
    extra: &[&str],
) -> Command {
    let mut command = replay_command(directory);
    command.args([
        "run",
        "--topic",
        source_topic,
        "--kafka",
        &brokers(),
        "--to-topic",
        target,
    ]);
    command.args(extra);
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_mib_event_replays_where_the_topic_takes_it_and_is_named_stopped_at_or_skipped_where_not(
) {
    const TOTAL: u64 = 221;
    const BIG: u64 = 158;
    const BIG_BYTES: usize = 3 << 20;
    let directory = tempfile::tempdir().unwrap();
    let (source_topic, big_id) =
        archive_with_one_big_event(directory.path(), TOTAL, BIG, BIG_BYTES).await;
    let run = |target: &str, extra: &[&str]| {
        kafka_replay_command(directory.path(), &source_topic, target, extra)
    };

    // A topic whose max.message.bytes (answered by DescribeConfigs) takes it:
    // everything, with the default options. --json: stdout is the JSON alone.
    let roomy = crate::util::create_kafka_topic_with_config(
        &unique("hs-replay-roomy"),
        1,
        &["max.message.bytes=8388608"],
    );
    let output = run_ok(&mut run(&roomy, &["--json"]));
    let view: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON alone ({e}): {:?}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["progress"]["published"], TOTAL, "{view}");
    let consumed = consume_kafka(&roomy, TOTAL, 10);
    assert_eq!(consumed.len() as u64, TOTAL);
    assert_eq!(
        consumed
            .iter()
            .filter(|message| message.value.as_ref().map(Vec::len) == Some(BIG_BYTES))
            .count(),
        1
    );

    // A topic with Kafka's default limit: the dry-run names the event...
    let strict = create_topic(1);
    let output = run_ok(replay_command(directory.path()).args([
        "dry-run",
        "--topic",
        &source_topic,
        "--kafka",
        &brokers(),
        "--to-topic",
        &strict,
        "--json",
    ]));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["oversized_count"], 1, "{report}");
    assert_eq!(
        report["oversized"][0]["event_id"],
        big_id.as_str(),
        "{report}"
    );
    assert_eq!(report["oversized"][0]["offset"], BIG, "{report}");
    assert_eq!(report["totals"]["events"], TOTAL - 1, "{report}");
    assert!(
        report["problems"][0].as_str().unwrap().contains(&big_id),
        "{report}"
    );
    assert!(
        consume_kafka(&strict, 1, 3).is_empty(),
        "a dry-run published"
    );
    // ...and a default run stops right before it, saying so, with every
    // event before it published and counted.
    let output = run(&strict, &[]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&big_id) && stderr.contains("--oversized skip"),
        "{stderr}"
    );
    let id = replay_id(&output.stdout);
    let consumed = consume_kafka(&strict, TOTAL, 5);
    assert_eq!(consumed.len() as u64, BIG);
    let record = replay_record(directory.path(), &id).await;
    assert_eq!(record.status, ReplayStatus::Failed);
    assert_eq!(record.progress.published, consumed.len() as i64);
    assert_eq!(record.progress.failed, 0);
    assert_eq!(record.progress.resend_on_resume, 0);
    assert_eq!(record.progress.position_row, BIG as i64);
    let resume_at = record.details.resume_at.unwrap();
    assert_eq!(resume_at.offset, Some(BIG as i64));
    assert_eq!(resume_at.event_id.as_deref(), Some(big_id.as_str()));

    // --oversized skip: the rest goes, and the record lists the event.
    let lenient = create_topic(1);
    let output = run_ok(&mut run(&lenient, &["--oversized", "skip"]));
    let id = replay_id(&output.stdout);
    let consumed = consume_kafka(&lenient, TOTAL, 5);
    assert_eq!(consumed.len() as u64, TOTAL - 1);
    let record = replay_record(directory.path(), &id).await;
    assert_eq!(record.status, ReplayStatus::Completed);
    assert_eq!(record.progress.published, consumed.len() as i64);
    assert_eq!(record.progress.oversized_skipped, 1);
    assert_eq!(record.details.oversized[0].event_id, big_id);
    assert!(String::from_utf8_lossy(&output.stdout).contains(&big_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_segment_stops_the_replay_unless_skipped_and_the_record_matches_the_consumer() {
    const TOTAL: u64 = 1000;
    let directory = tempfile::tempdir().unwrap();
    let source_topic = archive_kafka_topic(directory.path(), 2, TOTAL).await;
    // Cut partition 1's segment (the second group of the plan) in half.
    let catalog = Catalog::connect(&catalog_url(directory.path()))
        .await
        .unwrap();
    let segments = catalog
        .segments(&hindsight_archive::catalog::SegmentFilter {
            topic: Some(source_topic.clone()),
            partition: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    catalog.close().await;
    assert_eq!(segments.len(), 1);
    let uri = segments[0].segment.uri.clone();
    let file = directory.path().join("data").join(&uri);
    let length = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(length / 2)
        .unwrap();
    let run = |target: &str, extra: &[&str]| {
        kafka_replay_command(directory.path(), &source_topic, target, extra)
    };

    // By default the replay stops at the damaged segment, naming it, and
    // the record counts what partition 0 put on the target.
    let stopped = create_topic(2);
    let output = run(&stopped, &[]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&uri) && stderr.contains("--skip-damaged"),
        "{stderr}"
    );
    let id = replay_id(&output.stdout);
    let consumed = consume_kafka(&stopped, TOTAL, 5);
    assert_eq!(consumed.len() as u64, TOTAL / 2);
    let record = replay_record(directory.path(), &id).await;
    assert_eq!(record.status, ReplayStatus::Failed);
    assert_eq!(record.progress.published, consumed.len() as i64);
    assert_eq!(record.progress.failed, 0);
    assert_eq!(record.progress.resend_on_resume, 0);
    assert_eq!(
        (record.progress.position_group, record.progress.position_row),
        (1, 0)
    );
    assert_eq!(record.details.resume_at.unwrap().partition, 1);

    // With --skip-damaged the rest is replayed and the segment is listed.
    let skipped = create_topic(2);
    let output = run_ok(&mut run(&skipped, &["--skip-damaged", "--json"]));
    let view: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let consumed = consume_kafka(&skipped, TOTAL, 5);
    assert_eq!(consumed.len() as u64, TOTAL / 2);
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["progress"]["published"], consumed.len(), "{view}");
    assert_eq!(view["progress"]["damaged_segments_skipped"], 1, "{view}");
    assert_eq!(
        view["progress"]["damaged_rows_skipped"],
        TOTAL / 2,
        "{view}"
    );
    assert_eq!(
        view["details"]["damaged_segments"][0]["uri"],
        uri.as_str(),
        "{view}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains(&uri));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_amqp_message_without_a_headers_table_is_replayed_without_one() {
    let directory = tempfile::tempdir().unwrap();
    let source_exchange = unique("hs-plain");
    // Event 0 had no headers table, event 1 an empty one.
    let batch = amqp_events(&source_exchange, 2, |seq| {
        let properties =
            BasicProperties::default().with_message_id(format!("m-{seq}").as_str().into());
        if seq == 1 {
            properties.with_headers(FieldTable::default())
        } else {
            properties
        }
    });
    write_archive(directory.path(), "rabbit", Bus::Amqp, vec![batch]).await;
    let (_connection, channel) = connect().await;
    let replay_and_read = |extra: &'static [&'static str]| {
        let directory = directory.path().to_owned();
        let channel = channel.clone();
        let source_exchange = source_exchange.clone();
        async move {
            let (exchange, queue) = exchange_and_queue(&channel).await;
            run_ok(
                replay_command(&directory)
                    .args(["run", "--topic", &source_exchange, "--amqp", &amqp_url()])
                    .args(["--to-exchange", &exchange])
                    .args(extra),
            );
            let mut consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    "plain-check".into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap();
            let mut headers = Vec::new();
            for _ in 0..2 {
                let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                headers.push(delivery.properties.headers().clone());
            }
            headers
        }
    };
    let plain = replay_and_read(&["--no-provenance"]).await;
    assert_eq!(plain[0], None, "no table was there, none is published");
    assert_eq!(
        plain[1],
        Some(FieldTable::default()),
        "an empty table is kept"
    );
    // Provenance headers need a table: it holds them alone.
    let with_provenance = replay_and_read(&[]).await;
    let table = with_provenance[0].clone().unwrap();
    assert!(!table.inner().is_empty());
    assert!(table
        .inner()
        .keys()
        .all(|name| name.as_str().starts_with("hindsight-")));
}
