//! Hindsight's read side: SQL over the archive (DataFusion, pruned through
//! the catalog), event search and counts, the one event filter, and the
//! output formats the CLI and the server share.
//!
//! It reads the catalog and the segments. It writes nothing, and has no
//! HTTP server and no broker client (those are `hindsight-server` and
//! `hindsight-connectors`).

pub mod decode;
pub mod error;
pub mod events;
pub mod filter;
pub mod format;
pub mod functions;
pub mod pruning;
pub mod redact;
pub mod segment_reader;
pub mod sql;
pub mod tables;
pub mod typed;
pub mod view;

pub use error::{Error, ErrorKind, Result};
pub use filter::{EventFilter, FilterSelection};
pub use sql::{QueryEngine, QueryLimits, QueryOutput};
