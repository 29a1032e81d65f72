//! Replay onto RabbitMQ: publisher confirms, and the mandatory flag. A
//! message the broker returns (no queue bound for its routing key) or nacks
//! counts as a failure. Sealing a window moves its confirms into the returned
//! future; the channel goes on publishing the next window meanwhile.
//!
//! Mapping: RabbitMQ events get back every basic property and their exact
//! headers table, rebuilt from the typed JSON the ingester archived
//! (`amqp_headers_table`), nested tables, arrays and types included. The
//! timestamp is kept when the original message had one. A message that had
//! no headers table is published without one, unless header rules or
//! provenance headers (on by default) give it entries; a table that was
//! there, even empty, is kept.
//!
//! Kafka events: the routing key is the override, else the Kafka key as
//! UTF-8, else empty. Each header becomes a long string (a null value becomes
//! void; repeated names become an array, in order). The key is also sent as
//! the `kafka-key` header. `content_type`, `message_id` and `correlation_id`
//! come from the conventional headers, as archived; the timestamp is the event
//! time in seconds, and delivery mode is 2 (persistent).
//!
//! A Kafka tombstone (a null value) has no AMQP equivalent, since a body is
//! always bytes: it is published with an empty body and the header
//! `hindsight-tombstone` = `true` (a boolean), so a consumer can tell it from
//! an empty value, which never carries that header.

use super::client::AmqpConnection;
use async_trait::async_trait;
use hindsight_archive::{Bus, Event};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};

use hindsight_replay::publisher::{
    AmqpTarget, HeaderRules, PendingWindow, Publisher, WindowOutcome,
};
use hindsight_replay::{Error, ErrorKind, Result};

use super::convert::{decode_lapin_table, long_string};

fn amqp_error(message: &str, error: lapin::Error) -> Error {
    Error::new(ErrorKind::Retryable, format!("{message}: {error}"))
}

/// Marks a replayed Kafka tombstone, whose body is empty.
pub const TOMBSTONE_HEADER: &str = "hindsight-tombstone";

/// The headers table of a replayed message, after the rules and provenance:
/// `None` when the original had none and nothing is added.
pub fn headers_table(event: &Event, rules: &HeaderRules) -> Result<Option<FieldTable>> {
    let mut entries: Vec<(String, AMQPValue)> = Vec::new();
    // An AMQP message's table, even empty, is kept; a Kafka event's headers
    // become a table only when there are some.
    let had_table = event.bus == Bus::Amqp && event.amqp.headers_table.is_some();
    match (&event.bus, &event.amqp.headers_table) {
        (Bus::Amqp, Some(json)) => {
            let table = decode_lapin_table(json).map_err(|error| {
                Error::invalid_input(format!(
                    "the archived headers table of event {}: {}",
                    event.event_id,
                    error.message()
                ))
            })?;
            for (name, value) in table.inner() {
                entries.push((name.as_str().to_owned(), value.clone()));
            }
        }
        (Bus::Amqp, None) => {}
        (Bus::Kafka, _) => {
            for header in &event.headers {
                let value = match &header.value {
                    Some(bytes) => long_string(bytes),
                    None => AMQPValue::Void,
                };
                match entries.iter_mut().find(|(name, _)| *name == header.name) {
                    Some((_, AMQPValue::FieldArray(items))) => items.push(value),
                    Some((_, existing)) => {
                        let first = std::mem::replace(existing, AMQPValue::Void);
                        *existing = AMQPValue::FieldArray(FieldArray::from(vec![first, value]));
                    }
                    None => entries.push((header.name.clone(), value)),
                }
            }
            if let Some(key) = &event.key {
                entries.push(("kafka-key".to_owned(), long_string(key)));
            }
            if event.is_tombstone() {
                entries.push((TOMBSTONE_HEADER.to_owned(), AMQPValue::Boolean(true)));
            }
        }
    }
    let mut table = FieldTable::default();
    for (name, value) in entries {
        if !rules.strips(&name) {
            table.insert(ShortString::from(name), value);
        }
    }
    for (name, value) in &rules.set {
        table.insert(
            ShortString::from(name.as_str()),
            long_string(value.as_bytes()),
        );
    }
    for (name, value) in rules.provenance_headers(event) {
        table.insert(ShortString::from(name), long_string(value.as_bytes()));
    }
    if table.inner().is_empty() && !had_table {
        return Ok(None);
    }
    Ok(Some(table))
}

/// The basic properties of a replayed message.
pub fn properties(event: &Event, table: Option<FieldTable>) -> BasicProperties {
    let short = |text: &Option<String>| text.as_deref().map(ShortString::from);
    let mut properties = BasicProperties::default();
    if let Some(table) = table {
        properties = properties.with_headers(table);
    }
    if let Some(value) = short(&event.content_type) {
        properties = properties.with_content_type(value);
    }
    if let Some(value) = short(&event.message_id) {
        properties = properties.with_message_id(value);
    }
    if let Some(value) = short(&event.correlation_id) {
        properties = properties.with_correlation_id(value);
    }
    // The ingester uses the ingest time when a message has no timestamp.
    let had_timestamp = event.bus == Bus::Kafka || event.event_time != event.ingest_time;
    if had_timestamp {
        if let Ok(seconds) = u64::try_from(event.event_time.div_euclid(1_000_000)) {
            properties = properties.with_timestamp(seconds);
        }
    }
    let amqp = &event.amqp;
    match event.bus {
        Bus::Kafka => properties = properties.with_delivery_mode(2),
        Bus::Amqp => {
            if let Some(value) = amqp.delivery_mode {
                properties = properties.with_delivery_mode(value);
            }
        }
    }
    if let Some(value) = amqp.priority {
        properties = properties.with_priority(value);
    }
    if let Some(value) = short(&amqp.content_encoding) {
        properties = properties.with_content_encoding(value);
    }
    if let Some(value) = short(&amqp.expiration) {
        properties = properties.with_expiration(value);
    }
    if let Some(value) = short(&amqp.reply_to) {
        properties = properties.with_reply_to(value);
    }
    if let Some(value) = short(&amqp.message_type) {
        properties = properties.with_type(value);
    }
    if let Some(value) = short(&amqp.app_id) {
        properties = properties.with_app_id(value);
    }
    if let Some(value) = short(&amqp.user_id) {
        properties = properties.with_user_id(value);
    }
    properties
}

