//! Running a replay in the foreground: status lines, the progress bar
//! (count, rate, ETA) on stderr, and the accounting printed at the end.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::bail;
use hindsight_archive::replays::ReplayStatus;

use hindsight_replay::{LiveProgress, ReplayRun, ReplayService, ReplayView};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A status line: on stdout, or on stderr when stdout holds JSON.
pub(super) fn status_line(json: bool, line: &str) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// What was skipped, and where a resume starts, as lines for people.
fn accounting_lines(view: &ReplayView) -> Vec<String> {
    let progress = &view.progress;
    let mut lines = Vec::new();
    if progress.oversized_skipped > 0 {
        lines.push(format!(
            "{} event(s) too large for the target skipped",
            progress.oversized_skipped
        ));
    }
    for event in &view.details.oversized {
        lines.push(format!(
            "  skipped event {} ({} bytes; {} accepts {})",
            event.event_id, event.size, event.destination, event.limit
        ));
    }
    if progress.damaged_segments_skipped > 0 {
        lines.push(format!(
            "{} damaged segment(s) skipped, {} rows",
            progress.damaged_segments_skipped, progress.damaged_rows_skipped
        ));
    }
    for segment in &view.details.damaged_segments {
        lines.push(format!(
            "  skipped segment {} ({} rows)",
            segment.uri, segment.rows
        ));
    }
    if view.status != ReplayStatus::Completed && view.status != ReplayStatus::Cancelled {
        let at = match &view.details.resume_at {
            Some(point) => {
                let mut at = format!(
                    "source {:?}, topic {:?}, partition {}",
                    point.source, point.topic, point.partition
                );
                if let Some(offset) = point.offset {
                    at.push_str(&format!(", offset {offset}"));
                }
                if let Some(event_id) = &point.event_id {
                    at.push_str(&format!(", event {event_id}"));
                }
                at
            }
            None if progress.position_group == 0 && progress.position_row == 0 => {
                "the beginning".to_owned()
            }
            None => "the end".to_owned(),
        };
        lines.push(format!(
            "{} published, {} refused; hindsight replay resume {} starts at {at}, \
             and may send {} event(s) a second time",
            progress.published, progress.failed, view.id, progress.resend_on_resume
        ));
    }
    lines
}

pub(super) async fn execute(
    service: &ReplayService,
    run: ReplayRun,
    cancel: CancellationToken,
    json: bool,
) -> anyhow::Result<()> {
    let id = run.id().to_owned();
    let (sender, receiver) = watch::channel(LiveProgress {
        planned: run.planned(),
        ..Default::default()
    });
    let started = Instant::now();
    let bar = tokio::spawn(progress_bar(receiver, started));
    let result = run.execute(cancel, Some(sender)).await;
    let _ = bar.await;
    let view: ReplayView = match result {
        Ok(view) => view,
        Err(error) => {
            // The record counts what the broker confirmed before the failure.
            if let Ok(view) = service.get(&id).await {
                if json {
                    println!("{}", serde_json::to_string_pretty(&view)?);
                }
                for line in accounting_lines(&view) {
                    eprintln!("{line}");
                }
            }
            return Err(error.into());
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    }
    for line in accounting_lines(&view) {
        status_line(json, &line);
    }
    let progress = view.progress;
    let seconds = started.elapsed().as_secs_f64().max(0.001);
    match view.status {
        ReplayStatus::Completed if progress.failed == 0 => {
            status_line(
                json,
                &format!(
                    "replay {id} completed: {} published, {} bytes, in {seconds:.1} s",
                    progress.published, progress.bytes
                ),
            );
            Ok(())
        }
        ReplayStatus::Completed => bail!(
            "replay {id} completed, but {} of {} events were not delivered: {}",
            progress.failed,
            progress.selected,
            view.error.as_deref().unwrap_or("see the log")
        ),
        ReplayStatus::Cancelled => {
            status_line(
                json,
                &format!("replay {id} cancelled after {} events", progress.published),
            );
            Ok(())
        }
        ReplayStatus::Interrupted => bail!(
            "replay {id} interrupted after {} events; continue it with: hindsight replay resume {id}",
            progress.published
        ),
        other => bail!("replay {id} ended as {}", other.as_str()),
    }
}

/// Count, rate and ETA on stderr: redrawn on a terminal, a line every 5 s otherwise.
async fn progress_bar(mut receiver: watch::Receiver<LiveProgress>, started: Instant) {
    let terminal = std::io::stderr().is_terminal();
    let interval = if terminal {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(5)
    };
    let mut first_published: Option<i64> = None;
    loop {
        let changed = tokio::time::timeout(interval, receiver.changed()).await;
        let live = *receiver.borrow();
        let done = matches!(changed, Ok(Err(_)))
            || live
                .status
                .is_some_and(|s| s != ReplayStatus::Running && s != ReplayStatus::Paused);
        let published = live.progress.published;
        let base = *first_published.get_or_insert(published);
        let elapsed = started.elapsed().as_secs_f64().max(0.001);
        let rate = (published - base) as f64 / elapsed;
        let remaining =
            (live.planned - live.progress.selected - live.progress.duplicates_skipped).max(0);
        let eta = if rate > 0.0 {
            format!("{:.0}s", remaining as f64 / rate)
        } else {
            "-".to_owned()
        };
        let fraction = if live.planned > 0 {
            (published as f64 / live.planned as f64).clamp(0.0, 1.0)
        } else {
            1.0
        };
        let filled = (fraction * 30.0) as usize;
        let paused = if live.status == Some(ReplayStatus::Paused) {
            " paused"
        } else {
            ""
        };
        let line = format!(
            "[{}{}] {published}/{} {rate:.0}/s ETA {eta}{paused}",
            "#".repeat(filled),
            ".".repeat(30 - filled),
            live.planned,
        );
        let mut stderr = std::io::stderr();
        if terminal {
            let _ = write!(stderr, "\r{line}\x1b[K");
            if done {
                let _ = writeln!(stderr);
            }
        } else if changed.is_err() || done {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
        if done {
            return;
        }
    }
}
