//! `hindsight verify`: scrubs the store against the catalog.
//!
//! Every committed segment (narrowed by `--source` and `--since`) is read
//! whole and checked: it must exist, have the size the catalog recorded, and
//! match the catalog's checksum. Segments committed before checksums were
//! recorded have none; those are decoded instead, and their page checksums
//! (when present) and structure checked. Each damaged or missing segment is
//! reported by its object key; the command fails when there is any.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures::StreamExt;
use hindsight_archive::catalog::{SegmentFilter, SegmentRecord};
use hindsight_archive::segment::{check_segment_structure, segment_checksum};
use hindsight_archive::store::ArchiveStore;
use hindsight_archive::ErrorKind;
use serde::Serialize;

use crate::config::Config;

/// Segments read at once.
const CONCURRENT_CHECKS: usize = 4;

/// What is wrong with one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// The catalog lists it; the store does not have it.
    Missing,
    /// Its bytes differ from what was committed (size, checksum, pages, footer).
    Damaged,
    /// The store failed to read it (network, permissions): not judged.
    Unreadable,
}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentProblem {
    pub uri: String,
    pub segment_id: String,
    pub source: String,
    pub topic: String,
    pub partition: i32,
    pub problem: Problem,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub segments_checked: usize,
    pub bytes_checked: u64,
    /// Segments committed before checksums: checked by decoding them.
    pub segments_without_checksum: usize,
    pub problems: Vec<SegmentProblem>,
}

/// Parses `--since`: an RFC 3339 time, or a duration back from now (`24h`).
pub fn parse_since(text: &str) -> Result<i64, String> {
    let instant = match humantime::parse_duration(text) {
        Ok(back) => SystemTime::now()
            .checked_sub(back)
            .ok_or_else(|| format!("{text:?} reaches before 1970"))?,
        Err(_) => humantime::parse_rfc3339_weak(text).map_err(|_| {
            format!(
                "{text:?} is neither an RFC 3339 time (2026-11-21T09:00:00Z) nor a duration (24h)"
            )
        })?,
    };
    let since_epoch = instant.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Ok(i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX))
}

pub async fn run(
    config: &Config,
    source: Option<String>,
    since_micros: Option<i64>,
    json: bool,
) -> anyhow::Result<()> {
    let (store, catalog) = crate::open::open_archive(config).await?;
    let filter = SegmentFilter {
        source,
        time_from: since_micros,
        ..SegmentFilter::default()
    };
    let records = catalog
        .segments(&filter)
        .await
        .context("cannot list the committed segments")?;
    catalog.close().await;
    let report = verify_segments(&store, records).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for problem in &report.problems {
            println!(
                "{:?} {} (source {}, topic {}, partition {}): {}",
                problem.problem,
                problem.uri,
                problem.source,
                problem.topic,
                problem.partition,
                problem.detail
            );
        }
        println!(
            "checked {} segment(s), {} bytes ({} without a recorded checksum, decoded instead): {} problem(s)",
            report.segments_checked,
            report.bytes_checked,
            report.segments_without_checksum,
            report.problems.len()
        );
    }
    if !report.problems.is_empty() {
        bail!(
            "{} of {} segment(s) are damaged, missing or unreadable",
            report.problems.len(),
            report.segments_checked
        );
    }
    Ok(())
}

/// Checks every segment in `records` against the store.
pub async fn verify_segments(store: &ArchiveStore, records: Vec<SegmentRecord>) -> VerifyReport {
    let checks = records.into_iter().map(|record| async move {
        let outcome = check_segment(store, &record).await;
        (record, outcome)
    });
    let outcomes: Vec<_> = futures::stream::iter(checks)
        .buffered(CONCURRENT_CHECKS)
        .collect()
        .await;
    let mut report = VerifyReport::default();
    for (record, outcome) in outcomes {
        report.segments_checked += 1;
        if record.segment.checksum.is_none() {
            report.segments_without_checksum += 1;
        }
        match outcome {
            Ok(bytes) => report.bytes_checked += bytes,
            Err((problem, detail)) => report.problems.push(SegmentProblem {
                uri: record.segment.uri.clone(),
                segment_id: record.segment.id.clone(),
                source: record.segment.source.clone(),
                topic: record.segment.topic.clone(),
                partition: record.segment.partition,
                problem,
                detail,
            }),
        }
    }
    report
}

/// Reads one segment whole; returns its size, or what is wrong with it.
async fn check_segment(
    store: &ArchiveStore,
    record: &SegmentRecord,
) -> Result<u64, (Problem, String)> {
    let segment = &record.segment;
    let bytes = store
        .get_key(&segment.uri)
        .await
        .map_err(|error| match error.kind() {
            ErrorKind::NotFound => (
                Problem::Missing,
                "the object is missing from the store".to_owned(),
            ),
            ErrorKind::InvalidInput => (Problem::Damaged, error.full_message()),
            _ => (Problem::Unreadable, error.full_message()),
        })?;
    let size = bytes.len() as u64;
    if i64::try_from(size).ok() != Some(segment.bytes) {
        return Err((
            Problem::Damaged,
            format!(
                "the object has {size} bytes, the catalog recorded {}",
                segment.bytes
            ),
        ));
    }
    if let Some(expected) = &segment.checksum {
        let actual = segment_checksum(&bytes);
        if &actual != expected {
            return Err((
                Problem::Damaged,
                format!("checksum {actual} differs from the committed {expected}"),
            ));
        }
        return Ok(size);
    }
    // No recorded checksum: check what the file itself can prove.
    tokio::task::spawn_blocking(move || check_segment_structure(bytes))
        .await
        .map_err(|error| (Problem::Unreadable, format!("the check failed: {error}")))?
        .map_err(|error| (Problem::Damaged, error.full_message()))?;
    Ok(size)
}
