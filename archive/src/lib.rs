//! Hindsight's shared core: the event model, the Arrow schema, the storage
//! layout, the segment writer and reader, and the catalog.
//!
//! Only this crate knows how objects are named and laid out ([`layout`]).

pub mod access;
pub mod amqp_table;
pub mod audit;
pub mod catalog;
pub mod error;
pub mod event;
pub mod layout;
pub mod lease;
pub mod maintenance;
pub mod metrics;
pub mod page_checksum;
pub mod payload_schemas;
pub mod recovery;
pub mod replays;
pub mod schema;
pub mod secret;
pub mod segment;
pub mod store;
pub mod tables;
pub mod writer;

pub use error::{Error, ErrorKind, Result};
pub use event::{Bus, Event, Header};
pub use secret::{Secret, SecretUrl};
