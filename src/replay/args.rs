//! `hindsight replay run|dry-run` flags, and the replay request they make.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::Args;
use hindsight_archive::{Bus, SecretUrl};
use hindsight_connectors::Connections;
use hindsight_query::filter::FilterSelection;
use hindsight_replay::publisher::{AmqpTarget, KafkaTarget, Partitioning, Target};
use hindsight_replay::{OversizedPolicy, ReplayOptions, ReplaySpec, Selection};

#[derive(Debug, Args)]
pub struct RunArgs {
    // Selection.
    /// Read-only SQL returning an event_id column (instead of the filters below).
    #[arg(long)]
    sql: Option<String>,
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    topic: Option<String>,
    #[arg(long)]
    partition: Option<i32>,
    /// Events at or after this time (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Events before this time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    key: Option<String>,
    /// NAME=VALUE: a header that must be present (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Text the payload must contain.
    #[arg(long)]
    contains: Option<String>,
    /// Only events with this correlation id.
    #[arg(long)]
    correlation_id: Option<String>,
    /// PATH=VALUE: a JSON field of the payload (repeatable).
    #[arg(long = "json-field")]
    json_fields: Vec<String>,

    // Target.
    /// A named connection (`[connections.NAME]` of the configuration):
    /// replay to its cluster, with its TLS and credentials.
    #[arg(long = "target", value_name = "CONNECTION", conflicts_with_all = ["kafka", "amqp"])]
    connection: Option<String>,
    /// Kafka bootstrap servers: replay to Kafka (ad hoc, plaintext unless
    /// --kafka-property says otherwise).
    #[arg(long, conflicts_with = "amqp")]
    kafka: Option<String>,
    /// RabbitMQ URL: replay to RabbitMQ (ad hoc).
    #[arg(long)]
    amqp: Option<String>,
    /// Kafka: send every event to this topic.
    #[arg(long)]
    to_topic: Option<String>,
    /// Kafka: FROM=TO topic mapping (repeatable).
    #[arg(long = "map-topic")]
    map_topic: Vec<String>,
    /// Kafka: preserve (source partition mod count, the default), same, or key.
    #[arg(long, default_value = "preserve")]
    partitioning: String,
    /// Kafka: keep the archived event time as the record timestamp.
    #[arg(long)]
    keep_timestamp: bool,
    /// Kafka: NAME=VALUE librdkafka producer property (repeatable).
    #[arg(long = "kafka-property")]
    kafka_properties: Vec<String>,
    /// RabbitMQ: send every event to this exchange.
    #[arg(long)]
    to_exchange: Option<String>,
    /// RabbitMQ: FROM=TO exchange mapping (repeatable).
    #[arg(long = "map-exchange")]
    map_exchange: Vec<String>,
    /// RabbitMQ: override every routing key.
    #[arg(long)]
    routing_key: Option<String>,

    // Options.
    /// Events per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Payload bytes per second.
    #[arg(long)]
    bytes_rate: Option<f64>,
    /// Reproduce the original gaps between events, N times as fast.
    #[arg(long)]
    pace: Option<f64>,
    /// Do not add the hindsight-* provenance headers.
    #[arg(long)]
    no_provenance: bool,
    /// Remove headers of this name; a trailing * matches a prefix (repeatable).
    #[arg(long = "strip-header")]
    strip_headers: Vec<String>,
    /// NAME=VALUE: set a header (repeatable).
    #[arg(long = "set-header")]
    set_headers: Vec<String>,
    /// Allow replaying into topics or exchanges that this Hindsight archives.
    #[arg(long)]
    allow_loop: bool,
    /// Keep redelivered copies of RabbitMQ messages.
    #[arg(long)]
    no_dedup: bool,
    /// Events per confirmed window (checkpoint interval).
    #[arg(long, default_value_t = 10_000)]
    window: usize,
    /// Events a dry-run shows.
    #[arg(long, default_value_t = 5)]
    sample: usize,
    /// An event larger than its target accepts: stop before it, or skip it
    /// (listed in the record).
    #[arg(long, default_value = "stop")]
    oversized: String,
    /// Leave out segments that cannot be read (listed in the record)
    /// instead of failing.
    #[arg(long)]
    skip_damaged: bool,
    /// Print the result as JSON on stdout (status lines go to stderr).
    #[arg(long)]
    pub(super) json: bool,
}

