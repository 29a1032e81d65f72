//! The client settings both Kafka directions share.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;

/// A librdkafka configuration: `bootstrap.servers`, then the direction's
/// own `settings`, then the user's properties (`security.protocol`,
/// `sasl.*`, `ssl.*`, …), which win.
pub fn client_config(
    brokers: &str,
    settings: &[(&str, String)],
    properties: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (name, value) in settings {
        config.set(*name, value);
    }
    for (name, value) in properties {
        config.set(name, value);
    }
    config
}
