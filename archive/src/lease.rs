//! Writer leases: which writing processes are alive (migration
//! `0005_writer_lease.sql`).
//!
//! Every writer takes a lease ([`WriterLease::acquire`]), tags the segments it
//! stages and its staging files with the lease id, renews the lease while it
//! runs ([`WriterLease::keep_alive`], and with every commit), and releases it
//! when it exits cleanly. A lease is dead when it was released; when it
//! names this machine and its process is gone (a SIGKILL: known at once,
//! without waiting for the expiry); or, for another machine's lease, when it
//! expired.
//!
//! Recovery first releases the dead leases ([`Catalog::release_dead_writers`]).
//! [`Catalog::commit`] renews the lease of the segments' writer in its own
//! transaction and fails with [`ErrorKind::Conflict`] once that lease is
//! released, so a released writer (a zombie included) can never commit
//! again, and its pending segments and staging files can be removed at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Row;

use crate::catalog::Catalog;
use crate::error::{Error, ErrorKind, Result};
use crate::event::now_micros;

/// How long a lease lives without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// How often a running writer renews its lease.
pub const LEASE_RENEWAL: Duration = Duration::from_secs(10);

fn ttl_micros() -> i64 {
    i64::try_from(LEASE_TTL.as_micros()).unwrap_or(i64::MAX)
}

/// Which process holds a lease, as far as this machine can check it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcessIdentity {
    /// Host name, boot id and pid namespace: equal only on this machine,
    /// since its last boot, in this pid namespace.
    machine: String,
    pid: i64,
    /// Clock ticks after boot when the process started (tells a reused pid apart).
    process_start: i64,
}

impl ProcessIdentity {
    /// This process, on Linux; `None` elsewhere (leases then die by expiry only).
    fn current() -> Option<ProcessIdentity> {
        let pid = std::process::id();
        Some(ProcessIdentity {
            machine: this_machine()?,
            pid: i64::from(pid),
            process_start: process_start_ticks(i64::from(pid))?,
        })
    }
}

fn this_machine() -> Option<String> {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|t| t.trim().to_owned())
    };
    let host = read("/proc/sys/kernel/hostname")?;
    let boot = read("/proc/sys/kernel/random/boot_id")?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{host} {boot} {}", namespace.display()))
}

/// Field 22 of `/proc/<pid>/stat`, or `None` when the process is gone or a zombie.
fn process_start_ticks(pid: i64) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (the state), so field 22 is fields[19].
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// One writer's lease. Cloning shares it.
#[derive(Debug, Clone)]
pub struct WriterLease {
    catalog: Catalog,
    /// The current lease id: a writer whose lease was released under it (it
    /// was judged dead) takes a new one.
    id: Arc<Mutex<String>>,
}

impl WriterLease {
    /// Takes a new lease for this process.
    pub async fn acquire(catalog: &Catalog) -> Result<WriterLease> {
        let id = insert_lease(catalog).await?;
        tracing::debug!(writer = %id, "writer lease taken");
        Ok(WriterLease {
            catalog: catalog.clone(),
            id: Arc::new(Mutex::new(id)),
        })
    }

    /// The lease id segments and staging files are tagged with.
    pub fn id(&self) -> String {
        // A poisoned lock still holds a valid id (it is only ever replaced whole).
        self.id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn replace_id(&self, id: String) {
        *self
            .id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = id;
    }

    /// Moves the expiry forward. When the lease was released meanwhile (this
    /// writer was judged dead), takes a new one: what was staged under the
    /// old id fails to commit and is written again.
    pub async fn renew(&self) -> Result<()> {
        let id = self.id();
        let now = now_micros();
        let renewed = sqlx::query(
            "UPDATE writers SET heartbeat_at = $1, expires_at = $2 \
             WHERE id = $3 AND released_at IS NULL",
        )
        .bind(now)
        .bind(now.saturating_add(ttl_micros()))
        .bind(&id)
        .execute(self.catalog.pool())
        .await?
        .rows_affected();
        if renewed == 0 {
            let new_id = insert_lease(&self.catalog).await?;
            tracing::warn!(old = %id, new = %new_id, "writer lease was released by recovery; took a new one");
            self.replace_id(new_id);
        }
        Ok(())
    }

    /// Renews the lease every [`LEASE_RENEWAL`] until `stop` completes.
    /// Failures (a full disk, the catalog down) are logged and retried.
    pub async fn keep_alive(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(LEASE_RENEWAL) => {}
            }
            match self.renew().await {
                Ok(()) => {}
                // The pipeline reports a full disk once.
                Err(error) if error.is_storage_full() => {
                    tracing::debug!(error = %error.full_message(), "cannot renew the writer lease; retrying");
                }
                Err(error) => {
                    tracing::warn!(error = %error.full_message(), "cannot renew the writer lease; retrying");
                }
            }
        }
    }

    /// Gives the lease up on a clean exit: recovery may then remove at once
    /// whatever this writer left pending.
    pub async fn release(&self) -> Result<()> {
        sqlx::query("UPDATE writers SET released_at = $1 WHERE id = $2 AND released_at IS NULL")
            .bind(now_micros())
            .bind(self.id())
            .execute(self.catalog.pool())
            .await?;
        Ok(())
    }
}

async fn insert_lease(catalog: &Catalog) -> Result<String> {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let identity = ProcessIdentity::current();
    let now = now_micros();
    sqlx::query(
        "INSERT INTO writers (id, machine, pid, process_start, started_at, heartbeat_at, \
         expires_at, released_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
    )
    .bind(&id)
    .bind(identity.as_ref().map(|i| i.machine.clone()))
    .bind(identity.as_ref().map(|i| i.pid))
    .bind(identity.as_ref().map(|i| i.process_start))
    .bind(now)
    .bind(now)
    .bind(now.saturating_add(ttl_micros()))
    .execute(catalog.pool())
    .await?;
    Ok(id)
}

