//! Hindsight's read side: SQL over the archive (DataFusion, pruned through the
//! catalog), the HTTP API, and the output formats both share.
//!
//! It answers from the catalog and the segments; it never writes.

pub mod allowed_hosts;
pub mod error;
pub mod events;
pub mod format;
pub mod functions;
pub mod http;
pub mod openapi;
pub mod replay;
pub mod sql;
pub mod tables;

pub use error::{Error, ErrorKind, Result};
pub use sql::{QueryEngine, QueryLimits, QueryOutput};
