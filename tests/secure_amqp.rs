//! RabbitMQ over TLS: `amqps://` with the broker's certificate verified
//! against the test CA, logging in by password or by client certificate
//! (EXTERNAL), archived and replayed byte for byte; and the one-line
//! start-up error of a wrong CA, an expired client certificate and a
//! plaintext port. RabbitMQ's TLS listener (127.0.0.1:5671, client
//! certificates verified, `rabbitmq_auth_mechanism_ssl`) and the
//! certificates come from `scripts/services.sh`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;

use crate::amqp::{archived_events, connect, headers, local_store, payload, routing_key, seq_of};
use crate::replay::{exchange_and_queue, unique};
use crate::secure::{
    archive_error_line, expect_error_lines, rename_connection, service_env, tls_file,
};
use crate::util::{hindsight, run_ok, start_archive_ready, terminate, wait_for_archived};

const EVENTS: u64 = 10_000;

/// The RabbitMQ TLS port's `host:port`.
fn amqps_address() -> String {
    let url = service_env("HINDSIGHT_TEST_AMQPS_URL");
    let rest = url.split_once('@').map_or(url.as_str(), |(_, rest)| rest);
    rest.split('/').next().unwrap().to_owned()
}

/// `[connections.secured]` for RabbitMQ over TLS: by password (from a
/// file), or by client certificate (EXTERNAL).
fn connection(directory: &Path, external: bool) -> String {
    let ca = tls_file("ca.pem").display().to_string();
    let address = amqps_address();
    if external {
        format!(
            "bus = \"amqp\"\nurl = \"amqps://{address}/%2f\"\nauth = \"external\"\n\
             tls = {{ ca_file = {ca:?}, cert_file = {:?}, key_file = {:?} }}\n",
            tls_file("client.pem").display().to_string(),
            tls_file("client.key").display().to_string(),
        )
    } else {
        let password = directory.join("rabbit-password");
        std::fs::write(&password, "guest\n").unwrap();
        format!(
            "bus = \"amqp\"\nurl = \"amqps://guest@{address}/%2f\"\npassword_file = {:?}\n\
             tls = {{ ca_file = {ca:?} }}\n",
            password.display().to_string()
        )
    }
}

