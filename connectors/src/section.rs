//! What ties the buses to the rest: a configured source of any bus this
//! build has, and the connector that opens replay publishers.

use async_trait::async_trait;
use hindsight_archive::catalog::Catalog;
use hindsight_archive::Bus;
use hindsight_ingest::source::{Source, SourceConfig};
use hindsight_ingest::FlushPolicy;
use hindsight_replay::publisher::{Connector, HeaderRules, Publisher, SizeLimits, Target};
use serde::{Deserialize, Serialize};

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

/// Opens replay publishers onto the buses this build has.
#[derive(Debug, Clone, Copy, Default)]
pub struct BusConnector;

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
            Target::Kafka(kafka) => Ok(Box::new(
                crate::kafka::KafkaPublisher::connect(kafka, rules, destinations).await?,
            )),
            #[cfg(feature = "amqp")]
            Target::Amqp(amqp) => Ok(Box::new(
                crate::amqp::AmqpPublisher::connect(amqp, rules).await?,
            )),
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
            Target::Kafka(kafka) => Ok(Some(Box::new(
                crate::kafka::sizes::TopicSizes::ask(kafka, rules, destinations).await?,
            ))),
            #[cfg(not(feature = "kafka"))]
            Target::Kafka(_) => {
                let _ = (rules, destinations);
                Err(not_built(Bus::Kafka))
            }
            Target::Amqp(_) => Ok(None),
        }
    }
}
