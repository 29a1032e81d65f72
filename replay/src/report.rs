//! What replays answer: dry-run reports, records as the API shows them,
//! live progress.

use std::collections::BTreeMap;

use hindsight_archive::event::rfc3339;
use hindsight_archive::replays::{
    ReplayDetails, ReplayProgress, ReplayRecord, ReplayRequest, ReplayStatus, SkippedEvent,
    SkippedSegment,
};
use hindsight_archive::Event;
use serde::Serialize;

use hindsight_query::events::EventView;

use crate::publisher::{SizeLimit, Target};

/// Events, bytes and the first and last event time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub events: i64,
    pub bytes: i64,
    pub first_event_time: Option<String>,
    pub last_event_time: Option<String>,
    #[serde(skip)]
    span: Option<(i64, i64)>,
}

impl Totals {
    pub(crate) fn add(&mut self, event: &Event) {
        self.events += 1;
        self.bytes += event.payload_bytes().len() as i64;
        let (low, high) = self.span.unwrap_or((event.event_time, event.event_time));
        let span = (low.min(event.event_time), high.max(event.event_time));
        self.span = Some(span);
        self.first_event_time = rfc3339(span.0);
        self.last_event_time = rfc3339(span.1);
    }
}

/// One sampled event and where it would go.
#[derive(Debug, Serialize)]
pub struct SampleEvent {
    pub destination: Option<String>,
    pub event: EventView,
}

/// What a dry-run found. Nothing was published.
#[derive(Debug, Serialize)]
pub struct DryRunReport {
    pub id: String,
    pub totals: Totals,
    /// Per target topic or exchange.
    pub by_target: BTreeMap<String, Totals>,
    pub duplicates_skipped: i64,
    pub segments: usize,
    /// Why a run would be refused or stop (loop guard, events without a
    /// target, events too large for their target).
    pub problems: Vec<String>,
    /// Events larger than their target accepts (the first 1000), and how
    /// many there are. Not counted in the totals: a run stops before the
    /// first, or skips them all.
    pub oversized: Vec<SkippedEvent>,
    pub oversized_count: i64,
    /// What each Kafka target topic accepts, and who said so.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub size_limits: BTreeMap<String, SizeLimit>,
    /// Unreadable segments left out (`skip_damaged`).
    pub damaged_segments: Vec<SkippedSegment>,
    pub sample: Vec<SampleEvent>,
}

/// A replay as the API shows it: the audit record, the target without secrets.
#[derive(Debug, Serialize)]
pub struct ReplayView {
    pub id: String,
    pub status: ReplayStatus,
    pub requested: ReplayRequest,
    pub dry_run: bool,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub finished_at: Option<String>,
    pub snapshot_at: Option<String>,
    pub selection: serde_json::Value,
    pub target: serde_json::Value,
    pub options: serde_json::Value,
    pub planned: i64,
    pub progress: ReplayProgress,
    /// Where a resume starts, and what was skipped.
    pub details: ReplayDetails,
    pub error: Option<String>,
}

impl From<ReplayRecord> for ReplayView {
    fn from(record: ReplayRecord) -> Self {
        let json = |text: &str| serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
        let target = serde_json::from_str::<Target>(&record.target)
            .ok()
            .and_then(|target| serde_json::to_value(target).ok())
            .unwrap_or(serde_json::Value::Null);
        ReplayView {
            id: record.id,
            status: record.status,
            requested: record.requested,
            dry_run: record.dry_run,
            created_at: rfc3339(record.created_at),
            updated_at: rfc3339(record.updated_at),
            finished_at: record.finished_at.and_then(rfc3339),
            snapshot_at: rfc3339(record.snapshot_at),
            selection: json(&record.selection),
            target,
            options: json(&record.options),
            planned: record.planned,
            progress: record.progress,
            details: record.details,
            error: record.error,
        }
    }
}

/// Live progress of a running replay, for progress bars.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveProgress {
    pub planned: i64,
    pub progress: ReplayProgress,
    pub status: Option<ReplayStatus>,
}
