//! Batching: events from a source accumulate per (topic, partition) until
//! the flush policy (rows, bytes or age) says to write them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hindsight_archive::writer::Batch;
use hindsight_archive::{Event, Header};

/// When a batch is flushed: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            max_rows: 100_000,
            max_bytes: 64 * 1024 * 1024,
            max_age: Duration::from_secs(10),
        }
    }
}

/// Accumulates events until the flush policy says to write them.
#[derive(Debug)]
pub struct Batcher {
    source: String,
    policy: FlushPolicy,
    partitions: BTreeMap<(String, i32), Vec<Event>>,
    rows: usize,
    bytes: usize,
    first_event_at: Option<Instant>,
}

impl Batcher {
    pub fn new(source: impl Into<String>, policy: FlushPolicy) -> Self {
        Batcher {
            source: source.into(),
            policy,
            partitions: BTreeMap::new(),
            rows: 0,
            bytes: 0,
            first_event_at: None,
        }
    }

    pub fn push(&mut self, event: Event) {
        self.rows += 1;
        self.bytes += approximate_size(&event);
        self.first_event_at.get_or_insert_with(Instant::now);
        let partition = event.partition.unwrap_or_default();
        self.partitions
            .entry((event.topic.clone(), partition))
            .or_default()
            .push(event);
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// True when a limit is reached.
    pub fn is_full(&self) -> bool {
        self.rows >= self.policy.max_rows || self.bytes >= self.policy.max_bytes
    }

    /// How long until the age limit forces a flush; `None` when empty.
    pub fn time_until_due(&self) -> Option<Duration> {
        self.first_event_at
            .map(|first| self.policy.max_age.saturating_sub(first.elapsed()))
    }

    /// True when any limit, including age, is reached.
    pub fn is_due(&self) -> bool {
        self.is_full() || self.time_until_due() == Some(Duration::ZERO)
    }

    /// Drops the buffered events of one partition (it was revoked).
    pub fn discard(&mut self, topic: &str, partition: i32) -> usize {
        let Some(events) = self.partitions.remove(&(topic.to_owned(), partition)) else {
            return 0;
        };
        self.rows -= events.len();
        self.bytes -= events.iter().map(approximate_size).sum::<usize>();
        if self.rows == 0 {
            self.first_event_at = None;
        }
        events.len()
    }

    /// Takes everything buffered, leaving the batcher empty.
    pub fn take(&mut self) -> Batch {
        self.rows = 0;
        self.bytes = 0;
        self.first_event_at = None;
        Batch::from_partitions(&self.source, std::mem::take(&mut self.partitions))
    }
}

/// The bytes an event holds in memory: the struct itself, and every heap
/// buffer with the allocator's overhead. `flush.max_bytes` bounds the sum, so
/// this must not undercount: counting payloads and keys alone let a 64 MiB
/// batch of 500-byte events hold about 3 times that (scripts/bench, P8).
pub fn approximate_size(event: &Event) -> usize {
    /// What malloc adds to each allocation, roughly (header and rounding).
    const ALLOCATION: usize = 16;
    fn buffer(length: usize) -> usize {
        if length == 0 {
            0
        } else {
            length + ALLOCATION
        }
    }
    fn text(value: &Option<String>) -> usize {
        value.as_ref().map_or(0, |v| buffer(v.len()))
    }
    let headers: usize = event
        .headers
        .iter()
        .map(|h| {
            std::mem::size_of::<Header>()
                + buffer(h.name.len())
                + h.value.as_ref().map_or(0, |v| buffer(v.len()))
        })
        .sum::<usize>()
        + ALLOCATION;
    let amqp = &event.amqp;
    let amqp_texts = [
        &amqp.content_encoding,
        &amqp.expiration,
        &amqp.reply_to,
        &amqp.message_type,
        &amqp.app_id,
        &amqp.user_id,
        &amqp.headers_table,
        &amqp.exchange,
    ]
    .into_iter()
    .map(text)
    .sum::<usize>();
    let texts = [
        &event.routing_key,
        &event.content_type,
        &event.message_id,
        &event.correlation_id,
        &event.timestamp_type,
    ]
    .into_iter()
    .map(text)
    .sum::<usize>();
    std::mem::size_of::<Event>()
        + buffer(event.event_id.len())
        + buffer(event.source.len())
        + buffer(event.topic.len())
        + event.payload.as_ref().map_or(0, |p| buffer(p.len()))
        + event.key.as_ref().map_or(0, |k| buffer(k.len()))
        + headers
        + texts
        + amqp_texts
}

#[cfg(test)]
mod tests {
    use super::*;
    use hindsight_archive::event::event_id;

    fn event(topic: &str, partition: i32, offset: i64, event_time: i64) -> Event {
        Event {
            event_id: event_id::kafka("s", topic, partition, offset),
            topic: topic.into(),
            partition: Some(partition),
            offset: Some(offset),
            payload: Some(vec![1, 2, 3]),
            event_time,
            ..Event::default()
        }
    }

    #[test]
    fn approximate_size_counts_the_struct_and_its_buffers() {
        let mut large = event("t", 0, 0, 0);
        large.payload = Some(vec![b'x'; 500]);
        let size = approximate_size(&large);
        assert!(size >= 500 + std::mem::size_of::<Event>(), "{size}");
        assert_eq!(size - approximate_size(&event("t", 0, 0, 0)), 500 - 3);
    }

    #[test]
    fn batcher_flushes_on_rows_bytes_and_age() {
        let policy = FlushPolicy {
            max_rows: 3,
            max_bytes: usize::MAX,
            max_age: Duration::from_secs(3600),
        };
        let mut batcher = Batcher::new("s", policy);
        assert_eq!(batcher.time_until_due(), None);
        for offset in 0..3 {
            assert!(!batcher.is_due());
            batcher.push(event("t", (offset % 2) as i32, offset, 0));
        }
        assert!(batcher.is_due());
        let batch = batcher.take();
        assert_eq!(batch.rows(), 3);
        assert_eq!(batch.partitions.len(), 2);
        assert!(batcher.is_empty());

        let mut by_bytes = Batcher::new(
            "s",
            FlushPolicy {
                max_bytes: 10,
                ..policy
            },
        );
        by_bytes.push(event("t", 0, 0, 0));
        assert!(by_bytes.is_full());

        let mut by_age = Batcher::new(
            "s",
            FlushPolicy {
                max_age: Duration::ZERO,
                ..policy
            },
        );
        by_age.push(event("t", 0, 0, 0));
        assert!(by_age.is_due());
    }
}
