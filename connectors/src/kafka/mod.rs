//! Kafka through rdkafka (librdkafka).
//!
//! - [`client`]: what the consumer and the producer share: a connection's
//!   brokers, security protocol, SASL and TLS as one librdkafka
//!   configuration, and the start-up probe; [`context`]: what every client
//!   context carries (the error callback that tells a wrong password from a
//!   network blip, and OAUTHBEARER tokens from [`oauth`]: static, or OIDC
//!   client credentials).
//! - [`source`]: the consumer-group source.
//! - [`publisher`]: the replay publisher (idempotent, `acks=all`), and
//!   [`sizes`]: what the target topics accept (`max.message.bytes`).

pub mod client;
pub mod context;
pub mod oauth;
pub mod publisher;
pub mod sizes;
pub mod source;

pub use publisher::KafkaPublisher;
pub use source::{KafkaSource, KafkaSourceConfig};