pub(super) fn pairs(flag: &str, values: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    values
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((from, to)) if !from.is_empty() && !to.is_empty() => {
                Ok((from.to_owned(), to.to_owned()))
            }
            _ => bail!("--{flag} {pair:?} must be FROM=TO"),
        })
        .collect()
}

impl RunArgs {
    /// The replay asked for; `connections` are the configured ones, which
    /// `--target` names.
    pub(super) fn spec(&self, connections: &Connections) -> anyhow::Result<ReplaySpec> {
        let selection = match &self.sql {
            Some(sql) => Selection::Sql { sql: sql.clone() },
            None => Selection::Filter(FilterSelection {
                source: self.source.clone(),
                topic: self.topic.clone(),
                topics: Vec::new(),
                partition: self.partition,
                from: self.from.clone(),
                to: self.to.clone(),
                key: self.key.clone(),
                headers: self.headers.clone(),
                contains: self.contains.clone(),
                correlation_id: self.correlation_id.clone(),
                json: self.json_fields.clone(),
            }),
        };
        let bus = match (&self.connection, &self.kafka, &self.amqp) {
            (Some(name), _, _) => match connections.get(name) {
                Some(connection) => Some(connection.bus()),
                None => bail!(
                    "--target {name:?}: no such connection; configured: {}",
                    if connections.is_empty() {
                        "none (add a [connections.NAME] section)".to_owned()
                    } else {
                        connections.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            },
            (None, Some(_), None) => Some(Bus::Kafka),
            (None, None, Some(_)) => Some(Bus::Amqp),
            _ => None,
        };
        let target = match bus {
            Some(Bus::Kafka) => Target::Kafka(KafkaTarget {
                connection: self.connection.clone(),
                brokers: self.kafka.clone().unwrap_or_default(),
                topic: self.to_topic.clone(),
                topic_map: pairs("map-topic", &self.map_topic)?,
                partitioning: match self.partitioning.as_str() {
                    "preserve" => Partitioning::Preserve,
                    "same" => Partitioning::Same,
                    "key" => Partitioning::Key,
                    other => bail!("--partitioning {other:?}: use preserve, same or key"),
                },
                keep_timestamp: self.keep_timestamp,
                client: pairs("kafka-property", &self.kafka_properties)?
                    .into_iter()
                    .collect(),
            }),
            Some(Bus::Amqp) => Target::Amqp(AmqpTarget {
                connection: self.connection.clone(),
                url: SecretUrl::new(self.amqp.clone().unwrap_or_default()),
                exchange: self.to_exchange.clone(),
                exchange_map: pairs("map-exchange", &self.map_exchange)?,
                routing_key: self.routing_key.clone(),
            }),
            None => bail!("give a target: --target CONNECTION, --kafka BROKERS or --amqp URL"),
        };
        Ok(ReplaySpec {
            selection,
            target,
            options: ReplayOptions {
                rate: self.rate,
                bytes_rate: self.bytes_rate,
                pace: self.pace,
                provenance: !self.no_provenance,
                strip_headers: self.strip_headers.clone(),
                set_headers: self.set_headers.clone(),
                allow_loop: self.allow_loop,
                dedup: !self.no_dedup,
                window: self.window,
                sample: self.sample,
                oversized: match self.oversized.as_str() {
                    "stop" => OversizedPolicy::Stop,
                    "skip" => OversizedPolicy::Skip,
                    other => bail!("--oversized {other:?}: use stop or skip"),
                },
                skip_damaged: self.skip_damaged,
            },
        })
    }
}