/// Inside a commit's transaction: renews the lease of the writer that staged
/// `segment`, or fails with [`ErrorKind::Conflict`] when that lease was
/// released. The update comes first, so the row lock orders it against
/// [`Catalog::release_dead_writers`] (and SQLite takes its write lock at once).
pub(crate) async fn renew_for_segment(
    connection: &mut sqlx::AnyConnection,
    segment: &str,
    now: i64,
) -> Result<()> {
    let renewed = sqlx::query(
        "UPDATE writers SET heartbeat_at = $1, expires_at = $2 \
         WHERE released_at IS NULL AND id IN (SELECT writer_id FROM segments WHERE id = $3)",
    )
    .bind(now)
    .bind(now.saturating_add(ttl_micros()))
    .bind(segment)
    .execute(&mut *connection)
    .await?
    .rows_affected();
    if renewed == 1 {
        return Ok(());
    }
    let writer: Option<Option<String>> =
        sqlx::query_scalar("SELECT writer_id FROM segments WHERE id = $1")
            .bind(segment)
            .fetch_optional(&mut *connection)
            .await?;
    match writer.flatten() {
        // Staged without a lease (or gone: the segment update reports that).
        None => Ok(()),
        Some(writer) => Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "writer lease {writer} was released (recovery judged the writer dead): \
                 the batch is written again under a new lease"
            ),
        )),
    }
}

impl Catalog {
    /// Releases every lease whose writer is dead: held by a process of this
    /// machine that is gone, or, for another machine's, expired. Returns the ids of every
    /// released lease (those released now and earlier).
    pub async fn release_dead_writers(&self) -> Result<Vec<String>> {
        let now = now_micros();
        let here = this_machine();
        let rows = sqlx::query(
            "SELECT id, machine, pid, process_start, heartbeat_at, expires_at FROM writers \
             WHERE released_at IS NULL",
        )
        .fetch_all(self.pool())
        .await?;
        for row in &rows {
            let id: String = row.try_get("id")?;
            let machine: Option<String> = row.try_get("machine")?;
            let pid: Option<i64> = row.try_get("pid")?;
            let process_start: Option<i64> = row.try_get("process_start")?;
            let heartbeat_at: i64 = row.try_get("heartbeat_at")?;
            let expires_at: i64 = row.try_get("expires_at")?;
            // On this machine the process table answers for sure (a writer
            // paused on a full disk may miss renewals and still be alive);
            // elsewhere only the expiry can.
            let dead = match (&machine, &here, pid) {
                (Some(machine), Some(here), Some(pid)) if machine == here => {
                    process_start_ticks(pid) != process_start
                }
                _ => expires_at < now,
            };
            if !dead {
                continue;
            }
            // Compare-and-set on the heartbeat: a writer that renewed meanwhile lives.
            let released = sqlx::query(
                "UPDATE writers SET released_at = $1 \
                 WHERE id = $2 AND released_at IS NULL AND heartbeat_at = $3",
            )
            .bind(now)
            .bind(&id)
            .bind(heartbeat_at)
            .execute(self.pool())
            .await?
            .rows_affected();
            if released == 1 {
                tracing::info!(writer = %id, "released the lease of a dead writer");
            }
        }
        Ok(
            sqlx::query_scalar("SELECT id FROM writers WHERE released_at IS NOT NULL")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Live leases (not released), for tests and operators.
    pub async fn live_writers(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM writers WHERE released_at IS NULL ORDER BY id")
                .fetch_all(self.pool())
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_an_unused_pid_is_not() {
        let me = ProcessIdentity::current().unwrap();
        assert_eq!(process_start_ticks(me.pid), Some(me.process_start));
        assert_eq!(process_start_ticks(i64::from(i32::MAX)), None);
    }

    #[tokio::test]
    async fn a_lease_released_by_recovery_is_replaced_on_renewal_and_never_revived() {
        let directory = tempfile::tempdir().unwrap();
        let catalog = Catalog::open_for_test(directory.path()).await;
        let lease = WriterLease::acquire(&catalog).await.unwrap();
        let first = lease.id();
        // Alive: this process runs on this machine and the lease is fresh.
        catalog.release_dead_writers().await.unwrap();
        assert_eq!(catalog.live_writers().await.unwrap(), vec![first.clone()]);

        // Expired: released, and a renewal takes a new id.
        sqlx::query("UPDATE writers SET expires_at = 0, machine = 'elsewhere'")
            .execute(catalog.pool())
            .await
            .unwrap();
        assert_eq!(
            catalog.release_dead_writers().await.unwrap(),
            vec![first.clone()]
        );
        lease.renew().await.unwrap();
        assert_ne!(lease.id(), first);
        assert_eq!(catalog.live_writers().await.unwrap(), vec![lease.id()]);

        // On this machine, a process that is gone (a SIGKILL) is dead at once,
        // long before its lease expires.
        let killed = WriterLease::acquire(&catalog).await.unwrap();
        sqlx::query("UPDATE writers SET pid = 2147483647 WHERE id = $1")
            .bind(killed.id())
            .execute(catalog.pool())
            .await
            .unwrap();
        assert!(catalog
            .release_dead_writers()
            .await
            .unwrap()
            .contains(&killed.id()));
        assert_eq!(catalog.live_writers().await.unwrap(), vec![lease.id()]);

        lease.release().await.unwrap();
        assert!(catalog.live_writers().await.unwrap().is_empty());
    }
}
