//! Benchmark baseline (`scripts/bench`, P3): the least a RabbitMQ consumer
//! that acknowledges can do. Prefetch 1000, an ack with `multiple` every 100
//! deliveries, no processing and no storage.
//!
//! usage: raw_lapin_consumer URL QUEUE COUNT [TIMEOUT_SECONDS]
//!
//! Prints one JSON line: events, bytes, seconds (connect to the last ack),
//! events_per_second.

mod support;

use std::time::Instant;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, queue, count, rest @ ..] = args.as_slice() else {
        return Err("usage: raw_lapin_consumer URL QUEUE COUNT [TIMEOUT_SECONDS]".into());
    };
    let count: u64 = count.parse()?;
    let timeout = support::timeout(rest)?;
    let started = Instant::now();
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    // RAW_PREFETCH and RAW_ACK_EVERY change the defaults (1000 and 100), to
    // see what the broker does with Hindsight's pattern: a large prefetch and
    // one ack per batch.
    let setting = |name: &str, default: u64| -> Result<u64, Box<dyn std::error::Error>> {
        Ok(std::env::var(name).map_or(Ok(default), |value| value.parse())?)
    };
    let prefetch = u16::try_from(setting("RAW_PREFETCH", 1000)?)?;
    let ack_every = setting("RAW_ACK_EVERY", 100)?.max(1);
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "raw-bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let (mut events, mut bytes) = (0u64, 0u64);
    while events < count {
        let remaining = timeout.saturating_sub(started.elapsed());
        let Ok(Some(delivery)) = tokio::time::timeout(remaining, consumer.next()).await else {
            return Err(format!("timed out or closed after {events} of {count} events").into());
        };
        let delivery = delivery?;
        events += 1;
        bytes += delivery.data.len() as u64;
        if events % ack_every == 0 || events == count {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    support::report(events, bytes, seconds);
    connection.close(200, "done".into()).await?;
    Ok(())
}
