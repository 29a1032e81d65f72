//! The RabbitMQ ingester against a real RabbitMQ: every property kept through
//! an archive queue, SIGKILLs that lose nothing, a stream queue archived
//! exactly once, and an object store outage that holds every ack.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hindsight_archive::catalog::{Catalog, SegmentFilter};
use hindsight_archive::segment::decode_segment;
use hindsight_archive::store::{ArchiveStore, StoreConfig};
use hindsight_archive::Event;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::util::{
    archived_count, catalog_url, duckdb_scalar, http_get, start_archive, start_archive_ready,
    terminate, wait_for_archived, ChildGuard, START_SERVICES,
};

fn amqp_url() -> String {
    std::env::var("HINDSIGHT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

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
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (connection, channel)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

pub(crate) async fn declare_topic_exchange(channel: &Channel) -> String {
    let exchange = unique("hs-x");
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                auto_delete: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    exchange
}

const ROUTING_KEYS: [&str; 4] = [
    "order.eu.created",
    "order.us.paid",
    "shipment.eu.sent",
    "audit",
];

pub(crate) fn routing_key(seq: u64) -> &'static str {
    ROUTING_KEYS[(seq % 4) as usize]
}

pub(crate) fn payload(seq: u64) -> Vec<u8> {
    if seq % 101 == 0 {
        return Vec::new();
    }
    if seq % 50 == 0 {
        return vec![0xff, 0xfe, (seq % 256) as u8, 0x00];
    }
    format!(r#"{{"seq":{seq},"customer":"c-{}"}}"#, seq % 500).into_bytes()
}

pub(crate) fn headers(seq: u64) -> FieldTable {
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
        ])),
    );
    table
}

fn properties(seq: u64) -> BasicProperties {
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
        .with_headers(headers(seq))
}

