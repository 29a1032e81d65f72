//! Process-wide metrics, rendered in the Prometheus/OpenMetrics text format at
//! `/metrics` by `hindsight archive`, `serve` and `demo`.
//!
//! One registry per process ([`global`]). Ingest metrics carry a `source`
//! label; lag also carries `topic` and `partition`.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommitFailureLabels {
    pub source: String,
    /// `conflict` (a lost compare-and-set), `unavailable` (the store or
    /// catalog; retried) or `fatal`.
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub source: String,
    pub topic: String,
    pub partition: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MaintenanceLabels {
    /// `compaction`, `retention` or `erasure`.
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MaintenanceOutcomeLabels {
    pub kind: String,
    /// `succeeded`, `failed`, or `aborted` (a proof did not hold).
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status: String,
}

fn new_flush_histogram() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric Hindsight exports.
#[derive(Debug)]
pub struct Metrics {
    pub events_consumed: Family<SourceLabels, Counter>,
    pub bytes_consumed: Family<SourceLabels, Counter>,
    pub events_archived: Family<SourceLabels, Counter>,
    pub segments_written: Family<SourceLabels, Counter>,
    pub bytes_written: Family<SourceLabels, Counter>,
    pub flush_seconds: Family<SourceLabels, Histogram, fn() -> Histogram>,
    pub commit_failures: Family<CommitFailureLabels, Counter>,
    pub payloads_truncated: Family<SourceLabels, Counter>,
    /// Messages the broker redelivered (RabbitMQ `redelivered` flag).
    pub redeliveries: Family<SourceLabels, Counter>,
    /// Events between the archive's checkpoint and the broker's high
    /// watermark, per partition, as last seen by the consumer.
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    /// Events held in memory, not yet committed.
    pub events_buffered: Family<SourceLabels, Gauge>,
    /// 1 while a source is paused because the disk (or quota) of the store
    /// or the catalog is full, else 0.
    pub storage_full: Family<SourceLabels, Gauge>,
    /// How many times a source paused for a full disk.
    pub storage_full_pauses: Family<SourceLabels, Counter>,
    pub http_requests: Family<RouteLabels, Counter>,
    /// Compaction, retention and erasure jobs by outcome.
    pub maintenance_jobs: Family<MaintenanceOutcomeLabels, Counter>,
    pub maintenance_bytes_in: Family<MaintenanceLabels, Counter>,
    pub maintenance_bytes_out: Family<MaintenanceLabels, Counter>,
    pub maintenance_segments_retired: Family<MaintenanceLabels, Counter>,
    pub maintenance_seconds: Family<MaintenanceLabels, Histogram, fn() -> Histogram>,
    /// Retired objects deleted after the grace period.
    pub retired_objects_deleted: Counter,
    /// Iceberg table snapshots committed.
    pub table_snapshots: Counter,
    /// Table sync passes that failed.
    pub table_sync_failures: Counter,
    /// When the last table sync pass that synced every table ended (Unix seconds).
    pub tables_synced_at: Gauge,
    /// Audit records written to the catalog.
    pub audit_records: Counter,
    /// Audit records that could not be written (the queue was full while
    /// the catalog failed); each is also logged at ERROR with its content.
    pub audit_records_lost: Counter,
    /// Audit records waiting for the catalog.
    pub audit_queue: Gauge,
    registry: Registry,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("hindsight");
        let metrics = Metrics {
            events_consumed: Family::default(),
            bytes_consumed: Family::default(),
            events_archived: Family::default(),
            segments_written: Family::default(),
            bytes_written: Family::default(),
            flush_seconds: Family::new_with_constructor(new_flush_histogram),
            commit_failures: Family::default(),
            payloads_truncated: Family::default(),
            redeliveries: Family::default(),
            consumer_lag: Family::default(),
            events_buffered: Family::default(),
            storage_full: Family::default(),
            storage_full_pauses: Family::default(),
            http_requests: Family::default(),
            maintenance_jobs: Family::default(),
            maintenance_bytes_in: Family::default(),
            maintenance_bytes_out: Family::default(),
            maintenance_segments_retired: Family::default(),
            maintenance_seconds: Family::new_with_constructor(new_flush_histogram),
            retired_objects_deleted: Counter::default(),
            table_snapshots: Counter::default(),
            table_sync_failures: Counter::default(),
            tables_synced_at: Gauge::default(),
            audit_records: Counter::default(),
            audit_records_lost: Counter::default(),
            audit_queue: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_consumed",
            "Events received from the broker",
            metrics.events_consumed.clone(),
        );
        registry.register(
            "bytes_consumed",
            "Payload bytes received from the broker",
            metrics.bytes_consumed.clone(),
        );
        registry.register(
            "events_archived",
            "Events in committed segments",
            metrics.events_archived.clone(),
        );
        registry.register(
            "segments_written",
            "Segments committed to the catalog",
            metrics.segments_written.clone(),
        );
        registry.register(
            "segment_bytes_written",
            "Parquet bytes committed",
            metrics.bytes_written.clone(),
        );
        registry.register(
            "flush_seconds",
            "Time to encode, store and commit one batch",
            metrics.flush_seconds.clone(),
        );
        registry.register(
            "commit_failures",
            "Batches that failed to commit (they are retried)",
            metrics.commit_failures.clone(),
        );
        registry.register(
            "payloads_truncated",
            "Payloads over max_payload_bytes, archived truncated",
            metrics.payloads_truncated.clone(),
        );
        registry.register(
            "redeliveries",
            "Messages the broker flagged as redelivered",
            metrics.redeliveries.clone(),
        );
        registry.register(
            "consumer_lag",
            "Events behind the high watermark the broker reports per partition (librdkafka statistics: \
             hi_offset minus the committed offset). Only as right as the broker's watermark: Tansu 0.6 \
             under-reports it, see RELIABILITY.md",
            metrics.consumer_lag.clone(),
        );
        registry.register(
            "events_buffered",
            "Events received and not yet committed",
            metrics.events_buffered.clone(),
        );
        registry.register(
            "storage_full",
            "1 while the source is paused because the disk or quota is full",
            metrics.storage_full.clone(),
        );
        registry.register(
            "storage_full_pauses",
            "Times the source paused because the disk or quota was full",
            metrics.storage_full_pauses.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            metrics.http_requests.clone(),
        );
        registry.register(
            "maintenance_jobs",
            "Compaction, retention and erasure jobs by kind and outcome",
            metrics.maintenance_jobs.clone(),
        );
        registry.register(
            "maintenance_bytes_read",
            "Segment bytes read by compaction and erasure",
            metrics.maintenance_bytes_in.clone(),
        );
        registry.register(
            "maintenance_bytes_written",
            "Segment bytes written by compaction and erasure",
            metrics.maintenance_bytes_out.clone(),
        );
        registry.register(
            "maintenance_segments_retired",
            "Segments retired (replaced by compaction or erasure, or expired by retention)",
            metrics.maintenance_segments_retired.clone(),
        );
        registry.register(
            "maintenance_job_seconds",
            "Time of one compaction, retention or erasure job",
            metrics.maintenance_seconds.clone(),
        );
        registry.register(
            "retired_objects_deleted",
            "Objects of retired segments deleted after the grace period",
            metrics.retired_objects_deleted.clone(),
        );
        registry.register(
            "table_snapshots",
            "Iceberg table snapshots committed",
            metrics.table_snapshots.clone(),
        );
        registry.register(
            "table_sync_failures",
            "Iceberg table sync passes that failed",
            metrics.table_sync_failures.clone(),
        );
        registry.register(
            "tables_synced_at_seconds",
            "When the last complete Iceberg table sync pass ended (Unix time); a table lags the catalog by at most now minus this",
            metrics.tables_synced_at.clone(),
        );
        registry.register(
            "audit_records",
            "Audit records written to the catalog",
            metrics.audit_records.clone(),
        );
        registry.register(
            "audit_records_lost",
            "Audit records that could not be written (logged at ERROR instead)",
            metrics.audit_records_lost.clone(),
        );
        registry.register(
            "audit_queue",
            "Audit records waiting to be written to the catalog",
            metrics.audit_queue.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    pub fn source(source: &str) -> SourceLabels {
        SourceLabels {
            source: source.to_owned(),
        }
    }
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Every metric in the OpenMetrics text format (which Prometheus reads).
pub fn render() -> String {
    let mut text = String::new();
    // Writing into a String cannot fail; encode only returns fmt::Error from
    // the writer.
    if prometheus_client::encoding::text::encode(&mut text, &global().registry).is_err() {
        text.clear();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_counters() {
        let labels = Metrics::source("metrics-unit-test");
        global().events_consumed.get_or_create(&labels).inc_by(3);
        global().flush_seconds.get_or_create(&labels).observe(0.25);
        let text = render();
        assert!(
            text.contains("hindsight_events_consumed_total{source=\"metrics-unit-test\"} 3"),
            "{text}"
        );
        assert!(text.contains("hindsight_flush_seconds_count{source=\"metrics-unit-test\"} 1"));
        assert!(text.ends_with("# EOF\n"));
    }
}
