//! What ties the buses to the rest: a configured source of any bus this
//! build has, and the connector that opens replay publishers.

use std::sync::Arc;

use async_trait::async_trait;
use hindsight_archive::catalog::Catalog;
use hindsight_archive::Bus;
use hindsight_ingest::source::{Source, SourceConfig};
use hindsight_ingest::FlushPolicy;
use hindsight_replay::publisher::{
    ConnectionInfo, Connector, HeaderRules, Publisher, SizeLimits, Target,
};
use serde::{Deserialize, Serialize};

#[allow(unused_imports)]
use crate::connection::{lookup, Connection, Connections, PROBE_TIMEOUT};

/// One `[[sources]]` entry; `type` names the bus. A bus left out of the
/// build is refused when the configuration is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceSection {
    #[cfg(feature = "kafka")]
    Kafka(crate::kafka::KafkaSourceConfig),
    #[cfg(feature = "amqp")]
    Amqp(crate::amqp::AmqpSourceConfig),
}

impl SourceSection {
    /// The source's configuration behind the bus-neutral trait.
    pub fn config(&self) -> &dyn SourceConfig {
        match self {
            #[cfg(feature = "kafka")]
            SourceSection::Kafka(kafka) => kafka,
            #[cfg(feature = "amqp")]
            SourceSection::Amqp(amqp) => amqp,
        }
    }

    /// Fills in the named connection the source refers to; a problem when
    /// there is no such connection, or it is of another bus.
    pub fn resolve(&mut self, path: &str, connections: &Connections) -> Vec<String> {
        let mut problems = Vec::new();
        match self {
            #[cfg(feature = "kafka")]
            SourceSection::Kafka(kafka) => {
                if let Some(name) = &kafka.connection {
                    match lookup(connections, name, Bus::Kafka) {
                        Ok(Connection::Kafka(connection)) => {
                            kafka.resolved = Some(Arc::new(connection.clone()));
                        }
                        #[allow(unreachable_patterns)]
                        Ok(_) => {}
                        Err(error) => {
                            problems.push(format!("{path}.connection: {}", error.message()))
                        }
                    }
                }
            }
            #[cfg(feature = "amqp")]
            SourceSection::Amqp(amqp) => {
                if let Some(name) = &amqp.connection {
                    match lookup(connections, name, Bus::Amqp) {
                        Ok(Connection::Amqp(connection)) => {
                            amqp.resolved = Some(Arc::new(connection.clone()));
                        }
                        #[allow(unreachable_patterns)]
                        Ok(_) => {}
                        Err(error) => {
                            problems.push(format!("{path}.connection: {}", error.message()))
                        }
                    }
                }
            }
        }
        problems
    }

    /// The source's own address (`brokers`, `url`) as a connection, when it
    /// names no `[connections.NAME]`.
    pub fn own_connection(&self) -> Option<Connection> {
        match self {
            #[cfg(feature = "kafka")]
            SourceSection::Kafka(kafka) => kafka
                .connection
                .is_none()
                .then(|| Connection::Kafka(kafka.link().1)),
            #[cfg(feature = "amqp")]
            SourceSection::Amqp(amqp) => amqp
                .connection
                .is_none()
                .then(|| Connection::Amqp(amqp.link().1)),
        }
    }

    /// Problems as `path.field: message`; `flush` is the `[flush]` section's
    /// policy, which the source's own limits override.
    pub fn problems(&self, path: &str, flush: FlushPolicy) -> Vec<String> {
        let _ = flush;
        match self {
            #[cfg(feature = "kafka")]
            SourceSection::Kafka(kafka) => kafka.problems(path),
            #[cfg(feature = "amqp")]
            SourceSection::Amqp(amqp) => amqp.problems(path, amqp.flush.apply(flush).max_age),
        }
    }
}

#[cfg(feature = "kafka")]
#[async_trait]
impl SourceConfig for crate::kafka::KafkaSourceConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn bus(&self) -> Bus {
        Bus::Kafka
    }

    fn flush_policy(&self, defaults: FlushPolicy) -> FlushPolicy {
        self.flush.apply(defaults)
    }

    fn archived_names(&self) -> (Vec<String>, Option<String>) {
        (self.topics.clone(), self.topic_pattern.clone())
    }

    async fn open(
        &self,
        catalog: Catalog,
        _policy: FlushPolicy,
    ) -> hindsight_archive::Result<Box<dyn Source>> {
        // A wrong password or certificate fails here, in one line; a broker
        // that does not answer yet is waited for, as librdkafka does.
        let (what, link) = self.link();
        let probed = tokio::task::spawn_blocking(move || link.probe(&what, PROBE_TIMEOUT))
            .await
            .map_err(|error| {
                hindsight_archive::Error::internal(format!("the probe panicked: {error}"))
            })?;
        match probed {
            Ok(_) => {}
            Err(error) if error.kind() == hindsight_archive::ErrorKind::Retryable => {
                tracing::warn!(source = %self.name, error = %error.message(), "kafka brokers not reachable yet; the consumer keeps trying");
            }
            Err(error) => return Err(error),
        }
        Ok(Box::new(crate::kafka::KafkaSource::start(
            self.clone(),
            catalog,
        )?))
    }
}