/// Publishes `seqs` with confirms, at most `rate` per second (0: unlimited).
pub(crate) async fn publish(
    channel: &Channel,
    exchange: &str,
    seqs: std::ops::Range<u64>,
    rate: u64,
) {
    let started = Instant::now();
    let first = seqs.start;
    let mut confirms = Vec::with_capacity(1000);
    for seq in seqs {
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key(seq).into(),
                BasicPublishOptions::default(),
                &payload(seq),
                properties(seq),
            )
            .await
            .unwrap();
        confirms.push(confirm);
        if confirms.len() == 1000 {
            for confirm in confirms.drain(..) {
                assert!(confirm.await.unwrap().is_ack(), "broker nacked a publish");
            }
        }
        if rate > 0 {
            let due = Duration::from_secs_f64((seq - first + 1) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    for confirm in confirms {
        assert!(confirm.await.unwrap().is_ack(), "broker nacked a publish");
    }
}

/// [`publish`] on its own connection, while the test goes on.
fn publish_in_background(
    exchange: &str,
    seqs: std::ops::Range<u64>,
    rate: u64,
) -> tokio::task::JoinHandle<()> {
    let exchange = exchange.to_owned();
    tokio::spawn(async move {
        let (_connection, channel) = connect().await;
        publish(&channel, &exchange, seqs, rate).await;
    })
}

pub(crate) struct AmqpTestConfig<'a> {
    pub(crate) mode: &'a str,
    pub(crate) queue: &'a str,
    pub(crate) exchange: &'a str,
    pub(crate) max_rows: usize,
    pub(crate) storage: &'a str,
}

pub(crate) fn write_config(directory: &Path, test: &AmqpTestConfig<'_>) -> PathBuf {
    let file = directory.join("hindsight.toml");
    let text = format!(
        r##"data_dir = "{data}"
[catalog]
pending_grace = "0s"
{storage}
[flush]
max_rows = {max_rows}
max_age = "1s"
[[sources]]
type = "amqp"
name = "amqp-test"
url = "{url}"
mode = "{mode}"
queue = "{queue}"
{bindings}"##,
        data = directory.join("data").display(),
        storage = test.storage,
        max_rows = test.max_rows,
        url = amqp_url(),
        mode = test.mode,
        queue = test.queue,
        bindings = if test.mode == "queue" {
            String::new() // an existing queue: Hindsight binds nothing
        } else {
            format!(
                "[[sources.bindings]]\nexchange = \"{}\"\nrouting_key = \"#\"\n",
                test.exchange
            )
        },
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// Every committed event, read back from the store.
pub(crate) async fn archived_events(directory: &Path, store: &ArchiveStore) -> Vec<Event> {
    let catalog = Catalog::connect(&catalog_url(directory)).await.unwrap();
    let segments = catalog.segments(&SegmentFilter::default()).await.unwrap();
    catalog.close().await;
    let mut events = Vec::new();
    for record in segments {
        let path = object_store::path::Path::parse(&record.segment.uri).unwrap();
        let bytes = store.get(&path).await.unwrap();
        events.extend(decode_segment(bytes).unwrap());
    }
    events
}

pub(crate) fn local_store(directory: &Path) -> ArchiveStore {
    ArchiveStore::open(&StoreConfig {
        url: directory.join("data").display().to_string(),
        ..StoreConfig::default()
    })
    .unwrap()
}

pub(crate) fn seq_of(event: &Event) -> u64 {
    let value = event
        .headers
        .iter()
        .find(|h| h.name == "seq")
        .and_then(|h| h.value.as_deref())
        .expect("seq header");
    std::str::from_utf8(value).unwrap().parse().unwrap()
}

/// Checks one archived message against what was published as `seq`.
/// `nested`: the headers' nested table and array are expected too. A stream
/// queue drops them: RabbitMQ stores stream messages as AMQP 1.0, whose
/// application properties hold only simple values.
fn assert_intact(event: &Event, exchange: &str, seq: u64, nested: bool) {
    assert_eq!(event.amqp.exchange.as_deref(), Some(exchange));
    assert_eq!(event.routing_key.as_deref(), Some(routing_key(seq)));
    assert_eq!(event.payload, Some(payload(seq)), "payload of {seq}");
    assert_eq!(
        event.message_id.as_deref(),
        Some(format!("m-{seq}").as_str())
    );
    let correlation = format!("c-{}", seq % 100);
    assert_eq!(event.correlation_id.as_deref(), Some(correlation.as_str()));
    assert_eq!(event.event_time, (1_700_000_000 + seq as i64) * 1_000_000);
    assert_eq!(event.content_type.as_deref(), Some("application/json"));
    let amqp = &event.amqp;
    assert_eq!(amqp.content_encoding.as_deref(), Some("identity"));
    assert_eq!(amqp.delivery_mode, Some(2));
    assert_eq!(amqp.priority, Some((seq % 10) as u8));
    assert_eq!(amqp.expiration.as_deref(), Some("86400000"));
    assert_eq!(amqp.reply_to.as_deref(), Some("replies"));
    assert_eq!(amqp.message_type.as_deref(), Some("order"));
    assert_eq!(amqp.app_id.as_deref(), Some("hs-test"));
    assert_eq!(amqp.user_id.as_deref(), Some("guest"));
    let table: serde_json::Value =
        serde_json::from_str(amqp.headers_table.as_deref().unwrap()).unwrap();
    assert_eq!(
        table["seq"],
        serde_json::json!({"t": "l", "v": seq}),
        "{table}"
    );
    if nested {
        assert_eq!(
            table["nested"]["v"]["depth"],
            serde_json::json!({"t": "I", "v": seq % 3}),
            "{table}"
        );
        assert_eq!(
            table["list"]["v"][0],
            serde_json::json!({"t": "t", "v": seq % 2 == 0})
        );
    }
    let bin = event.headers.iter().find(|h| h.name == "bin").unwrap();
    assert_eq!(
        bin.value.as_deref(),
        Some([(seq % 256) as u8, 0, 255].as_slice())
    );
}

/// `rabbitmqctl`: (ready, unacknowledged) messages of `queue`.
fn queue_depth(queue: &str) -> (u64, u64) {
    let output = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run rabbitmqctl ({e}); run {START_SERVICES}"));
    let text = String::from_utf8_lossy(&output.stdout);
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first() == Some(&queue) && fields.len() == 3 {
            return (fields[1].parse().unwrap(), fields[2].parse().unwrap());
        }
    }
    panic!("queue {queue} not found by rabbitmqctl: {text}");
}

fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn amqp_round_trip_keeps_exchange_routing_key_properties_and_headers() {
    const TOTAL: u64 = 100_000;
    let directory = tempfile::tempdir().unwrap();
    let (_connection, channel) = connect().await;
    let exchange = declare_topic_exchange(&channel).await;
    let queue = unique("hs-archive");
    let config = write_config(
        directory.path(),
        &AmqpTestConfig {
            mode: "archive_queue",
            queue: &queue,
            exchange: &exchange,
            max_rows: 20_000,
            storage: "",
        },
    );
    let metrics_address = free_port();
    let mut command = crate::util::hindsight();
    command
        .arg("--config")
        .arg(&config)
        .args(["archive", "--metrics-listen", &metrics_address]);
    let (child, mut stdout) = crate::util::spawn_with_stdout(&mut command);
    let mut archive = ChildGuard(child);
    crate::util::read_until(&mut stdout, "archiving", Duration::from_secs(60));

    let started = Instant::now();
    publish(&channel, &exchange, 0..TOTAL, 0).await;
    wait_for_archived(directory.path(), TOTAL as i64, Duration::from_secs(300)).await;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "published and archived {TOTAL} RabbitMQ messages in {elapsed:.1} s ({:.0} messages/s, debug build)",
        TOTAL as f64 / elapsed
    );

    let (status, metrics) = http_get(&metrics_address, "/metrics");
    assert_eq!(status, 200);
    for expected in [
        "hindsight_events_consumed_total{source=\"amqp-test\"} 100000",
        "hindsight_events_archived_total{source=\"amqp-test\"} 100000",
        "hindsight_flush_seconds_count{source=\"amqp-test\"}",
        "hindsight_segments_written_total{source=\"amqp-test\"}",
    ] {
        assert!(metrics.contains(expected), "{expected} not in {metrics}");
    }

    let status = terminate(&mut archive.0);
    assert!(status.success(), "archive did not exit cleanly: {status:?}");
    // Everything was acknowledged: nothing is left on the queue.
    assert_eq!(queue_depth(&queue), (0, 0), "messages left on {queue}");

    let events = archived_events(directory.path(), &local_store(directory.path())).await;
    assert_eq!(events.len() as u64, TOTAL);
    let mut seen = vec![false; TOTAL as usize];
    for event in &events {
        let seq = seq_of(event);
        assert!(!seen[seq as usize], "{seq} archived twice");
        seen[seq as usize] = true;
        assert_eq!(event.topic, exchange);
        assert_eq!(event.redelivered, Some(false));
        assert_intact(event, &exchange, seq, true);
    }
}

/// Counts per message id, and whether every extra copy is a redelivery.
fn copies_by_message(events: &[Event]) -> BTreeMap<String, Vec<bool>> {
    let mut copies: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for event in events {
        copies
            .entry(event.message_id.clone().unwrap())
            .or_default()
            .push(event.redelivered.unwrap());
    }
    copies
}

#[tokio::test(flavor = "multi_thread")]
async fn amqp_sigkill_loses_nothing_and_the_dedup_view_shows_each_message_once() {
    const TOTAL: u64 = 100_000;
    let directory = tempfile::tempdir().unwrap();
    let (_connection, channel) = connect().await;
    let exchange = declare_topic_exchange(&channel).await;
    let queue = unique("hs-archive");
    let config = write_config(
        directory.path(),
        &AmqpTestConfig {
            mode: "archive_queue",
            queue: &queue,
            exchange: &exchange,
            max_rows: 5_000,
            storage: "",
        },
    );
    // The first run declares and binds the queue before anything is published.
    drop(start_archive_ready(&config));

    // About 20 s of traffic while the ingester is killed again and again.
    let publisher = publish_in_background(&exchange, 0..TOTAL, 5_000);
    let mut seed = u64::from(std::process::id()).wrapping_mul(2_654_435_761) | 1;
    let mut last_count = 0;
    let mut runs_that_archived = 0;
    for kill in 1..=10 {
        let mut command = crate::util::hindsight();
        command
            .arg("--config")
            .arg(&config)
            .arg("archive")
            .stdout(std::process::Stdio::null());
        // Every other run dies right after its second commit, before the ack
        // (a fault-injection point): the broker must deliver those messages
        // again. The other runs are SIGKILLed at random moments.
        if kill % 2 == 0 {
            command.env("HINDSIGHT_CRASH_AFTER_COMMIT", "2");
        }
        let mut archive = ChildGuard(command.spawn().unwrap());
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if kill % 2 == 0 {
            // Let it reach its second commit and abort there: a timer can
            // fire first on a loaded machine, and then no copy is left.
            let deadline = Instant::now() + Duration::from_secs(30);
            while archive.0.try_wait().unwrap().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(1000 + seed % 2500)).await;
        }
        let _ = archive.0.kill(); // SIGKILL, unless it aborted already
        archive.0.wait().unwrap();
        let count = archived_count(directory.path()).await;
        runs_that_archived += usize::from(count > last_count);
        last_count = count;
        println!("kill {kill}: {count} events archived so far");
    }
    assert!(
        runs_that_archived >= 4,
        "too few runs archived anything before their kill (the kills must land mid-flow)"
    );
    publisher.await.unwrap();
    let (mut archive, _stdout) = start_archive_ready(&config);
    wait_for_archived(directory.path(), TOTAL as i64, Duration::from_secs(300)).await;
    // Wait for the queue to drain: redeliveries may still be on their way.
    let deadline = Instant::now() + Duration::from_secs(120);
    while queue_depth(&queue) != (0, 0) {
        assert!(Instant::now() < deadline, "{queue} does not drain");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = terminate(&mut archive.0);
    assert!(status.success(), "{status:?}");

    let events = archived_events(directory.path(), &local_store(directory.path())).await;
    let copies = copies_by_message(&events);
    assert_eq!(copies.len() as u64, TOTAL, "messages lost");
    let mut duplicated = 0u64;
    for (message_id, flags) in &copies {
        if flags.len() > 1 {
            duplicated += 1;
            assert!(
                flags.iter().filter(|redelivered| !**redelivered).count() <= 1,
                "{message_id} was archived {} times, not as redeliveries: {flags:?}",
                flags.len()
            );
        }
    }
    assert!(
        duplicated > 0,
        "the runs that died between commit and ack must leave redelivered copies"
    );
    for event in &events {
        assert_intact(event, &exchange, seq_of(event), true);
    }
    // The dedup view (one row per event_id) over the same files, in DuckDB.
    let files = format!("{}/data/segments/**/*.parquet", directory.path().display());
    let raw = duckdb_scalar(&format!(
        "SELECT count(*) FROM read_parquet('{files}', hive_partitioning = false)"
    ));
    let deduplicated = duckdb_scalar(&format!(
        "SELECT count(*) FROM (SELECT event_id FROM read_parquet('{files}', hive_partitioning = false) \
         QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY redelivered, ingest_time) = 1)"
    ));
    println!(
        "raw rows {raw}, messages archived more than once {duplicated}, deduplicated rows {deduplicated}"
    );
    assert_eq!(raw, events.len().to_string());
    assert_eq!(deduplicated, TOTAL.to_string());
    // And Hindsight's own views: `events` keeps every copy, `events_dedup` one.
    let output = crate::util::run_ok(
        crate::util::hindsight()
            .arg("--config")
            .arg(&config)
            .args(["query", "--format", "csv"])
            .arg("SELECT (SELECT count(*) FROM events) AS raw, (SELECT count(*) FROM events_dedup) AS dedup, (SELECT count(DISTINCT message_id) FROM events_dedup) AS ids"),
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let values = text.lines().nth(1).unwrap_or_default();
    assert_eq!(
        values,
        format!("{},{TOTAL},{TOTAL}", events.len()),
        "hindsight query answered {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn amqp_stream_queue_is_archived_exactly_once_across_sigkills() {
    const TOTAL: u64 = 30_000;
    let directory = tempfile::tempdir().unwrap();
    let (_connection, channel) = connect().await;
    let exchange = declare_topic_exchange(&channel).await;
    let stream = unique("hs-stream");
    let config = write_config(
        directory.path(),
        &AmqpTestConfig {
            mode: "stream",
            queue: &stream,
            exchange: &exchange,
            max_rows: 2_000,
            storage: "",
        },
    );
    drop(start_archive_ready(&config));
    let publisher = publish_in_background(&exchange, 0..TOTAL, 3_000);
    for kill in 1..=4 {
        let mut archive = ChildGuard(start_archive(&config));
        tokio::time::sleep(Duration::from_millis(1500 + 700 * kill)).await;
        archive.0.kill().unwrap();
        archive.0.wait().unwrap();
        println!(
            "kill {kill}: {} events archived so far",
            archived_count(directory.path()).await
        );
    }
    publisher.await.unwrap();
    let (mut archive, _stdout) = start_archive_ready(&config);
    wait_for_archived(directory.path(), TOTAL as i64, Duration::from_secs(180)).await;
    // Give a duplicate, if there were one, the time to be committed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = terminate(&mut archive.0);
    assert!(status.success(), "{status:?}");

    let events = archived_events(directory.path(), &local_store(directory.path())).await;
    assert_eq!(
        events.len() as u64,
        TOTAL,
        "a stream is archived exactly once"
    );
    let mut offsets: Vec<i64> = events.iter().map(|e| e.offset.unwrap()).collect();
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(offsets.len() as u64, TOTAL, "an offset was archived twice");
    for event in &events {
        assert_eq!(event.topic, stream);
        assert_intact(event, &exchange, seq_of(event), false);
    }
}

/// A TCP proxy that can be cut: while down it drops every connection, open or new.
struct FlakyProxy {
    address: String,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<CancellationToken>>,
}

impl FlakyProxy {
    async fn start(target: String) -> FlakyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(CancellationToken::new()));
        let (accept_up, accept_connections) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees a reset
                }
                let cut = accept_connections.lock().unwrap().clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        FlakyProxy {
            address,
            up,
            connections,
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            let mut connections = self.connections.lock().unwrap();
            connections.cancel();
            *connections = CancellationToken::new();
        }
    }
}

