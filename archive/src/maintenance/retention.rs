//! Retention: whole segments whose newest event is older than their topic's
//! retention are retired (and their objects deleted after the grace period).

use std::time::Duration;

use super::{micros, Maintenance, MaintenanceRun};
use crate::catalog::{SegmentFilter, SegmentRecord};
use crate::error::Result;
use crate::event::now_micros;
use crate::metrics::{global, MaintenanceLabels};

/// How long one source (or one topic of it) keeps events, by event time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRule {
    pub source: String,
    /// `None`: every topic of the source without a rule of its own.
    pub topic: Option<String>,
    pub keep: Duration,
}

/// What a retention run removed (or, dry, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    pub run_id: String,
    pub dry_run: bool,
    pub segments: u64,
    pub rows: u64,
    pub bytes: u64,
    /// The keys of the segments, oldest first.
    pub segment_uris: Vec<String>,
}

/// The rule that applies to a segment: its topic's, else its source's.
fn rule_for<'a>(rules: &'a [RetentionRule], record: &SegmentRecord) -> Option<&'a RetentionRule> {
    let source = |rule: &&RetentionRule| rule.source == record.segment.source;
    rules
        .iter()
        .filter(source)
        .find(|rule| rule.topic.as_deref() == Some(record.segment.topic.as_str()))
        .or_else(|| {
            rules
                .iter()
                .filter(source)
                .find(|rule| rule.topic.is_none())
        })
}

/// The live segments `rules` expire at `now`: every event older than the cutoff.
pub fn expired(
    rules: &[RetentionRule],
    segments: Vec<SegmentRecord>,
    now: i64,
) -> Vec<SegmentRecord> {
    let mut expired: Vec<SegmentRecord> = segments
        .into_iter()
        .filter(|record| {
            rule_for(rules, record)
                .is_some_and(|rule| record.segment.max_event_time < now - micros(rule.keep))
        })
        .collect();
    expired.sort_by_key(|record| (record.segment.max_event_time, record.segment.id.clone()));
    expired
}

impl Maintenance {
    /// Applies `rules` (only those of `source`, when given), recording the
    /// run, dry runs included.
    pub async fn apply_retention(
        &self,
        rules: &[RetentionRule],
        source: Option<&str>,
        dry_run: bool,
        actor: Option<String>,
    ) -> Result<RetentionReport> {
        let rules: Vec<RetentionRule> = rules
            .iter()
            .filter(|rule| source.is_none_or(|source| rule.source == source))
            .cloned()
            .collect();
        let filter = SegmentFilter {
            source: source.map(str::to_owned),
            ..SegmentFilter::default()
        };
        let segments = self.catalog.segments(&filter).await?;
        let expired = expired(&rules, segments, now_micros());
        let scope = serde_json::json!({
            "source": source,
            "rules": rules.iter().map(|rule| serde_json::json!({
                "source": rule.source,
                "topic": rule.topic,
                "keep_seconds": rule.keep.as_secs(),
            })).collect::<Vec<_>>(),
        })
        .to_string();
        let mut run = MaintenanceRun::start("retention", dry_run, actor, scope);
        let mut report = RetentionReport {
            run_id: run.id.clone(),
            dry_run,
            segments: expired.len() as u64,
            rows: expired.iter().map(|r| r.segment.rows as u64).sum(),
            bytes: expired.iter().map(|r| r.segment.bytes as u64).sum(),
            segment_uris: expired.iter().map(|r| r.segment.uri.clone()).collect(),
        };
        run.segments_in = report.segments as i64;
        run.rows_in = report.rows as i64;
        run.bytes_in = report.bytes as i64;
        run.details = Some(serde_json::json!({ "segments": report.segment_uris }).to_string());
        if !dry_run && !expired.is_empty() {
            let ids: Vec<String> = expired.iter().map(|r| r.segment.id.clone()).collect();
            let retired = self.catalog.retire_segments(&ids, &run.id).await?;
            report.segments = retired;
            global()
                .maintenance_segments_retired
                .get_or_create(&MaintenanceLabels {
                    kind: "retention".to_owned(),
                })
                .inc_by(retired);
        }
        run.status = "succeeded".to_owned();
        run.finished_at = Some(now_micros());
        self.catalog.record_run(&run).await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::NewSegment;

    const HOUR: i64 = 3_600_000_000;

    fn segment(topic: &str, hours_ago: i64, now: i64) -> SegmentRecord {
        crate::maintenance::live_record(
            NewSegment {
                id: format!("{topic}-{hours_ago}"),
                uri: String::new(),
                source: "s".to_owned(),
                topic: topic.to_owned(),
                partition: 0,
                first_offset: 0,
                last_offset: 0,
                min_event_time: now - hours_ago * HOUR - HOUR / 2,
                max_event_time: now - hours_ago * HOUR,
                rows: 1,
                bytes: 1,
                checksum: None,
            },
            0,
        )
    }

    #[test]
    fn a_topic_rule_beats_the_source_rule_and_only_whole_segments_expire() {
        let now = 100 * HOUR;
        let rules = vec![
            RetentionRule {
                source: "s".to_owned(),
                topic: None,
                keep: Duration::from_secs(2 * 3600),
            },
            RetentionRule {
                source: "s".to_owned(),
                topic: Some("audit".to_owned()),
                keep: Duration::from_secs(10 * 3600),
            },
        ];
        let segments: Vec<_> = (0..6)
            .flat_map(|h| [segment("orders", h, now), segment("audit", h * 3, now)])
            .collect();
        let ids: Vec<String> = expired(&rules, segments, now)
            .into_iter()
            .map(|r| r.segment.id)
            .collect();
        // orders: newest event 3, 4, 5 hours ago; audit: 12 and 15 hours ago.
        assert_eq!(
            ids,
            ["audit-15", "audit-12", "orders-5", "orders-4", "orders-3"]
        );
    }
}
