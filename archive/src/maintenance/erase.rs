//! Erasure: rewriting the segments that hold matching events without them,
//! with the same proof and swap as compaction, and an audit row that says
//! who asked, the filter, how many events and which segments, never what
//! was erased.

use std::sync::Arc;

use super::{EventPredicate, Maintenance, MaintenanceRun};
use crate::catalog::{SegmentFilter, SegmentRecord};
use crate::error::{Error, ErrorKind, Result};
use crate::event::now_micros;
use crate::segment::decode_segment;

/// Which events an erasure removes.
#[derive(Clone)]
pub struct ErasureRequest {
    pub source: String,
    pub topic: Option<String>,
    /// The filter as the requester wrote it (recorded in the audit row).
    pub description: String,
    /// True for the events to erase.
    pub matches: EventPredicate,
}

impl std::fmt::Debug for ErasureRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ErasureRequest")
            .field("source", &self.source)
            .field("topic", &self.topic)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// What an erasure removed (or, dry, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ErasureReport {
    pub run_id: String,
    pub dry_run: bool,
    pub segments_scanned: u64,
    pub events: u64,
    /// The keys of the segments that held matching events.
    pub segments: Vec<String>,
}

impl Maintenance {
    /// Finds the segments holding matching events, and (unless dry) rewrites
    /// each without them. The run is recorded whatever happens.
    pub async fn erase(
        &self,
        request: &ErasureRequest,
        dry_run: bool,
        actor: Option<String>,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<ErasureReport> {
        let filter = SegmentFilter {
            source: Some(request.source.clone()),
            topic: request.topic.clone(),
            ..SegmentFilter::default()
        };
        let scope = serde_json::json!({
            "source": request.source,
            "topic": request.topic,
            "filter": request.description,
        })
        .to_string();
        let mut run = MaintenanceRun::start("erasure", dry_run, actor, scope);
        self.catalog.record_run(&run).await?;
        let result = self
            .erase_recorded(request, dry_run, &filter, &run.id, progress)
            .await;
        run.finished_at = Some(now_micros());
        match &result {
            Ok((report, bytes_in, bytes_out)) => {
                run.status = "succeeded".to_owned();
                run.segments_in = report.segments.len() as i64;
                run.segments_out = run.segments_in;
                run.rows_in = report.events as i64;
                run.bytes_in = *bytes_in as i64;
                run.bytes_out = *bytes_out as i64;
                run.details = Some(
                    serde_json::json!({
                        "segments_scanned": report.segments_scanned,
                        "events": report.events,
                        "segments": report.segments,
                    })
                    .to_string(),
                );
            }
            Err(error) => {
                run.status = "failed".to_owned();
                run.error = Some(error.full_message());
            }
        }
        self.catalog.record_run(&run).await?;
        result.map(|(report, _, _)| report)
    }

    async fn erase_recorded(
        &self,
        request: &ErasureRequest,
        dry_run: bool,
        filter: &SegmentFilter,
        run_id: &str,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<(ErasureReport, u64, u64)> {
        let segments = self.catalog.segments(filter).await?;
        let mut report = ErasureReport {
            run_id: run_id.to_owned(),
            dry_run,
            segments_scanned: segments.len() as u64,
            ..ErasureReport::default()
        };
        let mut affected: Vec<(SegmentRecord, u64)> = Vec::new();
        for (index, record) in segments.iter().enumerate() {
            let matching = self.count_matching(record, &request.matches).await?;
            if matching > 0 {
                affected.push((record.clone(), matching));
            }
            progress(index as u64 + 1, segments.len() as u64);
        }
        report.events = affected.iter().map(|(_, n)| n).sum();
        report.segments = affected
            .iter()
            .map(|(r, _)| r.segment.uri.clone())
            .collect();
        let (mut bytes_in, mut bytes_out) = (0, 0);
        if dry_run {
            return Ok((report, bytes_in, bytes_out));
        }
        for (record, matching) in &affected {
            let rewrite = self
                .rewrite_without(run_id, record, Arc::clone(&request.matches))
                .await?;
            let erased: usize = rewrite.placements.iter().map(|p| p.erased_rows.len()).sum();
            if erased as u64 != *matching {
                // Cannot happen unless the segment changed between the scan
                // and the rewrite; the rewrite is proven either way.
                tracing::warn!(segment = %record.segment.uri, erased, matching, "the rewrite erased another number of events than the scan found");
            }
            bytes_in += rewrite.bytes_in;
            bytes_out += rewrite.output.as_ref().map_or(0, |o| o.0.bytes as u64);
        }
        Ok((report, bytes_in, bytes_out))
    }

    async fn count_matching(
        &self,
        record: &SegmentRecord,
        matches: &EventPredicate,
    ) -> Result<u64> {
        let bytes = self.store.get_key(&record.segment.uri).await?;
        let matches = Arc::clone(matches);
        let uri = record.segment.uri.clone();
        tokio::task::spawn_blocking(move || {
            let events = decode_segment(bytes).map_err(|error| {
                Error::new(
                    ErrorKind::SegmentUnreadable,
                    format!("segment {uri} is unreadable: {}", error.full_message()),
                )
            })?;
            Ok(events.iter().filter(|event| matches(event)).count() as u64)
        })
        .await
        .map_err(|error| Error::internal(format!("erasure scan panicked: {error}")))?
    }
}
