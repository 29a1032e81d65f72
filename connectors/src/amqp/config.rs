//! `[[sources]] type = "amqp"`: the RabbitMQ source's configuration and its
//! checks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hindsight_archive::SecretUrl;
use serde::{Deserialize, Serialize};

use super::client::AmqpConnection;

/// How the source reaches its messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmqpMode {
    /// Declare a durable queue bound to `bindings`, and consume it.
    #[default]
    ArchiveQueue,
    /// Consume an existing queue.
    Queue,
    /// Consume a stream queue by offset, from the catalog checkpoint.
    Stream,
}

/// Where a stream without a checkpoint starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamStart {
    /// The oldest message the stream still holds.
    #[default]
    First,
    /// The last chunk written.
    Last,
    /// Only messages published from now on.
    Next,
}

/// One binding of the archive queue (or stream) to an exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpBinding {
    pub exchange: String,
    /// `#` archives everything on a topic exchange; fanout exchanges ignore it.
    #[serde(default = "default_binding_key")]
    pub routing_key: String,
    /// Binding arguments, for headers exchanges (`x-match = "any"`, …).
    #[serde(default)]
    pub arguments: BTreeMap<String, String>,
}

fn default_binding_key() -> String {
    "#".to_owned()
}

/// The type of a queue Hindsight declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
}

/// `[[sources]] type = "amqp"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSourceConfig {
    pub name: String,
    /// A `[connections.NAME]` with `bus = "amqp"`: URL, password, TLS, login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Instead of a connection: `amqp://user:password@host:port/vhost` (`%2f`
    /// is the default vhost); printed without the password.
    #[serde(default)]
    pub url: SecretUrl,
    #[serde(default)]
    pub mode: AmqpMode,
    /// The queue (or stream) to consume, declared in `archive_queue` mode.
    #[serde(default)]
    pub queue: String,
    /// The type of the archive queue Hindsight declares.
    #[serde(default)]
    pub queue_type: QueueType,
    #[serde(default)]
    pub bindings: Vec<AmqpBinding>,
    /// Messages in flight (unacknowledged). 0: twice the flush row limit,
    /// capped at 65535 (the AMQP maximum). Batches hold at most half of it,
    /// so one batch is written while the next one fills.
    #[serde(default)]
    pub prefetch: u16,
    #[serde(default)]
    pub stream_start: StreamStart,
    /// Payloads larger than this are archived truncated, flagged, with their size.
    #[serde(default = "hindsight_ingest::source::default_max_payload_bytes")]
    pub max_payload_bytes: usize,
    /// Overrides of the `[flush]` limits for this source.
    #[serde(default)]
    pub flush: hindsight_ingest::source::FlushOverride,
    /// The broker's `consumer_timeout` (RabbitMQ's default is 30 minutes). The
    /// flush age must stay well below it, or the broker closes the channel.
    #[serde(default = "default_consumer_timeout", with = "humantime_serde")]
    pub consumer_timeout: Duration,
    /// The named connection, filled in when the configuration is read.
    #[serde(skip)]
    pub resolved: Option<Arc<AmqpConnection>>,
}

fn default_consumer_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}

impl AmqpSourceConfig {
    /// Problems as `path.field: message`, for the configuration report.
    /// `flush_age` is the effective flush age limit for this source.
    pub fn problems(&self, path: &str, flush_age: Duration) -> Vec<String> {
        let mut problems = Vec::new();
        match (&self.connection, self.url.expose().is_empty()) {
            (Some(_), false) => {
                problems.push(format!("{path}.url: give a url or a connection, not both"))
            }
            (None, true) => problems.push(format!(
                "{path}.connection: name a [connections.NAME] or give a url"
            )),
            (None, false) => problems.extend(self.link().1.problems(path)),
            (Some(_), true) => {}
        }
        if self.queue.trim().is_empty() {
            problems.push(format!("{path}.queue: must name the queue to consume"));
        }
        match self.mode {
            AmqpMode::ArchiveQueue if self.bindings.is_empty() => problems.push(format!(
                "{path}.bindings: archive_queue mode needs at least one binding to an exchange"
            )),
            AmqpMode::Queue if !self.bindings.is_empty() => problems.push(format!(
                "{path}.bindings: queue mode consumes an existing queue; use mode = \"archive_queue\" to bind"
            )),
            _ => {}
        }
        for (index, binding) in self.bindings.iter().enumerate() {
            if binding.exchange.is_empty() {
                problems.push(format!(
                    "{path}.bindings[{index}].exchange: the default exchange cannot be bound"
                ));
            }
        }
        if self.max_payload_bytes == 0 {
            problems.push(format!("{path}.max_payload_bytes: must be at least 1"));
        }
        if flush_age * 2 > self.consumer_timeout {
            problems.push(format!(
                "{path}.consumer_timeout: the flush age ({}) must be below half the broker's consumer timeout ({})",
                humantime::format_duration(flush_age),
                humantime::format_duration(self.consumer_timeout)
            ));
        }
        problems
    }

    /// How this source connects, and how errors name it: the named
    /// connection once resolved, or the source's own URL.
    pub fn link(&self) -> (String, AmqpConnection) {
        match (&self.connection, &self.resolved) {
            (Some(name), Some(connection)) => {
                (format!("connection {name:?}"), connection.as_ref().clone())
            }
            _ => (
                format!("source {:?}", self.name),
                AmqpConnection::from_url(self.url.clone()),
            ),
        }
    }

    /// The prefetch for a flush row limit of `max_rows`: room for the batch
    /// being written and the one filling.
    pub fn effective_prefetch(&self, max_rows: usize) -> u16 {
        match self.prefetch {
            0 => u16::try_from(max_rows.max(1).saturating_mul(2)).unwrap_or(u16::MAX),
            prefetch => prefetch,
        }
    }
}
