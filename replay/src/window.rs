//! The window protocol: a window of sends is sealed, confirmed by the
//! broker and checkpointed in the catalog, in order, while the next window
//! is read and sent.

use std::sync::Arc;

use hindsight_archive::catalog::Catalog;
use hindsight_archive::replays::{
    ReplayDetails, ReplayProgress, ReplayRequest, ReplayStatus, ResumePoint,
};
use hindsight_archive::store::ArchiveStore;
use hindsight_archive::{Bus, Event};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use hindsight_query::{Error, Result};

use crate::selection::{LoadedGroup, SegmentGroup};

/// The window being sent.
pub(crate) struct Window {
    pub(crate) sent: usize,
    pub(crate) opened: Instant,
}

impl Window {
    pub(crate) fn open() -> Self {
        Window {
            sent: 0,
            opened: Instant::now(),
        }
    }
}

/// What a checkpoint recorded, and what the user asked for at that moment.
pub(crate) struct Checkpointed {
    pub(crate) progress: ReplayProgress,
    pub(crate) details: ReplayDetails,
    pub(crate) request: ReplayRequest,
}

/// The sending side of a run. `sent` and `details` run ahead of the
/// checkpoints: they count what was sent or skipped, while the run's
/// `progress` is what the last checkpoint recorded. `sealed` is the one
/// window whose confirms and checkpoint may still be pending while `window`
/// is sent. `position` is the row being handled: everything before it was
/// sent or skipped.
pub(crate) struct Pipeline {
    pub(crate) window: Window,
    pub(crate) sent: ReplayProgress,
    pub(crate) details: ReplayDetails,
    pub(crate) sealed: Option<JoinHandle<Result<Checkpointed>>>,
    pub(crate) position: (i64, i64),
    /// The group being sent, for describing positions inside it.
    pub(crate) current: Option<(usize, Arc<Vec<Event>>)>,
    /// A window's confirms ended in an error: its events' fate is unknown.
    pub(crate) confirms_lost: bool,
}

impl Pipeline {
    /// Events handed to the publisher so far (skipped ones are not).
    pub(crate) fn handed_over(progress: &ReplayProgress) -> i64 {
        progress.selected - progress.oversized_skipped
    }
}

/// Records `status` and `progress` under the run's lease (`owner`); returns
/// what the user asks for now (run, pause or cancel).
pub(crate) async fn record_progress(
    catalog: &Catalog,
    id: &str,
    owner: &str,
    status: ReplayStatus,
    progress: &ReplayProgress,
    details: &ReplayDetails,
) -> Result<ReplayRequest> {
    catalog
        .checkpoint_replay(id, owner, status, progress, details, None)
        .await
        .map_err(Error::from)
}

/// Reads the plan's groups from `first` on, ahead of the sender, through a
/// channel of one: the sender publishes one group while the next is read and
/// decoded, so at most two groups are in memory. Stops at the first error,
/// which it passes on, or when the receiver is dropped.
pub(crate) fn read_ahead(
    store: ArchiveStore,
    groups: Vec<SegmentGroup>,
    first: usize,
    skip_damaged: bool,
) -> mpsc::Receiver<(usize, Result<LoadedGroup>)> {
    let (sender, receiver) = mpsc::channel(1);
    let span = tracing::info_span!("replay_read_ahead");
    tokio::spawn(
        async move {
            for (index, group) in groups.iter().enumerate().skip(first) {
                // Wait for the slot before reading, so that a read group
                // never waits in memory for one.
                let Ok(slot) = sender.reserve().await else {
                    return;
                };
                let loaded = group.load_with(&store, skip_damaged).await;
                let failed = loaded.is_err();
                slot.send((index, loaded));
                if failed {
                    return;
                }
            }
        }
        .instrument(span),
    );
    receiver
}

/// Where a resume at `position` starts: the event there when it is in
/// `current`, else the start of the group there; `None` past the end.
pub(crate) fn resume_point(
    groups: &[SegmentGroup],
    current: Option<&(usize, Arc<Vec<Event>>)>,
    position: (i64, i64),
) -> Option<ResumePoint> {
    let group_index = usize::try_from(position.0).ok()?;
    let row = usize::try_from(position.1).unwrap_or(0);
    if let Some((current_index, events)) = current {
        if *current_index == group_index {
            if let Some(event) = events.get(row) {
                return Some(ResumePoint {
                    source: event.source.clone(),
                    topic: event.topic.clone(),
                    partition: event.partition.unwrap_or(0),
                    offset: event.offset,
                    event_id: Some(event.event_id.clone()),
                });
            }
            return resume_point(groups, None, (position.0 + 1, 0));
        }
    }
    let group = groups.get(group_index)?;
    Some(ResumePoint {
        source: group.source.clone(),
        topic: group.topic.clone(),
        partition: group.partition,
        offset: match group.bus {
            Bus::Kafka => group
                .segments
                .first()
                .map(|record| record.segment.first_offset),
            Bus::Amqp => None,
        },
        event_id: None,
    })
}
