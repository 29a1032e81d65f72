//! Hindsight's buses. Each is a module and a cargo feature (`kafka`,
//! `amqp`, both on by default), with the client settings its two directions
//! share, its source (ingest) and its publisher (replay):
//!
//! - [`kafka`]: rdkafka; a consumer-group source and an idempotent producer.
//! - [`amqp`]: lapin; archive-queue, queue and stream sources, and a
//!   publisher with confirms.
//!
//! [`Connection`] is a named connection (`[connections.NAME]`): addresses,
//! TLS ([`tls`]) and SASL, shared by the sources and the replay targets
//! that name it.
//!
//! [`SourceSection`] is a configured source of any bus built in, and
//! [`BusConnector`] opens replay publishers onto whichever buses this build has.

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod connection;
#[cfg(feature = "kafka")]
pub mod kafka;
mod section;
pub mod tls;

pub use connection::{Connection, Connections};
pub use section::{BusConnector, SourceSection};
