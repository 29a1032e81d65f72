//! The audit trail: one `audit_log` row per read, replay, maintenance run
//! and token change, saying who, when, from where, what and how much.
//!
//! The HTTP server records through an [`AuditLog`]: a bounded queue and a
//! task that writes records in batches, so a request never waits for the
//! catalog. When the catalog fails, the task keeps its batch and retries
//! (with backoff) while the queue holds what comes next; only when the
//! queue is full as well is a record lost, and then it is logged at ERROR
//! with its whole content and counted (`hindsight_audit_records_lost`), so
//! no record is lost silently. Commands (`hindsight replay run`, `erase`,
//! `token create`, ...) write their record directly.

use std::time::Duration;

use serde::Serialize;
use sqlx::Row;
use tokio::sync::mpsc;

use crate::access::Principal;
use crate::catalog::Catalog;
use crate::event::now_micros;
use crate::Result;

/// How many records wait for the catalog before new ones are lost (logged).
pub const QUEUE_CAPACITY: usize = 100_000;

/// Records written per catalog transaction.
const BATCH: usize = 500;

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub id: String,
    /// Microseconds since the Unix epoch.
    pub at: i64,
    pub principal: String,
    pub role: String,
    pub address: Option<String>,
    /// `sql`, `events.search`, `event.fetch`, `replay.start`, `token.create`, ...
    pub action: String,
    pub method: Option<String>,
    pub route: Option<String>,
    /// What it named: the SQL text, the filter, the target. Never a secret.
    pub detail: Option<String>,
    /// The HTTP status, or 0 for a command that succeeded (1 for one that failed).
    pub status: i32,
    /// Rows or events returned or touched, when known.
    pub count: Option<i64>,
}

impl AuditRecord {
    pub fn new(principal: &Principal, action: &str) -> AuditRecord {
        AuditRecord {
            id: uuid::Uuid::new_v4().to_string(),
            at: now_micros(),
            principal: principal.name.clone(),
            role: principal.role.as_str().to_owned(),
            address: None,
            action: action.to_owned(),
            method: None,
            route: None,
            detail: None,
            status: 0,
            count: None,
        }
    }
}

/// Which records to read back.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub principal: Option<String>,
    pub action: Option<String>,
    pub limit: Option<i64>,
}

impl Catalog {
    /// Writes records in one transaction.
    pub async fn insert_audit(&self, records: &[AuditRecord]) -> Result<()> {
        let mut transaction = self.pool().begin().await?;
        for record in records {
            sqlx::query(
                "INSERT INTO audit_log (id, at, principal, role, address, action, method, route, \
                 detail, status, count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&record.id)
            .bind(record.at)
            .bind(&record.principal)
            .bind(&record.role)
            .bind(record.address.as_deref())
            .bind(&record.action)
            .bind(record.method.as_deref())
            .bind(record.route.as_deref())
            .bind(record.detail.as_deref())
            .bind(record.status)
            .bind(record.count)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Records oldest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let mut sql = "SELECT id, at, principal, role, address, action, method, route, detail, \
                       status, count FROM audit_log WHERE 1 = 1"
            .to_owned();
        let mut next = 1;
        let mut placeholder = |sql: &mut String, condition: &str| {
            sql.push_str(&format!(" AND {condition} ${next}"));
            next += 1;
        };
        if query.since.is_some() {
            placeholder(&mut sql, "at >=");
        }
        if query.until.is_some() {
            placeholder(&mut sql, "at <");
        }
        if query.principal.is_some() {
            placeholder(&mut sql, "principal =");
        }
        if query.action.is_some() {
            placeholder(&mut sql, "action =");
        }
        sql.push_str(" ORDER BY at, id");
        if query.limit.is_some() {
            sql.push_str(&format!(" LIMIT ${next}"));
        }
        let mut statement = sqlx::query(&sql);
        if let Some(since) = query.since {
            statement = statement.bind(since);
        }
        if let Some(until) = query.until {
            statement = statement.bind(until);
        }
        if let Some(principal) = &query.principal {
            statement = statement.bind(principal);
        }
        if let Some(action) = &query.action {
            statement = statement.bind(action);
        }
        if let Some(limit) = query.limit {
            statement = statement.bind(limit);
        }
        let rows = statement.fetch_all(self.pool()).await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRecord {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    principal: row.try_get("principal")?,
                    role: row.try_get("role")?,
                    address: row.try_get("address")?,
                    action: row.try_get("action")?,
                    method: row.try_get("method")?,
                    route: row.try_get("route")?,
                    detail: row.try_get("detail")?,
                    status: row.try_get("status")?,
                    count: row.try_get("count")?,
                })
            })
            .collect()
    }
}

/// The queue in front of the catalog; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    sender: mpsc::Sender<AuditRecord>,
}

