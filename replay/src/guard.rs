//! The loop guard: topics and exchanges this Hindsight archives, which a
//! replay must not publish into unless told to.

use std::collections::BTreeMap;

use hindsight_archive::Bus;

use hindsight_query::{Error, QueryEngine, Result};

/// Topics and exchanges that this Hindsight archives: replaying into them
/// would archive the replayed events again.
#[derive(Debug, Clone, Default)]
pub struct LoopGuard {
    entries: Vec<(Bus, GuardName, String)>,
}

#[derive(Debug, Clone)]
enum GuardName {
    Exact(String),
    Pattern(regex::Regex),
}

impl LoopGuard {
    /// `source` archives `name` (a Kafka topic, or an AMQP exchange).
    pub fn add(&mut self, bus: Bus, name: &str, source: &str) {
        self.entries
            .push((bus, GuardName::Exact(name.to_owned()), source.to_owned()));
    }

    /// `source` archives the Kafka topics matching `pattern` (librdkafka's
    /// `^pattern` subscription).
    pub fn add_pattern(&mut self, pattern: &str, source: &str) -> Result<()> {
        let regex = regex::Regex::new(&format!("^(?:{pattern})")).map_err(|error| {
            Error::invalid_input(format!("invalid topic pattern {pattern:?}: {error}"))
        })?;
        self.entries
            .push((Bus::Kafka, GuardName::Pattern(regex), source.to_owned()));
        Ok(())
    }

    /// Adds every topic the catalog holds committed events of, with the bus
    /// of its source: whatever was archived may be archived again.
    pub async fn add_archived(&mut self, engine: &QueryEngine) -> Result<()> {
        let buses: BTreeMap<String, Bus> = engine
            .catalog()
            .sources()
            .await?
            .into_iter()
            .map(|s| (s.name, s.bus))
            .collect();
        for stats in engine.catalog().topic_stats().await? {
            if let Some(bus) = buses.get(&stats.source) {
                self.add(*bus, &stats.topic, &stats.source);
            }
        }
        Ok(())
    }

    /// Refuses `destination` on `bus` when a source archives it.
    pub fn check(&self, bus: Bus, destination: &str) -> Result<()> {
        for (guarded_bus, name, source) in &self.entries {
            let hit = *guarded_bus == bus
                && match name {
                    GuardName::Exact(exact) => exact == destination,
                    GuardName::Pattern(regex) => regex.is_match(destination),
                };
            if hit {
                let what = match bus {
                    Bus::Kafka => "topic",
                    Bus::Amqp => "exchange",
                };
                return Err(Error::invalid_input(format!(
                    "refusing to replay into {bus} {what} {destination:?}: source {source:?} \
                     archives it, so the replayed events would be archived again; \
                     pass --allow-loop (\"allow_loop\": true) if that is what you want"
                )));
            }
        }
        Ok(())
    }
}
