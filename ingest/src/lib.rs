//! Hindsight's ingest side: the source contract, batching, and the pipeline
//! that archives a source exactly once.
//!
//! See [`source`] for the contract every source follows, and [`pipeline`]
//! for the protocol (batch, write, commit by compare-and-set, acknowledge).
//! The bus sources themselves are in `hindsight-connectors`.

pub mod batch;
pub mod pipeline;
pub mod source;

pub use batch::{Batcher, FlushPolicy};
pub use pipeline::{run_pipeline, run_pipeline_observed, EventObserver, PipelineSummary};
pub use source::{Source, SourceConfig};