impl AuditLog {
    /// Starts the writer task. It drains the queue and ends once every
    /// clone of the returned log is dropped (if the catalog still fails
    /// then, after a few tries, what is left is logged at ERROR).
    pub fn start(catalog: Catalog) -> (AuditLog, tokio::task::JoinHandle<()>) {
        Self::start_with_capacity(catalog, QUEUE_CAPACITY)
    }

    fn start_with_capacity(
        catalog: Catalog,
        capacity: usize,
    ) -> (AuditLog, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(capacity);
        let task = tokio::spawn(write_records(catalog, receiver));
        (AuditLog { sender }, task)
    }

    /// Queues a record; never waits.
    pub fn record(&self, record: AuditRecord) {
        let metrics = crate::metrics::global();
        match self.sender.try_send(record) {
            Ok(()) => {
                metrics.audit_queue.inc();
            }
            Err(
                mpsc::error::TrySendError::Full(record) | mpsc::error::TrySendError::Closed(record),
            ) => {
                metrics.audit_records_lost.inc();
                lost(&record, "the audit queue is full");
            }
        }
    }
}

fn lost(record: &AuditRecord, why: &str) {
    let content = serde_json::to_string(record).unwrap_or_else(|_| format!("{record:?}"));
    tracing::error!(audit = %content, "an audit record could not be written to the catalog: {why}");
}

async fn write_records(catalog: Catalog, mut receiver: mpsc::Receiver<AuditRecord>) {
    let metrics = crate::metrics::global();
    let mut batch: Vec<AuditRecord> = Vec::new();
    let mut failures = 0u32;
    loop {
        if batch.is_empty() && receiver.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        match catalog.insert_audit(&batch).await {
            Ok(()) => {
                metrics.audit_records.inc_by(batch.len() as u64);
                metrics.audit_queue.dec_by(batch.len() as i64);
                batch.clear();
                if failures > 0 {
                    tracing::info!("audit records are written to the catalog again");
                }
                failures = 0;
            }
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(%error, waiting = batch.len(), "cannot write audit records to the catalog; retrying");
                }
                if receiver.is_closed() && failures > 5 {
                    receiver.close();
                    while let Ok(record) = receiver.try_recv() {
                        batch.push(record);
                    }
                    for record in batch.drain(..) {
                        metrics.audit_records_lost.inc();
                        metrics.audit_queue.dec();
                        lost(&record, "the catalog still fails at shutdown");
                    }
                    return;
                }
                let wait = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queued_records_reach_the_catalog_in_order() {
        let directory = tempfile::tempdir().unwrap();
        let catalog = Catalog::open_for_test(directory.path()).await;
        let (log, task) = AuditLog::start(catalog.clone());
        let principal = Principal::anonymous();
        for index in 0..1200 {
            let mut record = AuditRecord::new(&principal, "sql");
            record.detail = Some(format!("SELECT {index}"));
            record.status = 200;
            log.record(record);
        }
        drop(log);
        task.await.unwrap();
        let stored = catalog.audit(&AuditQuery::default()).await.unwrap();
        assert_eq!(stored.len(), 1200);
        let limited = catalog
            .audit(&AuditQuery {
                action: Some("sql".to_owned()),
                limit: Some(10),
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(limited.len(), 10);
    }

    /// What tracing writes, kept for the test to read.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_record_that_finds_the_queue_full_is_logged_whole_and_counted() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let directory = tempfile::tempdir().unwrap();
        let catalog = Catalog::open_for_test(directory.path()).await;
        let lost_before = crate::metrics::global().audit_records_lost.get();
        // On a current-thread runtime the writer task cannot run until this
        // test awaits, so the queue of 3 is full after the third record.
        let (log, task) = AuditLog::start_with_capacity(catalog.clone(), 3);
        let principal = Principal::anonymous();
        for index in 0..5 {
            let mut record = AuditRecord::new(&principal, "sql");
            record.detail = Some(format!("SELECT {index} AS kept_in_the_log"));
            record.status = 200;
            log.record(record);
        }
        assert_eq!(
            crate::metrics::global().audit_records_lost.get() - lost_before,
            2
        );
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        for index in [3, 4] {
            assert!(
                logged.contains(&format!("SELECT {index} AS kept_in_the_log")),
                "record {index} is in the ERROR line: {logged}"
            );
        }
        assert!(
            logged.contains("ERROR") && logged.contains("the audit queue is full"),
            "{logged}"
        );
        assert!(
            !logged.contains("SELECT 0 "),
            "a queued record is not reported lost: {logged}"
        );
        drop(log);
        task.await.unwrap();
        let stored = catalog.audit(&AuditQuery::default()).await.unwrap();
        let details: Vec<_> = stored.iter().filter_map(|r| r.detail.clone()).collect();
        assert_eq!(details.len(), 3, "{details:?}");
        for index in 0..3 {
            assert!(
                details.contains(&format!("SELECT {index} AS kept_in_the_log")),
                "{details:?}"
            );
        }
    }
}
