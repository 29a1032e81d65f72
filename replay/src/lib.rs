//! Replay: send a selection of archived events back onto Kafka or RabbitMQ.
//!
//! - [`selection`] says which events, in which order (per partition, by
//!   offset), as a [`selection::Plan`] over segments committed by a snapshot.
//! - [`publisher`] is the seam to the buses: the [`publisher::Publisher`]
//!   and [`publisher::Connector`] traits (implemented per bus in
//!   `hindsight-connectors`), targets and header rules.
//! - [`rate`] paces publishing; [`guard`] is the loop guard.
//! - [`service`] plans, audits and controls replays (dry-runs, pause,
//!   resume, cancel through the catalog); [`runner`] and [`window`] run
//!   one: windows of sends closed by a seal and a catalog checkpoint, and
//!   resume after a crash.
//!
//! Windows are pipelined. Window N+1 is read and sent while the broker
//! confirms window N and its checkpoint is written, in a background task.
//! Before window N+1 is sealed and N+2 opened, window N must be confirmed and
//! checkpointed, so at most two windows are ever sent but not checkpointed.
//! Checkpoints are written in window order, each only after every message of
//! its window (and so of every window before it) was confirmed or counted as
//! failed; a window whose confirms end in an error (a lost channel, a
//! timeout) is never checkpointed, and the replay fails at the checkpoint
//! before it. After a crash, at most the last two windows (2 × `--window`
//! events, or two seconds of sending) can therefore be published twice, and
//! the provenance headers (`hindsight-event-id`) make those copies
//! detectable. A pause or cancel takes effect at the next window boundary,
//! once both windows in flight are checkpointed, so the recorded progress
//! is exactly what the broker holds.
//!
//! The plan's segment groups are read and decoded one group ahead of the
//! sender, by a task feeding a channel of one, so at most two groups are in
//! memory.

pub mod guard;
pub mod publisher;
pub mod rate;
pub mod report;
pub mod runner;
pub mod selection;
pub mod service;
pub mod spec;
pub mod window;

pub use guard::LoopGuard;
pub use hindsight_query::{Error, ErrorKind, Result};
pub use publisher::{Connector, Publisher, Target};
pub use report::{DryRunReport, LiveProgress, ReplayView, SampleEvent, Totals};
pub use runner::ReplayRun;
pub use selection::Selection;
pub use service::ReplayService;
pub use spec::{OversizedPolicy, ReplayOptions, ReplaySpec, WINDOW_TIME};
