//! Kafka through rdkafka (librdkafka).
//!
//! - [`client`]: what the consumer and the producer share: the brokers and
//!   the user's librdkafka properties (`security.protocol`, `sasl.*`,
//!   `ssl.*`).
//! - [`source`]: the consumer-group source.
//! - [`publisher`]: the replay publisher (idempotent, `acks=all`), and
//!   [`sizes`]: what the target topics accept (`max.message.bytes`).

pub mod client;
pub mod publisher;
pub mod sizes;
pub mod source;

pub use publisher::KafkaPublisher;
pub use source::{KafkaSource, KafkaSourceConfig};
