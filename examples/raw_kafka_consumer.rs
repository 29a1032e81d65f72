//! Benchmark baseline (`scripts/bench`, P1): the least a Kafka consumer can do.
//! A `BaseConsumer` drains a topic from the beginning and touches every
//! payload, with no processing, no storage and no commits.
//!
//! usage: raw_kafka_consumer BROKERS TOPIC COUNT [TIMEOUT_SECONDS]
//! (`BENCH_KAFKA_CLIENT="security.protocol=sasl_ssl;…"` adds properties)
//!
//! Prints one JSON line: events, bytes, seconds (from start, group join
//! included, to the last record), events_per_second.

mod support;

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, count, rest @ ..] = args.as_slice() else {
        return Err("usage: raw_kafka_consumer BROKERS TOPIC COUNT [TIMEOUT_SECONDS]".into());
    };
    let count: u64 = count.parse()?;
    let timeout = support::timeout(rest)?;
    let started = Instant::now();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("raw-bench-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    support::with_client_properties(&mut config)?;
    let consumer: BaseConsumer = config.create()?;
    consumer.subscribe(&[topic])?;
    let (mut events, mut bytes) = (0u64, 0u64);
    while events < count {
        if started.elapsed() > timeout {
            return Err(format!("timed out after {events} of {count} events").into());
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                events += 1;
                bytes += message.payload().map_or(0, <[u8]>::len) as u64;
            }
            Some(Err(error)) => eprintln!("kafka error: {error}"),
            None => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    support::report(events, bytes, seconds);
    Ok(())
}
