//! Kafka tombstones (records whose value is null) through the whole archive,
//! against the real brokers: produced by confluent-kafka, archived by
//! `hindsight archive` as a NULL payload (apart from empty values), found by
//! SQL (`payload IS NULL`), the events API and the UI, then replayed to Kafka
//! as tombstones (confluent-kafka reads a null value back) and to RabbitMQ as
//! an empty body with the header `hindsight-tombstone` = true.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use hindsight_archive::catalog::{Catalog, SegmentFilter};
use hindsight_archive::segment::decode_segment;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::{AMQPValue, FieldTable};

use crate::replay::{amqp_url, connect, consume_kafka, exchange_and_queue, replay_command, unique};
use crate::util::{
    catalog_url, create_kafka_topic, hindsight, http_get, kafka_brokers, run_ok,
    start_archive_ready, terminate, wait_for_archived, START_SERVICES,
};

const RECORDS: u64 = 30;

/// The value of record `seq`; mirrors tests/support/tombstone_produce.py.
fn value(seq: u64) -> Option<Vec<u8>> {
    match seq % 3 {
        0 => None,
        1 => Some(Vec::new()),
        _ => Some(format!(r#"{{"seq":{seq}}}"#).into_bytes()),
    }
}

fn produce(topic: &str) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/tombstone_produce.py"
    );
    let status = Command::new("python3")
        .args([script, &kafka_brokers(), topic, &RECORDS.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); set up with {START_SERVICES}"));
    assert!(status.success(), "the confluent-kafka producer failed");
}

/// `hindsight query --format ndjson` over the archive in `data`.
fn query(data: &std::path::Path, sql: &str) -> Vec<serde_json::Value> {
    let output = run_ok(
        hindsight()
            .arg("--data-dir")
            .arg(data)
            .args(["query", "--format", "ndjson", sql]),
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn seq_of(text: &str) -> u64 {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_tombstones_round_trip_as_tombstones_and_empty_values_stay_empty() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    let topic = create_kafka_topic(&unique("hs-tombstones"), 1);
    produce(&topic);

    let config = crate::kafka::write_config(
        directory.path(),
        &format!("topics = [\"{topic}\"]"),
        &format!("g-{topic}"),
        "",
        "15m",
    );
    let (mut archive, _stdout) = start_archive_ready(&config);
    wait_for_archived(directory.path(), RECORDS as i64, Duration::from_secs(120)).await;
    let status = terminate(&mut archive.0);
    assert!(status.success(), "archive did not exit cleanly: {status:?}");

    // The segments: NULL for a tombstone, empty bytes for an empty value.
    let catalog = Catalog::connect(&catalog_url(directory.path()))
        .await
        .unwrap();
    let segments = catalog.segments(&SegmentFilter::default()).await.unwrap();
    catalog.close().await;
    let mut archived = BTreeMap::new();
    for record in &segments {
        let bytes = std::fs::read(data.join(&record.segment.uri)).unwrap();
        for event in decode_segment(bytes.into()).unwrap() {
            let seq =
                seq_of(std::str::from_utf8(event.headers[0].value.as_deref().unwrap()).unwrap());
            assert_eq!(event.payload, value(seq), "archived payload of {seq}");
            assert_eq!(event.is_tombstone(), seq % 3 == 0);
            assert_eq!(event.payload_size, event.payload_bytes().len() as i64);
            archived.insert(seq, event.event_id);
        }
    }
    assert_eq!(archived.len() as u64, RECORDS, "every record archived once");

    // SQL: `payload IS NULL` finds exactly the tombstones.
    let rows = query(
        &data,
        "SELECT header_text(headers, 'seq') AS seq, payload IS NULL AS tombstone, \
         payload_size, payload_text FROM events ORDER BY \"offset\"",
    );
    assert_eq!(rows.len() as u64, RECORDS);
    for row in &rows {
        let seq = seq_of(row["seq"].as_str().unwrap());
        assert_eq!(row["tombstone"], seq % 3 == 0, "row {row}");
        let text = value(seq).map(|bytes| String::from_utf8(bytes).unwrap());
        assert_eq!(row["payload_text"].as_str(), text.as_deref(), "row {row}");
    }
    let counts = query(
        &data,
        "SELECT count(*) FILTER (WHERE payload IS NULL) AS tombstones, \
         count(*) FILTER (WHERE payload = X'') AS empty FROM events",
    );
    assert_eq!(counts[0]["tombstones"], RECORDS / 3);
    assert_eq!(counts[0]["empty"], RECORDS / 3);

    // The events API: `tombstone` and a null `payload_base64`, apart from "".
    let (server, base) = crate::web::start_server(
        hindsight()
            .arg("--data-dir")
            .arg(&data)
            .args(["serve", "--listen", "127.0.0.1:0"]),
        Duration::from_secs(60),
    );
    let address = base.trim_start_matches("http://").to_owned();
    let (status, body) = http_get(&address, &format!("/api/v1/events?topic={topic}&limit=100"));
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len() as u64, RECORDS);
    for event in events {
        let seq = seq_of(event["headers"][0]["value"].as_str().unwrap());
        let text = value(seq).map(|bytes| String::from_utf8(bytes).unwrap());
        assert_eq!(event["tombstone"], seq % 3 == 0, "event {event}");
        assert_eq!(
            event["payload_text"].as_str(),
            text.as_deref(),
            "event {event}"
        );
        assert_eq!(
            event["payload_base64"].is_null(),
            seq % 3 == 0,
            "event {event}"
        );
        if seq % 3 == 1 {
            assert_eq!(event["payload_base64"], "", "event {event}");
        }
    }
    // The UI: the event page and the explorer say "tombstone", not "empty".
    crate::web::check_tombstones_in_the_browser(&base, &topic, &archived[&0], &archived[&1]);
    drop(server);

    // Replay to Kafka: confluent-kafka reads tombstones back as null values.
    let target = create_kafka_topic(&unique("hs-tombstones-replayed"), 1);
    run_ok(replay_command(directory.path()).args([
        "run",
        "--topic",
        &topic,
        "--kafka",
        &kafka_brokers(),
        "--to-topic",
        &target,
    ]));
    let consumed = consume_kafka(&target, RECORDS, 20);
    assert_eq!(consumed.len() as u64, RECORDS);
    for message in &consumed {
        let seq = seq_of(&message.header("seq").unwrap());
        assert_eq!(message.value, value(seq), "replayed value of {seq}");
    }

    // Replay to RabbitMQ: an empty body, marked as a tombstone by a header.
    let (_connection, channel) = connect().await;
    let (exchange, queue) = exchange_and_queue(&channel).await;
    run_ok(replay_command(directory.path()).args([
        "run",
        "--topic",
        &topic,
        "--amqp",
        &amqp_url(),
        "--to-exchange",
        &exchange,
    ]));
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "tombstone-check".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for received in 0..RECORDS {
        let delivery = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {received} of {RECORDS} messages arrived"))
            .unwrap()
            .unwrap();
        let headers = delivery.properties.headers().clone().unwrap();
        let seq = match headers.inner().get("seq") {
            Some(AMQPValue::LongString(text)) => {
                seq_of(std::str::from_utf8(text.as_bytes()).unwrap())
            }
            other => panic!("seq header: {other:?}"),
        };
        assert_eq!(
            delivery.data,
            value(seq).unwrap_or_default(),
            "body of {seq}"
        );
        let marker = headers.inner().get("hindsight-tombstone");
        if seq % 3 == 0 {
            assert_eq!(marker, Some(&AMQPValue::Boolean(true)), "tombstone {seq}");
        } else {
            assert_eq!(marker, None, "{seq} is not a tombstone");
        }
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
}
