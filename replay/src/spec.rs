//! A replay request: what (the selection), where (the target) and how
//! (options: rate, windows, headers, loop and size policies).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use hindsight_query::{Error, Result};

use crate::publisher::{HeaderRules, Target};
use crate::rate::Pace;
use crate::selection::Selection;

/// The longest a window stays open before it is sealed and checkpointed.
pub const WINDOW_TIME: Duration = Duration::from_secs(1);
/// How often a paused replay looks for a resume or cancel.
pub(crate) const PAUSE_POLL: Duration = Duration::from_millis(500);

fn default_true() -> bool {
    true
}

fn default_window() -> usize {
    10_000
}

fn default_sample() -> usize {
    5
}

/// How a replay runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayOptions {
    /// Events per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Payload bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_rate: Option<f64>,
    /// Reproduce the original gaps between events, N times as fast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace: Option<f64>,
    /// Add the `hindsight-*` provenance headers (on by default).
    #[serde(default = "default_true")]
    pub provenance: bool,
    /// Header names to remove; a trailing `*` matches a prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strip_headers: Vec<String>,
    /// `name=value` headers to set (replacing any of that name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_headers: Vec<String>,
    /// Publish into topics or exchanges that this Hindsight archives.
    #[serde(default)]
    pub allow_loop: bool,
    /// Skip later copies of a RabbitMQ message (redeliveries), like `events_dedup`.
    #[serde(default = "default_true")]
    pub dedup: bool,
    /// Events per window: seal, then checkpoint once confirmed.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Events a dry-run shows.
    #[serde(default = "default_sample")]
    pub sample: usize,
    /// An event larger than its target accepts: stop the replay before it
    /// (the default), or skip it and list it in the record.
    #[serde(default)]
    pub oversized: OversizedPolicy,
    /// Leave out segments that cannot be read, and list them in the record,
    /// instead of failing the replay.
    #[serde(default)]
    pub skip_damaged: bool,
}

/// What a replay does with an event larger than its target accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OversizedPolicy {
    /// Fail the replay before the event; everything before it is published.
    #[default]
    Stop,
    /// Leave it out, count it and list it.
    Skip,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            rate: None,
            bytes_rate: None,
            pace: None,
            provenance: true,
            strip_headers: Vec::new(),
            set_headers: Vec::new(),
            allow_loop: false,
            dedup: true,
            window: default_window(),
            sample: default_sample(),
            oversized: OversizedPolicy::Stop,
            skip_damaged: false,
        }
    }
}

impl ReplayOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("rate", self.rate),
            ("bytes_rate", self.bytes_rate),
            ("pace", self.pace),
        ] {
            if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return Err(Error::invalid_input(format!(
                    "{name} must be a positive number"
                )));
            }
        }
        if self.window == 0 {
            return Err(Error::invalid_input("window must be at least 1 event"));
        }
        self.header_rules(None).map(|_| ())
    }

    pub(crate) fn pace(&self) -> Pace {
        Pace {
            events_per_second: self.rate,
            bytes_per_second: self.bytes_rate,
            original_speed: self.pace,
        }
    }

    pub(crate) fn header_rules(&self, replay_id: Option<&str>) -> Result<HeaderRules> {
        let set = self
            .set_headers
            .iter()
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
                _ => Err(Error::invalid_input(format!(
                    "set header {pair:?} must be name=value"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(HeaderRules {
            strip: self.strip_headers.clone(),
            set,
            provenance: if self.provenance {
                replay_id.map(str::to_owned)
            } else {
                None
            },
        })
    }
}

/// A whole replay request: what, where, how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySpec {
    pub selection: Selection,
    pub target: Target,
    #[serde(default)]
    pub options: ReplayOptions,
}
