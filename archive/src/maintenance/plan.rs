//! Which segments compaction merges: pure planning over catalog rows.
//!
//! Segments are grouped by bucket: one (source, topic, partition) within one
//! UTC hour, or within one UTC day when the partition is quiet (its live
//! bytes that day are below `quiet_day_bytes`; its hours then wait for the
//! day to close). Only closed buckets are
//! touched: the bucket ended at least `settle` ago, so ingest has moved on.
//! In a bucket, segments are taken in read order (offsets, then commit order)
//! and packed into outputs of at most `target_bytes` of input. A compacted
//! segment that is already at least half the target stays as it is and
//! splits the runs around it, so late events never rewrite a full output;
//! a run of one segment is only rewritten when ingest wrote it (to bring it
//! to the cold zstd level).

use std::collections::BTreeMap;

use crate::catalog::SegmentRecord;
use crate::layout::hour_start;

pub const HOUR_MICROS: i64 = 3_600_000_000;
pub const DAY_MICROS: i64 = 24 * HOUR_MICROS;

/// The policy knobs planning needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackPolicy {
    pub target_bytes: i64,
    pub quiet_day_bytes: i64,
    /// A bucket is closed `settle_micros` after its end.
    pub settle_micros: i64,
}

/// One partition's hour or day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bucket {
    pub source: String,
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    /// `HOUR_MICROS` or `DAY_MICROS`.
    pub span: i64,
}

impl Bucket {
    /// The lease key: one compactor per bucket.
    pub fn key(&self) -> String {
        format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
            self.source, self.topic, self.partition, self.start, self.span
        )
    }

    pub fn end(&self) -> i64 {
        self.start + self.span
    }

    pub fn is_day(&self) -> bool {
        self.span == DAY_MICROS
    }
}

/// One merge: inputs in read order, their total bytes at most the target
/// (or one segment larger than it, never split).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionJob {
    pub bucket: Bucket,
    pub inputs: Vec<SegmentRecord>,
}

impl CompactionJob {
    pub fn bytes(&self) -> i64 {
        self.inputs.iter().map(|record| record.segment.bytes).sum()
    }

    pub fn rows(&self) -> i64 {
        self.inputs.iter().map(|record| record.segment.rows).sum()
    }
}

/// The order replay and compaction read a partition's segments in.
pub fn read_order(record: &SegmentRecord) -> (i64, Option<i64>, i64, String) {
    (
        record.segment.first_offset,
        record.committed_at,
        record.segment.min_event_time,
        record.segment.id.clone(),
    )
}

/// The jobs for live `segments`, for buckets that ended before `before`
/// (and before `now` minus the settle time).
pub fn plan_jobs(
    segments: Vec<SegmentRecord>,
    policy: PackPolicy,
    now: i64,
    before: Option<i64>,
) -> Vec<CompactionJob> {
    let closed_by = before
        .unwrap_or(i64::MAX)
        .min(now.saturating_sub(policy.settle_micros));
    let mut days: BTreeMap<Bucket, Vec<SegmentRecord>> = BTreeMap::new();
    for record in segments {
        let day = Bucket {
            source: record.segment.source.clone(),
            topic: record.segment.topic.clone(),
            partition: record.segment.partition,
            start: record.segment.min_event_time.div_euclid(DAY_MICROS) * DAY_MICROS,
            span: DAY_MICROS,
        };
        days.entry(day).or_default().push(record);
    }
    let mut jobs = Vec::new();
    for (day, mut records) in days {
        records.sort_by_key(read_order);
        let day_bytes: i64 = records.iter().map(|r| r.segment.bytes).sum();
        if day_bytes < policy.quiet_day_bytes {
            // A quiet day is merged whole once it closes, not hour by hour.
            if day.end() <= closed_by {
                jobs.extend(pack(&day, records, policy));
            }
            continue;
        }
        let mut hours: BTreeMap<i64, Vec<SegmentRecord>> = BTreeMap::new();
        for record in records {
            hours
                .entry(hour_start(record.segment.min_event_time))
                .or_default()
                .push(record);
        }
        for (start, records) in hours {
            let hour = Bucket {
                start,
                span: HOUR_MICROS,
                ..day.clone()
            };
            // A day-long segment (a quiet day that got busy later) counts
            // as part of its first hour and is merged with it.
            let closes_at = records
                .iter()
                .map(|r| r.segment.max_event_time + 1)
                .max()
                .unwrap_or(hour.end())
                .max(hour.end());
            if closes_at <= closed_by {
                jobs.extend(pack(&hour, records, policy));
            }
        }
    }
    jobs
}

