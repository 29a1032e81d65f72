//! Supervision of the replays a server runs in the background.
//!
//! Every replay started or resumed over HTTP runs as a tracked task (a
//! count in a `watch` channel, like tokio-util's `TaskTracker`, whose `rt`
//! feature would rebuild DataFusion), under a child of the process's
//! shutdown token. On
//! shutdown the token fires: each replay stops at its next window boundary,
//! once its windows in flight are confirmed and checkpointed, and records
//! itself `interrupted`; [`Supervisor::shutdown`] waits for that. An
//! interrupted replay resumes with `POST /api/v1/replays/{id}/resume`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hindsight_replay::ReplayRun;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The background replays of one server.
#[derive(Debug, Clone)]
pub struct Supervisor {
    running: Arc<watch::Sender<usize>>,
    ids: Arc<Mutex<HashSet<String>>>,
    cancel: CancellationToken,
}

/// Counts a replay as running until it is dropped (finished or panicked).
struct Running {
    count: Arc<watch::Sender<usize>>,
    ids: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Running {
    fn start(supervisor: &Supervisor, id: &str) -> Self {
        supervisor.running.send_modify(|count| *count += 1);
        lock(&supervisor.ids).insert(id.to_owned());
        Running {
            count: Arc::clone(&supervisor.running),
            ids: Arc::clone(&supervisor.ids),
            id: id.to_owned(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.ids).remove(&self.id);
        self.count.send_modify(|count| *count -= 1);
    }
}

/// The set, even if a holder panicked (it only ever inserts or removes).
fn lock(ids: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    ids.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Supervisor {
    /// Replays stop when `shutdown` fires.
    pub fn new(shutdown: &CancellationToken) -> Self {
        Supervisor {
            running: Arc::new(watch::channel(0).0),
            ids: Arc::default(),
            cancel: shutdown.child_token(),
        }
    }

    /// Runs `run` in the background until it ends or the server shuts down.
    pub fn spawn(&self, run: ReplayRun) {
        let span = tracing::info_span!("replay", id = %run.id());
        let cancel = self.cancel.clone();
        let running = Running::start(self, run.id());
        tokio::spawn(
            async move {
                let _running = running;
                // The runner logs and records its own failure.
                let _ = run.execute(cancel, None).await;
            }
            .instrument(span),
        );
    }

    /// True when this server runs the replay `id` now.
    pub fn runs(&self, id: &str) -> bool {
        lock(&self.ids).contains(id)
    }

    /// Replays running now.
    pub fn running(&self) -> usize {
        *self.running.borrow()
    }

    /// Stops every replay at a checkpoint and waits up to `grace` for them
    /// to record where they stopped. Returns false when some did not finish
    /// in time (they resume from their last checkpoint all the same).
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.cancel.cancel();
        let mut idle = self.running.subscribe();
        let finished = tokio::time::timeout(grace, idle.wait_for(|count| *count == 0))
            .await
            .is_ok();
        finished
    }
}