/// (current, peak) resident set size of a process, in bytes.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread")]
async fn object_store_outage_holds_commits_and_acks_and_loses_nothing() {
    const FIRST: u64 = 20_000;
    const TOTAL: u64 = 40_000;
    const OUTAGE: Duration = Duration::from_secs(32);
    let directory = tempfile::tempdir().unwrap();
    let bucket = crate::store::create_bucket();
    let proxy = FlakyProxy::start(
        crate::store::s3_endpoint()
            .trim_start_matches("http://")
            .to_owned(),
    )
    .await;
    let storage = format!(
        "[storage]\nurl = \"s3://{bucket}/outage\"\nendpoint = \"http://{}\"\nregion = \"us-east-1\"\n\
         access_key_id = \"test\"\nsecret_access_key = \"test\"\nallow_http = true",
        proxy.address
    );
    let (_connection, channel) = connect().await;
    let exchange = declare_topic_exchange(&channel).await;
    let queue = unique("hs-archive");
    let config = write_config(
        directory.path(),
        &AmqpTestConfig {
            mode: "archive_queue",
            queue: &queue,
            exchange: &exchange,
            max_rows: 2_000,
            storage: &storage,
        },
    );
    let (mut archive, _stdout) = start_archive_ready(&config);
    let pid = archive.0.id();

    publish(&channel, &exchange, 0..FIRST, 4_000).await;
    wait_for_archived(directory.path(), 5_000, Duration::from_secs(60)).await;
    proxy.set_up(false);
    println!("object store down");
    publish(&channel, &exchange, FIRST..TOTAL, 0).await;
    // Let a commit that was already past the store finish.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let archived_before = archived_count(directory.path()).await;
    let depth_before = queue_depth(&queue);
    let (rss_before, _) = rss(pid);
    let outage_started = Instant::now();
    let mut rss_max = rss_before;
    while outage_started.elapsed() < OUTAGE {
        tokio::time::sleep(Duration::from_secs(2)).await;
        rss_max = rss_max.max(rss(pid).0);
    }
    let archived_after = archived_count(directory.path()).await;
    let depth_after = queue_depth(&queue);
    println!(
        "during {OUTAGE:?} of outage: archived {archived_before} -> {archived_after}, \
         queue (ready, unacked) {depth_before:?} -> {depth_after:?}, \
         RSS {} MiB -> max {} MiB",
        rss_before >> 20,
        rss_max >> 20
    );
    assert!(archived_before < TOTAL as i64, "the outage came too late");
    assert_eq!(
        archived_after, archived_before,
        "a commit during the outage"
    );
    assert_eq!(depth_after, depth_before, "an ack during the outage");
    assert!(depth_before.1 > 0, "nothing was in flight");
    assert!(
        rss_max < rss_before + 64 * 1024 * 1024,
        "RSS grew during the outage: {rss_before} -> {rss_max}"
    );

    proxy.set_up(true);
    println!("object store back");
    wait_for_archived(directory.path(), TOTAL as i64, Duration::from_secs(180)).await;
    let (_, peak) = rss(pid);
    let status = terminate(&mut archive.0);
    assert!(status.success(), "{status:?}");
    println!("peak RSS {} MiB", peak >> 20);
    assert!(peak < 512 * 1024 * 1024, "peak RSS {peak}");
    assert_eq!(queue_depth(&queue), (0, 0));

    let store = ArchiveStore::open(&StoreConfig {
        url: format!("s3://{bucket}/outage"),
        endpoint: Some(crate::store::s3_endpoint()),
        region: Some("us-east-1".to_owned()),
        access_key_id: Some("test".to_owned()),
        secret_access_key: Some("test".into()),
        allow_http: true,
    })
    .unwrap();
    let events = archived_events(directory.path(), &store).await;
    let copies = copies_by_message(&events);
    assert_eq!(copies.len() as u64, TOTAL, "messages lost");
    let seqs: HashMap<u64, usize> = events.iter().fold(HashMap::new(), |mut map, event| {
        *map.entry(seq_of(event)).or_default() += 1;
        map
    });
    assert!(seqs.keys().all(|seq| *seq < TOTAL));
    let _ = channel.close(200, "done".into()).await;
}