/// The routing key of a replayed message.
pub fn routing_key(event: &Event, target: &AmqpTarget) -> String {
    if let Some(fixed) = &target.routing_key {
        return fixed.clone();
    }
    if let Some(key) = &event.routing_key {
        return key.clone();
    }
    event
        .key
        .as_deref()
        .and_then(|key| std::str::from_utf8(key).ok())
        .unwrap_or_default()
        .to_owned()
}

/// Waits for the confirms of one window, in order, and counts them.
async fn confirmed(confirms: Vec<PublisherConfirm>) -> Result<WindowOutcome> {
    let mut outcome = WindowOutcome::default();
    for confirm in confirms {
        let confirmation = confirm
            .await
            .map_err(|e| amqp_error("lost the channel while waiting for confirms", e))?;
        let failure = match confirmation {
            Confirmation::Ack(None) => None,
            Confirmation::Ack(Some(returned)) => Some(format!(
                "returned by the broker: {} {} (exchange {:?}, routing key {:?})",
                returned.reply_code,
                returned.reply_text.as_str(),
                returned.delivery.exchange.as_str(),
                returned.delivery.routing_key.as_str()
            )),
            Confirmation::Nack(_) => Some("nacked by the broker".to_owned()),
            Confirmation::NotRequested => Some("the broker did not confirm".to_owned()),
        };
        match failure {
            None => outcome.delivered += 1,
            Some(reason) => {
                outcome.failed += 1;
                outcome.first_failure.get_or_insert(reason);
            }
        }
    }
    Ok(outcome)
}

pub struct AmqpPublisher {
    connection: Connection,
    channel: Channel,
    target: AmqpTarget,
    rules: HeaderRules,
    pending: Vec<PublisherConfirm>,
}

impl AmqpPublisher {
    /// `link` is the connection `what` names (`connection "prod-rabbit"`).
    pub async fn connect(
        what: &str,
        link: &AmqpConnection,
        target: &AmqpTarget,
        rules: HeaderRules,
    ) -> Result<Self> {
        let connection = link.connect(what, "hindsight replay").await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| amqp_error("cannot open an AMQP channel", e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| amqp_error("cannot enable publisher confirms", e))?;
        Ok(AmqpPublisher {
            connection,
            channel,
            target: target.clone(),
            rules,
            pending: Vec::new(),
        })
    }
}

#[async_trait]
impl Publisher for AmqpPublisher {
    async fn send(&mut self, event: &Event, destination: &str) -> Result<()> {
        let table = headers_table(event, &self.rules)?;
        let confirm = self
            .channel
            .basic_publish(
                ShortString::from(destination),
                ShortString::from(routing_key(event, &self.target)),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                event.payload_bytes(),
                properties(event, table),
            )
            .await
            .map_err(|error| {
                amqp_error(
                    &format!("cannot publish to exchange {destination:?}"),
                    error,
                )
            })?;
        self.pending.push(confirm);
        Ok(())
    }

    fn seal(&mut self) -> PendingWindow {
        Box::pin(confirmed(std::mem::take(&mut self.pending)))
    }

    async fn close(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.seal().await?;
        }
        let _ = self.channel.close(200, "replay done".into()).await;
        let _ = self.connection.close(200, "replay done".into()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_sent_only_when_there_was_one_or_headers_are_added() {
        let no_rules = HeaderRules::default();
        let provenance = HeaderRules {
            provenance: Some("r".repeat(32)),
            ..Default::default()
        };
        let mut event = Event {
            bus: Bus::Amqp,
            event_id: "e".repeat(32),
            ..Default::default()
        };
        assert_eq!(headers_table(&event, &no_rules).unwrap(), None);
        assert!(headers_table(&event, &provenance).unwrap().is_some());
        event.amqp.headers_table = Some("{}".to_owned());
        assert_eq!(
            headers_table(&event, &no_rules).unwrap(),
            Some(FieldTable::default())
        );
        // An empty value (not a tombstone, which `Event::default()` is).
        let mut kafka = Event {
            event_id: "e".repeat(32),
            payload: Some(Vec::new()),
            ..Default::default()
        };
        assert_eq!(headers_table(&kafka, &no_rules).unwrap(), None);
        assert!(properties(&kafka, None).headers().is_none());
        kafka.payload = None;
        let tombstone = headers_table(&kafka, &no_rules)
            .unwrap()
            .unwrap_or_default();
        assert_eq!(
            tombstone.inner().get("hindsight-tombstone"),
            Some(&AMQPValue::Boolean(true))
        );
    }
}
