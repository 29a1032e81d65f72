//! Hindsight's buses. Each is a module and a cargo feature (`kafka`,
//! `amqp`, both on by default), with the client settings its two directions
//! share, its source (ingest) and its publisher (replay):
//!
//! - [`kafka`]: rdkafka; a consumer-group source and an idempotent producer.
//! - [`amqp`]: lapin; archive-queue, queue and stream sources, and a
//!   publisher with confirms.
//!
//! [`SourceSection`] is a configured source of any bus built in, and
//! [`BusConnector`] opens replay publishers onto whichever buses this build has.

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "kafka")]
pub mod kafka;
mod section;

pub use section::{BusConnector, SourceSection};
