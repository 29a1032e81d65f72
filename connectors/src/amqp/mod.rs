//! RabbitMQ through lapin.
//!
//! - [`client`]: what the source and the publisher share: the URL (its
//!   password never printed) and how a connection is opened.
//! - [`config`]: the source's configuration and its checks.
//! - [`source`]: archive queue, existing queue, or stream from an offset;
//!   [`convert`] turns a delivery into an event, and lapin's values into
//!   the archive's headers table.
//! - [`publisher`]: the replay publisher (confirms, mandatory).

pub mod client;
pub mod config;
pub mod convert;
pub mod publisher;
pub mod source;

pub use config::{AmqpBinding, AmqpMode, AmqpSourceConfig, QueueType, StreamStart};
pub use convert::delivery_to_event;
pub use publisher::AmqpPublisher;
pub use source::AmqpSource;
