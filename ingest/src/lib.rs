//! Hindsight's ingest side: bus sources and the pipeline that archives them.
//!
//! See [`source`] for the contract every source follows.

pub mod pipeline;
pub mod source;

pub use pipeline::{run_pipeline, PipelineSummary};
