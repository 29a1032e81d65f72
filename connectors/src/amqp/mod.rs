//! RabbitMQ through lapin.
//!
//! - [`client`]: what the source and the publisher share: the URL (its
//!   password never printed) and how a connection is opened.
//! - [`source`]: archive queue, existing queue, or stream from an offset;
//!   [`convert`] turns lapin's values into the archive's headers table.
//! - [`publisher`]: the replay publisher (confirms, mandatory).

pub mod client;
pub mod convert;
pub mod publisher;
pub mod source;

pub use publisher::AmqpPublisher;
pub use source::{AmqpSource, AmqpSourceConfig};