#[cfg(feature = "amqp")]
#[async_trait]
impl SourceConfig for crate::amqp::AmqpSourceConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn bus(&self) -> Bus {
        Bus::Amqp
    }

    fn flush_policy(&self, defaults: FlushPolicy) -> FlushPolicy {
        self.flush.apply(defaults)
    }

    fn archived_names(&self) -> (Vec<String>, Option<String>) {
        let exchanges = self
            .bindings
            .iter()
            .map(|binding| binding.exchange.clone())
            .collect();
        (exchanges, None)
    }

    async fn open(
        &self,
        catalog: Catalog,
        policy: FlushPolicy,
    ) -> hindsight_archive::Result<Box<dyn Source>> {
        Ok(Box::new(
            crate::amqp::AmqpSource::start(self.clone(), catalog, policy.max_rows).await?,
        ))
    }
}

/// Opens replay publishers onto the buses this build has, through the
/// named connections or (ad hoc) a target's own address.
#[derive(Debug, Clone, Default)]
pub struct BusConnector {
    connections: Arc<Connections>,
}

impl BusConnector {
    pub fn new(connections: Connections) -> Self {
        BusConnector {
            connections: Arc::new(connections),
        }
    }

    /// The connection a Kafka target goes through, and its name for errors.
    #[cfg(feature = "kafka")]
    fn kafka_link(
        &self,
        target: &hindsight_replay::publisher::KafkaTarget,
    ) -> hindsight_replay::Result<(String, crate::kafka::client::KafkaConnection)> {
        match &target.connection {
            Some(name) => match lookup(&self.connections, name, Bus::Kafka).map_err(to_replay)? {
                Connection::Kafka(connection) => {
                    let mut connection = connection.clone();
                    for (key, value) in target.client.iter() {
                        connection.client.insert(key.clone(), value.clone());
                    }
                    Ok((format!("connection {name:?}"), connection))
                }
                #[allow(unreachable_patterns)]
                _ => Err(not_built(Bus::Kafka)),
            },
            None => Ok((
                "the replay target".to_owned(),
                crate::kafka::client::KafkaConnection::inline(
                    target
                        .brokers
                        .split(',')
                        .map(|broker| broker.trim().to_owned())
                        .filter(|broker| !broker.is_empty())
                        .collect(),
                    target.client.clone(),
                ),
            )),
        }
    }

    /// The connection an AMQP target goes through, and its name for errors.
    #[cfg(feature = "amqp")]
    fn amqp_link(
        &self,
        target: &hindsight_replay::publisher::AmqpTarget,
    ) -> hindsight_replay::Result<(String, crate::amqp::client::AmqpConnection)> {
        match &target.connection {
            Some(name) => match lookup(&self.connections, name, Bus::Amqp).map_err(to_replay)? {
                Connection::Amqp(connection) => {
                    Ok((format!("connection {name:?}"), connection.clone()))
                }
                #[allow(unreachable_patterns)]
                _ => Err(not_built(Bus::Amqp)),
            },
            None => Ok((
                "the replay target".to_owned(),
                crate::amqp::client::AmqpConnection::from_url(target.url.clone()),
            )),
        }
    }
}

/// An archive error as the replay crate's (the kinds are the same).
#[allow(dead_code)]
fn to_replay(error: hindsight_archive::Error) -> hindsight_replay::Error {
    hindsight_replay::Error::from(error)
}

/// The error for a bus this build was made without.
#[allow(dead_code)]
fn not_built(bus: Bus) -> hindsight_replay::Error {
    hindsight_replay::Error::invalid_input(format!(
        "this build of hindsight has no {bus} support: build it with the cargo feature {bus}"
    ))
}

#[async_trait]
impl Connector for BusConnector {
    async fn publisher(
        &self,
        target: &Target,
        rules: HeaderRules,
        destinations: &[String],
    ) -> hindsight_replay::Result<Box<dyn Publisher>> {
        match target {
            #[cfg(feature = "kafka")]
            Target::Kafka(kafka) => {
                let (what, link) = self.kafka_link(kafka)?;
                Ok(Box::new(
                    crate::kafka::KafkaPublisher::connect(&what, &link, kafka, rules, destinations)
                        .await?,
                ))
            }
            #[cfg(feature = "amqp")]
            Target::Amqp(amqp) => {
                let (what, link) = self.amqp_link(amqp)?;
                Ok(Box::new(
                    crate::amqp::AmqpPublisher::connect(&what, &link, amqp, rules).await?,
                ))
            }
            #[allow(unreachable_patterns)]
            other => {
                let _ = (rules, destinations);
                Err(not_built(other.bus()))
            }
        }
    }

    async fn size_limits(
        &self,
        target: &Target,
        rules: HeaderRules,
        destinations: &[String],
    ) -> hindsight_replay::Result<Option<Box<dyn SizeLimits>>> {
        match target {
            #[cfg(feature = "kafka")]
            Target::Kafka(kafka) => {
                let (what, link) = self.kafka_link(kafka)?;
                Ok(Some(Box::new(
                    crate::kafka::sizes::TopicSizes::ask(&what, &link, rules, destinations).await?,
                )))
            }
            #[cfg(not(feature = "kafka"))]
            Target::Kafka(_) => {
                let _ = (rules, destinations);
                Err(not_built(Bus::Kafka))
            }
            Target::Amqp(_) => Ok(None),
        }
    }

    fn connections(&self) -> Vec<ConnectionInfo> {
        self.connections
            .iter()
            .map(|(name, connection)| connection.info(name))
            .collect()
    }
}
