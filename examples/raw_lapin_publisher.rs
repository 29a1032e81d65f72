//! Benchmark baseline (`scripts/bench`, P7) and data loader: publishes the
//! records of a file to an exchange with publisher confirms, in windows of
//! 10 000 (as `hindsight replay` does), waiting for every confirm.
//!
//! usage: raw_lapin_publisher URL EXCHANGE FILE [TIMEOUT_SECONDS]
//!
//! FILE has one record per line: `KEY<TAB>EVENT_TYPE<TAB>PAYLOAD`; the event
//! type is the routing key; the message id is the key and the line number. Prints one JSON line:
//! events, bytes, seconds (first publish to last confirm), events_per_second.

mod support;

use std::time::Instant;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};

const WINDOW: usize = 10_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, exchange, file, rest @ ..] = args.as_slice() else {
        return Err("usage: raw_lapin_publisher URL EXCHANGE FILE [TIMEOUT_SECONDS]".into());
    };
    let timeout = support::timeout(rest)?;
    let records = support::read_records(file)?;
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let started = Instant::now();
    let mut bytes = 0u64;
    for (window_index, window) in records.chunks(WINDOW).enumerate() {
        let mut confirms = Vec::with_capacity(window.len());
        for support::Record {
            key,
            event_type,
            payload,
        } in window
        {
            // Unique per record: RabbitMQ archives identify queue messages by message id.
            let message_id = format!("{key}-{}", window_index * WINDOW + confirms.len());
            let properties = BasicProperties::default()
                .with_message_id(message_id.as_str().into())
                .with_content_type("application/json".into())
                .with_delivery_mode(2);
            confirms.push(
                channel
                    .basic_publish(
                        exchange.as_str().into(),
                        event_type.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            immediate: false,
                        },
                        payload.as_bytes(),
                        properties,
                    )
                    .await?,
            );
            bytes += payload.len() as u64;
        }
        for confirm in confirms {
            let remaining = timeout.saturating_sub(started.elapsed());
            match tokio::time::timeout(remaining, confirm).await?? {
                Confirmation::Ack(None) => {}
                other => return Err(format!("publish not confirmed: {other:?}").into()),
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let events = records.len();
    support::report(events as u64, bytes, seconds);
    connection.close(200, "done".into()).await?;
    Ok(())
}