fn write_config(directory: &Path, connection: &str, queue: &str, exchange: &str) -> PathBuf {
    let file = directory.join("hindsight.toml");
    let text = format!(
        "data_dir = {data:?}\n[flush]\nmax_rows = 20000\nmax_age = \"1s\"\n\n\
         [connections.secured]\n{connection}\n\
         [[sources]]\ntype = \"amqp\"\nname = \"secured-rabbit\"\nconnection = \"secured\"\n\
         queue = {queue:?}\n[[sources.bindings]]\nexchange = {exchange:?}\nrouting_key = \"#\"\n",
        data = directory.join("data").display().to_string(),
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// Publishes 0..EVENTS over plaintext with confirms (no `user_id`: RabbitMQ
/// checks it against whoever replays).
async fn publish(exchange: &str) {
    let (_connection, channel) = connect().await;
    let mut confirms = Vec::new();
    for seq in 0..EVENTS {
        let properties = BasicProperties::default()
            .with_message_id(format!("m-{seq}").as_str().into())
            .with_content_type("application/json".into())
            .with_headers(headers(seq));
        confirms.push(
            channel
                .basic_publish(
                    exchange.into(),
                    routing_key(seq).into(),
                    BasicPublishOptions::default(),
                    &payload(seq),
                    properties,
                )
                .await
                .unwrap(),
        );
        if confirms.len() == 1000 {
            for confirm in confirms.drain(..) {
                assert!(confirm.await.unwrap().is_ack(), "broker nacked a publish");
            }
        }
    }
    for confirm in confirms {
        assert!(confirm.await.unwrap().is_ack(), "broker nacked a publish");
    }
}

async fn round_trip(external: bool) {
    let directory = tempfile::tempdir().unwrap();
    let (_connection, channel) = connect().await;
    let (source_exchange, _unused_queue) = exchange_and_queue(&channel).await;
    let (target_exchange, target_queue) = exchange_and_queue(&channel).await;
    let config = write_config(
        directory.path(),
        &connection(directory.path(), external),
        &unique("hs-secured-archive"),
        &source_exchange,
    );
    let (mut archive, _stdout) = start_archive_ready(&config);
    publish(&source_exchange).await;
    wait_for_archived(directory.path(), EVENTS as i64, Duration::from_secs(180)).await;
    let status = terminate(&mut archive.0);
    assert!(status.success(), "archive did not stop cleanly: {status:?}");
    let events = archived_events(directory.path(), &local_store(directory.path())).await;
    assert_eq!(events.len() as u64, EVENTS);
    let mut seen = HashSet::new();
    for event in &events {
        let seq = seq_of(event);
        assert!(seen.insert(seq), "{seq} archived twice");
        assert_eq!(event.payload, Some(payload(seq)), "payload of {seq}");
        assert_eq!(event.routing_key.as_deref(), Some(routing_key(seq)));
        assert_eq!(
            event.message_id.as_deref(),
            Some(format!("m-{seq}").as_str())
        );
    }

    run_ok(hindsight().arg("--config").arg(&config).args([
        "replay",
        "run",
        "--source",
        "secured-rabbit",
        "--target",
        "secured",
        "--to-exchange",
        &target_exchange,
    ]));
    let mut consumer = channel
        .basic_consume(
            target_queue.as_str().into(),
            "secure-check".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut replayed = HashSet::new();
    while (replayed.len() as u64) < EVENTS {
        let delivery = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {EVENTS} replayed messages arrived",
                    replayed.len()
                )
            })
            .unwrap()
            .unwrap();
        let table = delivery.properties.headers().clone().unwrap();
        let seq = match table.inner().get("seq") {
            Some(AMQPValue::LongLongInt(seq)) => *seq as u64,
            other => panic!("seq header: {other:?}"),
        };
        assert!(replayed.insert(seq), "{seq} replayed twice");
        assert_eq!(delivery.data, payload(seq), "payload of {seq}");
        assert_eq!(delivery.routing_key.as_str(), routing_key(seq));
        let expected = headers(seq);
        for (name, value) in expected.inner() {
            assert_eq!(
                table.inner().get(name),
                Some(value),
                "header {name} of {seq}"
            );
        }
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_over_amqps_with_peer_verification_archives_and_replays_byte_exact() {
    round_trip(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_over_amqps_with_external_login_archives_and_replays_byte_exact() {
    round_trip(true).await;
}

/// An unknown CA, an expired client certificate, `amqps://` to the
/// plaintext port and `amqp://` to the TLS port each stop `archive` at
/// once, in one line naming the connection, the host and the cause.
#[test]
fn misconfigured_rabbitmq_connections_fail_at_start_in_one_line() {
    let directory = tempfile::tempdir().unwrap();
    let ca = tls_file("ca.pem").display().to_string();
    let other_ca = tls_file("other-ca.pem").display().to_string();
    let tls_address = amqps_address();
    let plain_url = service_env("HINDSIGHT_TEST_AMQP_URL");
    let plain_address = plain_url
        .split_once('@')
        .map_or(plain_url.as_str(), |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let cases = [
        (
            "unknown-ca",
            format!("bus = \"amqp\"\nurl = \"amqps://guest:guest@{tls_address}/%2f\"\ntls = {{ ca_file = {other_ca:?} }}\n"),
            tls_address.clone(),
            "not signed by a trusted CA",
        ),
        (
            "expired-client-certificate",
            format!(
                "bus = \"amqp\"\nurl = \"amqps://{tls_address}/%2f\"\nauth = \"external\"\n\
                 tls = {{ ca_file = {ca:?}, cert_file = {:?}, key_file = {:?} }}\n",
                tls_file("expired-client.pem").display().to_string(),
                tls_file("expired-client.key").display().to_string()
            ),
            tls_address.clone(),
            "expired",
        ),
        (
            "tls-to-plaintext-port",
            format!("bus = \"amqp\"\nurl = \"amqps://guest:guest@{plain_address}/%2f\"\ntls = {{ ca_file = {ca:?} }}\n"),
            plain_address.clone(),
            "plaintext port",
        ),
        (
            "plaintext-to-tls-port",
            format!("bus = \"amqp\"\nurl = \"amqp://guest:guest@{tls_address}/%2f\"\n"),
            tls_address.clone(),
            "TLS port",
        ),
    ];
    expect_error_lines(directory.path(), cases, "guest:guest", archive_fails_amqp);
}

/// Runs `archive` with an AMQP source through the connection `name`; it
/// must fail. Returns the error line.
fn archive_fails_amqp(directory: &Path, name: &str, connection: &str) -> String {
    let config = write_config(directory, connection, &unique("hs-never"), "amq.topic");
    rename_connection(&config, name);
    archive_error_line(directory, &config, name)
}
