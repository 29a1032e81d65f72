//! Named connections: `[connections.NAME]`, one per cluster, with the bus,
//! the addresses, TLS and SASL. Sources and replay targets refer to them by
//! name, so a record or an API request never holds an address's
//! credentials.

use std::collections::BTreeMap;
use std::time::Duration;

use hindsight_archive::{Bus, Error, ErrorKind, Result};
use hindsight_replay::publisher::ConnectionInfo;
use serde::{Deserialize, Serialize};

/// One `[connections.NAME]`; `bus` names the bus. A bus left out of the
/// build is refused when the configuration is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "bus", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // a handful per configuration, read once
pub enum Connection {
    #[cfg(feature = "kafka")]
    Kafka(crate::kafka::client::KafkaConnection),
    #[cfg(feature = "amqp")]
    Amqp(crate::amqp::client::AmqpConnection),
}

/// Every named connection, by name.
pub type Connections = BTreeMap<String, Connection>;

/// How long a start-up check waits for a broker that does not answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

impl Connection {
    pub fn bus(&self) -> Bus {
        match self {
            #[cfg(feature = "kafka")]
            Connection::Kafka(_) => Bus::Kafka,
            #[cfg(feature = "amqp")]
            Connection::Amqp(_) => Bus::Amqp,
        }
    }

    pub fn problems(&self, path: &str) -> Vec<String> {
        match self {
            #[cfg(feature = "kafka")]
            Connection::Kafka(kafka) => kafka.problems(path),
            #[cfg(feature = "amqp")]
            Connection::Amqp(amqp) => amqp.problems(path),
        }
    }

    /// Reads secrets given as files (`password_file`, `key_password_file`,
    /// …) into the connection.
    pub fn load_secrets(&mut self, path: &str) -> Vec<String> {
        match self {
            #[cfg(feature = "kafka")]
            Connection::Kafka(kafka) => kafka.load_secrets(path),
            #[cfg(feature = "amqp")]
            Connection::Amqp(amqp) => amqp.load_secrets(path),
        }
    }

    pub fn info(&self, name: &str) -> ConnectionInfo {
        let (addresses, security) = match self {
            #[cfg(feature = "kafka")]
            Connection::Kafka(kafka) => (kafka.addresses(), kafka.security()),
            #[cfg(feature = "amqp")]
            Connection::Amqp(amqp) => (amqp.address(), amqp.security().to_owned()),
        };
        ConnectionInfo {
            name: name.to_owned(),
            bus: self.bus(),
            addresses,
            security,
        }
    }

    /// Connects once, as a start-up check: `Ok` with what was seen, or the
    /// one-line error (see [`ErrorKind::InvalidInput`] for failures
    /// retrying cannot fix, [`ErrorKind::Retryable`] for a broker that does
    /// not answer).
    /// `what` names it in errors: `connection "prod-kafka"`, `source "orders"`.
    pub async fn probe(&self, what: &str) -> Result<String> {
        let what = what.to_owned();
        match self {
            #[cfg(feature = "kafka")]
            Connection::Kafka(kafka) => {
                let kafka = kafka.clone();
                let brokers =
                    tokio::task::spawn_blocking(move || kafka.probe(&what, PROBE_TIMEOUT))
                        .await
                        .map_err(|error| {
                            Error::internal(format!("the probe panicked: {error}"))
                        })??;
                Ok(format!("{brokers} broker(s) in the cluster metadata"))
            }
            #[cfg(feature = "amqp")]
            Connection::Amqp(amqp) => {
                let connection = tokio::time::timeout(
                    PROBE_TIMEOUT,
                    amqp.connect(&what, "hindsight check-config"),
                )
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorKind::Retryable,
                        format!("{what} (amqp, {}): no answer within 15 s", amqp.address()),
                    )
                })??;
                let user = connection.status().username();
                let _ = connection.close(200, "check-config".into()).await;
                Ok(format!("logged in as {user}"))
            }
        }
    }
}

/// The named connection `name` for a target or source of `bus`.
pub fn lookup<'a>(connections: &'a Connections, name: &str, bus: Bus) -> Result<&'a Connection> {
    let connection = connections.get(name).ok_or_else(|| {
        let known: Vec<&str> = connections.keys().map(String::as_str).collect();
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "no connection named {name:?}; configured: {}",
                if known.is_empty() {
                    "none (add a [connections.NAME] section)".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        )
    })?;
    if connection.bus() != bus {
        return Err(Error::invalid_input(format!(
            "connection {name:?} is a {} connection, not {bus}",
            connection.bus()
        )));
    }
    Ok(connection)
}
