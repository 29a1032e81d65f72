//! Supervision of the replays a server runs in the background.
//!
//! Every replay started or resumed over HTTP runs as a tracked task (its id
//! in a `watch` channel's set, like tokio-util's `TaskTracker`, whose `rt`
//! feature would rebuild DataFusion), under a child of the process's
//! shutdown token. On shutdown the token fires: each replay stops at its
//! next window boundary, once its windows in flight are confirmed and
//! checkpointed, and records itself `interrupted`; [`Supervisor::shutdown`]
//! waits for that. An interrupted replay resumes with
//! `POST /api/v1/replays/{id}/resume`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hindsight_replay::ReplayRun;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The background replays of one server.
#[derive(Debug, Clone)]
pub struct Supervisor {
    /// The ids of the replays running now.
    running: Arc<watch::Sender<HashSet<String>>>,
    cancel: CancellationToken,
}

/// Holds a replay's id in the running set until it is dropped (the replay
/// finished or panicked).
struct Running {
    set: Arc<watch::Sender<HashSet<String>>>,
    id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.set.send_modify(|ids| {
            ids.remove(&self.id);
        });
    }
}

impl Supervisor {
    /// Replays stop when `shutdown` fires.
    pub fn new(shutdown: &CancellationToken) -> Self {
        Supervisor {
            running: Arc::new(watch::channel(HashSet::new()).0),
            cancel: shutdown.child_token(),
        }
    }

    /// Runs `run` in the background until it ends or the server shuts down.
    pub fn spawn(&self, run: ReplayRun) {
        let span = tracing::info_span!("replay", id = %run.id());
        let cancel = self.cancel.clone();
        self.running.send_modify(|ids| {
            ids.insert(run.id().to_owned());
        });
        let running = Running {
            set: Arc::clone(&self.running),
            id: run.id().to_owned(),
        };
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
        self.running.borrow().contains(id)
    }

    /// Replays running now.
    pub fn running(&self) -> usize {
        self.running.borrow().len()
    }

    /// Stops every replay at a checkpoint and waits up to `grace` for them
    /// to record where they stopped. Returns false when some did not finish
    /// in time (they resume from their last checkpoint all the same).
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.cancel.cancel();
        let mut idle = self.running.subscribe();
        let finished = tokio::time::timeout(grace, idle.wait_for(HashSet::is_empty))
            .await
            .is_ok();
        finished
    }
}
