//! Hindsight's read side: the HTTP API over the archive.
//!
//! The API answers from the catalog and the segments; it never writes.

pub mod error;
pub mod http;
