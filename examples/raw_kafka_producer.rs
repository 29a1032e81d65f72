//! Benchmark baseline (`scripts/bench`, P7) and data loader: an idempotent
//! `BaseProducer` (`acks=all`) that sends the records of a file as fast as
//! the broker confirms them.
//!
//! usage: raw_kafka_producer BROKERS TOPIC FILE [TIMEOUT_SECONDS]
//!
//! FILE has one record per line: `KEY<TAB>EVENT_TYPE<TAB>PAYLOAD`. The event
//! type goes into an `event-type` header. Prints one JSON line: events,
//! bytes, seconds (first send to last confirm), events_per_second.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

#[derive(Default)]
struct Counting {
    failed: AtomicU64,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("delivery failed: {error}");
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, file, rest @ ..] = args.as_slice() else {
        return Err("usage: raw_kafka_producer BROKERS TOPIC FILE [TIMEOUT_SECONDS]".into());
    };
    let timeout = support::timeout(rest)?;
    let records = support::read_records(file)?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5");
    support::with_client_properties(&mut config)?;
    let producer: rdkafka::producer::BaseProducer<Counting> =
        config.create_with_context(Counting::default())?;
    let started = Instant::now();
    let mut bytes = 0u64;
    for support::Record {
        key,
        event_type,
        payload,
    } in &records
    {
        let headers = OwnedHeaders::new().insert(Header {
            key: "event-type",
            value: Some(event_type.as_bytes()),
        });
        let mut record = BaseRecord::to(topic)
            .key(key.as_bytes())
            .payload(payload.as_bytes())
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                    if started.elapsed() > timeout {
                        return Err("timed out".into());
                    }
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
        bytes += payload.len() as u64;
        producer.poll(Duration::ZERO);
    }
    producer.flush(timeout.saturating_sub(started.elapsed()))?;
    let seconds = started.elapsed().as_secs_f64();
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!("{failed} deliveries failed").into());
    }
    let events = records.len();
    support::report(events as u64, bytes, seconds);
    Ok(())
}