/// Waits (up to 10 s) until a thread of process `pid` blocks SIGTERM, read
/// from the `SigBlk` masks in `/proc/<pid>/task/*/status`. `main` blocks it
/// on its first line, and the runtime's threads inherit that mask, so some
/// thread keeps it blocked from then on.
fn wait_until_sigterm_is_handled(pid: u32) {
    const SIGTERM_BIT: u64 = 1 << (15 - 1);
    let blocks_sigterm = |status: &str| {
        status.lines().any(|line| {
            line.strip_prefix("SigBlk:")
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
                .is_some_and(|mask| mask & SIGTERM_BIT != 0)
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten();
        let blocked = threads.flatten().any(|thread| {
            std::fs::read_to_string(thread.path().join("status"))
                .is_ok_and(|status| blocks_sigterm(&status))
        });
        if blocked {
            return;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    panic!("process {pid} never blocked SIGTERM within 10 s: start-up leaves a window in which SIGTERM kills it");
}

#[tokio::test(flavor = "multi_thread")]
async fn amqp_existing_queue_mode_consumes_without_declaring() {
    const TOTAL: u64 = 5_000;
    let directory = tempfile::tempdir().unwrap();
    let (_connection, channel) = connect().await;
    let exchange = declare_topic_exchange(&channel).await;
    // The application's own queue, bound to two of the four routing keys.
    let queue = unique("hs-app-queue");
    channel
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for key in ["order.#", "audit"] {
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                key.into(),
                lapin::options::QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    publish(&channel, &exchange, 0..TOTAL, 0).await;
    let routed = (0..TOTAL).filter(|seq| seq % 4 != 2).count() as u64;
    assert_eq!(queue_depth(&queue), (routed, 0));

    let config = write_config(
        directory.path(),
        &AmqpTestConfig {
            mode: "queue",
            queue: &queue,
            exchange: &exchange,
            max_rows: 1_000,
            storage: "",
        },
    );
    let (mut archive, _stdout) = start_archive_ready(&config);
    wait_for_archived(directory.path(), routed as i64, Duration::from_secs(60)).await;
    let status = terminate(&mut archive.0);
    assert!(status.success(), "{status:?}");
    assert_eq!(queue_depth(&queue), (0, 0), "everything archived is acked");

    let events = archived_events(directory.path(), &local_store(directory.path())).await;
    assert_eq!(events.len() as u64, routed);
    for event in &events {
        let seq = seq_of(event);
        assert_ne!(seq % 4, 2, "{seq} was not routed to the queue");
        assert_intact(event, &exchange, seq, true);
    }

    // A queue that does not exist is a clear start-up error, not a declaration.
    let missing = write_config(
        directory.path(),
        &AmqpTestConfig {
            mode: "queue",
            queue: &unique("hs-missing"),
            exchange: &exchange,
            max_rows: 1_000,
            storage: "",
        },
    );
    let output = crate::util::hindsight()
        .arg("--config")
        .arg(&missing)
        .arg("archive")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

/// A small tmpfs mounted on a directory, unmounted when dropped (also when
/// the test fails), so a real full disk leaks nothing.
pub(crate) struct SmallFilesystem(PathBuf);

impl SmallFilesystem {
    pub(crate) fn mount(directory: &Path, size: &str) -> SmallFilesystem {
        std::fs::create_dir_all(directory).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(directory)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cannot mount a tmpfs (this test runs as root)"
        );
        SmallFilesystem(directory.to_owned())
    }

    /// Fills the filesystem with a ballast file until the disk is full.
    pub(crate) fn fill(&self) -> PathBuf {
        use std::io::Write;
        let ballast = self.0.join("ballast");
        let mut file = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0x5a_u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.raw_os_error() == Some(28) => break, // ENOSPC
                Err(error) => panic!("cannot fill the disk: {error}"),
            }
        }
        // The last partial page, byte by byte.
        while file.write(&[0]).is_ok_and(|written| written == 1) {}
        ballast
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        // Lazy, so that a process still holding files cannot keep it mounted.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn metric(metrics_address: &str, line_start: &str) -> Option<String> {
    let (status, body) = http_get(metrics_address, "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .find(|line| line.starts_with(line_start))
        .map(|line| line[line_start.len()..].trim().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_pauses_the_embedded_default_which_resumes_when_space_returns_losing_nothing() {
    const FIRST: u64 = 3_000;
    const TOTAL: u64 = 8_000;
    let directory = tempfile::tempdir().unwrap();
    // The local store and the SQLite catalog share one small filesystem.
    let filesystem = SmallFilesystem::mount(&directory.path().join("data"), "16m");
    let (_connection, channel) = connect().await;
    let exchange = declare_topic_exchange(&channel).await;
    let queue = unique("hs-full");
    let config = write_config(
        directory.path(),
        &AmqpTestConfig {
            mode: "archive_queue",
            queue: &queue,
            exchange: &exchange,
            max_rows: 500,
            storage: "",
        },
    );
    let metrics_address = free_port();
    let mut command = crate::util::hindsight();
    command
        .arg("--config")
        .arg(&config)
        .args(["archive", "--metrics-listen", &metrics_address])
        .env("HINDSIGHT_LOG", "warn,hindsight_ingest=info");
    let (child, mut stdout) = crate::util::spawn_with_stdout(&mut command);
    let mut archive = ChildGuard(child);
    crate::util::read_until(&mut stdout, "archiving", Duration::from_secs(60));
    let paused = "hindsight_storage_full{source=\"amqp-test\"}";

    publish(&channel, &exchange, 0..FIRST, 0).await;
    wait_for_archived(directory.path(), FIRST as i64, Duration::from_secs(60)).await;
    let ballast = filesystem.fill();
    println!("disk full");
    publish(&channel, &exchange, FIRST..TOTAL, 0).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&metrics_address, paused).as_deref() != Some("1") {
        assert!(
            Instant::now() < deadline,
            "the source never reported the full disk"
        );
        assert!(
            archive.0.try_wait().unwrap().is_none(),
            "the archiver stopped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        archive.0.try_wait().unwrap().is_none(),
        "the archiver stopped on a full disk instead of pausing"
    );
    let archived_while_full = archived_count(directory.path()).await;
    assert!(
        archived_while_full < TOTAL as i64,
        "the disk filled too late"
    );

    std::fs::remove_file(ballast).unwrap();
    println!("space back");
    wait_for_archived(directory.path(), TOTAL as i64, Duration::from_secs(60)).await;
    assert_eq!(metric(&metrics_address, paused).as_deref(), Some("0"));
    assert_eq!(
        metric(
            &metrics_address,
            "hindsight_storage_full_pauses_total{source=\"amqp-test\"}"
        )
        .as_deref(),
        Some("1"),
        "the pause was reported more than once"
    );
    let status = terminate(&mut archive.0);
    assert!(status.success(), "{status:?}");

    let events = archived_events(directory.path(), &local_store(directory.path())).await;
    assert_eq!(
        copies_by_message(&events).len() as u64,
        TOTAL,
        "messages lost"
    );
    assert_eq!(events.len() as u64, TOTAL, "messages archived twice");
    let data = directory.path().join("data");
    let glob = format!("{}/**/*.parquet", data.display());
    assert_eq!(
        duckdb_scalar(&format!("SELECT count(*) FROM read_parquet('{glob}')")),
        TOTAL.to_string(),
        "a file the catalog does not list is left"
    );
    let staging = std::fs::read_dir(data.join(".staging")).map_or(0, |d| d.count());
    assert_eq!(staging, 0, "a partial staging file is left");
    assert_eq!(queue_depth(&queue), (0, 0));
    drop(archive);
    drop(filesystem);
    let _ = channel.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_in_the_first_milliseconds_of_start_up_exits_cleanly() {
    let directory = tempfile::tempdir().unwrap();
    let (_connection, channel) = connect().await;
    let exchange = declare_topic_exchange(&channel).await;
    let config = write_config(
        directory.path(),
        &AmqpTestConfig {
            mode: "archive_queue",
            queue: &unique("hs-term"),
            exchange: &exchange,
            max_rows: 500,
            storage: "",
        },
    );
    for delay_ms in [0, 0, 1, 1, 2, 3, 4, 5, 8, 10] {
        let mut child = crate::util::hindsight()
            .arg("--config")
            .arg(&config)
            .arg("archive")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Before `main` runs (the loader mapping a large debug binary) no
        // program can handle a signal. So the clock starts when `main` has
        // blocked SIGTERM, its first act; the old start-up never blocked it
        // and died to a SIGTERM until its handler was installed.
        wait_until_sigterm_is_handled(child.id());
        std::thread::sleep(Duration::from_millis(delay_ms));
        let status = terminate(&mut child);
        assert_eq!(
            status.code(),
            Some(0),
            "SIGTERM {delay_ms} ms after start: {status:?}"
        );
    }
    let _ = channel.close(200, "done".into()).await;
}
