//! End-to-end tests against real services, one binary made of modules.
//! Services are started by `scripts/services.sh` (called by `scripts/test`);
//! a test whose service is missing fails with the command to start it.

// Test helpers outside #[test] functions panic on purpose: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

mod access;
mod amqp;
mod catalog;
mod compaction;
mod crash;
mod dataset;
mod demo;
mod filters;
mod http_guard;
mod integrity;
mod kafka;
mod query;
mod replay;
mod schemas;
mod secrets;
mod secure;
mod secure_amqp;
mod store;
mod supervision;
mod tables;
mod tombstone;
mod util;
mod web;