/// Packs one bucket's segments (in read order) into jobs.
fn pack(bucket: &Bucket, records: Vec<SegmentRecord>, policy: PackPolicy) -> Vec<CompactionJob> {
    let full = |record: &SegmentRecord| {
        record.compaction_level > 0 && record.segment.bytes >= policy.target_bytes / 2
    };
    let mut jobs = Vec::new();
    let mut run: Vec<SegmentRecord> = Vec::new();
    let mut run_bytes = 0;
    let flush = |run: &mut Vec<SegmentRecord>, jobs: &mut Vec<CompactionJob>| {
        let worth_it = run.len() > 1 || run.first().is_some_and(|r| r.compaction_level == 0);
        if worth_it {
            jobs.push(CompactionJob {
                bucket: bucket.clone(),
                inputs: std::mem::take(run),
            });
        }
        run.clear();
    };
    for record in records {
        if full(&record) {
            flush(&mut run, &mut jobs);
            run_bytes = 0;
            continue;
        }
        if !run.is_empty() && run_bytes + record.segment.bytes > policy.target_bytes {
            flush(&mut run, &mut jobs);
            run_bytes = 0;
        }
        run_bytes += record.segment.bytes;
        run.push(record);
    }
    flush(&mut run, &mut jobs);
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::NewSegment;

    const T0: i64 = 1_795_219_200_000_000; // 2026-11-21T00:00:00Z

    fn segment(
        id: &str,
        partition: i32,
        first: i64,
        time: i64,
        bytes: i64,
        level: i64,
    ) -> SegmentRecord {
        crate::maintenance::live_record(
            NewSegment {
                id: id.to_owned(),
                uri: format!("segments/source=s/{id}.parquet"),
                source: "s".to_owned(),
                topic: "t".to_owned(),
                partition,
                first_offset: first,
                last_offset: first + 9,
                min_event_time: time,
                max_event_time: time + 1_000,
                rows: 10,
                bytes,
                checksum: None,
            },
            level,
        )
    }

    fn ids(job: &CompactionJob) -> Vec<&str> {
        job.inputs.iter().map(|r| r.segment.id.as_str()).collect()
    }

    const POLICY: PackPolicy = PackPolicy {
        target_bytes: 100,
        quiet_day_bytes: 50,
        settle_micros: HOUR_MICROS,
    };

    #[test]
    fn a_busy_hour_packs_into_targets_in_offset_order_and_open_hours_wait() {
        let now = T0 + 3 * HOUR_MICROS;
        let segments = vec![
            segment("c", 0, 20, T0 + 3, 40, 0),
            segment("a", 0, 0, T0 + 1, 40, 0),
            segment("b", 0, 10, T0 + 2, 40, 0),
            // Hour 2 ends at now - 1 h + 1 h: not closed.
            segment("open", 0, 30, T0 + 2 * HOUR_MICROS, 40, 0),
        ];
        let jobs = plan_jobs(segments, POLICY, now, None);
        assert_eq!(jobs.len(), 2);
        assert_eq!(ids(&jobs[0]), ["a", "b"]);
        assert_eq!(ids(&jobs[1]), ["c"]);
        assert_eq!(jobs[0].bucket.span, HOUR_MICROS);
    }

    #[test]
    fn a_quiet_day_becomes_one_job_once_the_day_is_closed() {
        let segments: Vec<_> = (0..5)
            .map(|hour| {
                segment(
                    &format!("h{hour}"),
                    1,
                    hour * 10,
                    T0 + hour * HOUR_MICROS,
                    5,
                    0,
                )
            })
            .collect();
        let during = plan_jobs(segments.clone(), POLICY, T0 + 10 * HOUR_MICROS, None);
        // The day is open: its hours wait to be merged whole.
        assert!(during.is_empty());
        let after = plan_jobs(segments, POLICY, T0 + DAY_MICROS + 2 * HOUR_MICROS, None);
        assert_eq!(after.len(), 1);
        assert!(after[0].bucket.is_day());
        assert_eq!(ids(&after[0]), ["h0", "h1", "h2", "h3", "h4"]);
    }

    #[test]
    fn compacted_output_stays_and_late_events_merge_with_each_other() {
        let now = T0 + 5 * HOUR_MICROS;
        let done = vec![segment("full", 0, 0, T0, 90, 1)];
        assert!(plan_jobs(done.clone(), POLICY, now, None).is_empty());
        let mut late = done;
        late.push(segment("late1", 0, 100, T0 + 5, 5, 0));
        late.push(segment("late2", 0, 110, T0 + 6, 5, 0));
        let jobs = plan_jobs(late, POLICY, now, None);
        assert_eq!(jobs.len(), 1);
        assert_eq!(ids(&jobs[0]), ["late1", "late2"]);
        // A small compacted output takes late events in.
        let small = vec![
            segment("small", 0, 0, T0, 45, 1),
            segment("late", 0, 100, T0 + 5, 5, 0),
        ];
        assert_eq!(
            ids(&plan_jobs(small, POLICY, now, None)[0]),
            ["small", "late"]
        );
    }

    #[test]
    fn before_limits_the_buckets() {
        let segments = vec![
            segment("old", 0, 0, T0, 40, 0),
            segment("old2", 0, 10, T0 + 1, 40, 0),
            segment("new", 0, 20, T0 + 3 * HOUR_MICROS, 40, 0),
            segment("new2", 0, 30, T0 + 3 * HOUR_MICROS + 1, 40, 0),
        ];
        let jobs = plan_jobs(
            segments,
            POLICY,
            T0 + 10 * HOUR_MICROS,
            Some(T0 + 2 * HOUR_MICROS),
        );
        assert_eq!(jobs.len(), 1);
        assert_eq!(ids(&jobs[0]), ["old", "old2"]);
    }
}
