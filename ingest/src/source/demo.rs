//! A finite source that generates a realistic order flow: orders, payments
//! and shipments on several partitions, with keys, headers and correlation
//! ids, plus a few malformed, empty and non-UTF-8 payloads, as production
//! traffic has. It behaves like a Kafka source (positions are offsets), so
//! it exercises the same write path the real ingesters use.

use std::collections::HashMap;

use async_trait::async_trait;
use hindsight_archive::catalog::CheckpointAdvance;
use hindsight_archive::event::{event_id, now_micros};
use hindsight_archive::{Bus, Event, Header, Result};

use super::{BatchMark, Poll, Source};

/// Topic name and partition count.
pub const DEMO_TOPICS: [(&str, i32); 3] = [("orders", 3), ("payments", 3), ("shipments", 2)];

/// How the demo stream is shaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    pub source: String,
    pub events: u64,
    /// Event times spread over this many hours, ending now.
    pub span_hours: u32,
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            source: "demo".to_owned(),
            events: 200_000,
            span_hours: 6,
            seed: 42,
        }
    }
}

/// SplitMix64: small, fast, and the same stream for the same seed everywhere.
#[derive(Debug, Clone)]
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn chance(&mut self, per_thousand: u64) -> bool {
        self.below(1000) < per_thousand
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const CUSTOMERS: u64 = 5_000;
const PRODUCTS: [&str; 8] = [
    "espresso-beans",
    "grinder",
    "kettle",
    "filter-papers",
    "mug",
    "scale",
    "dripper",
    "tamper",
];
const CURRENCIES: [&str; 3] = ["EUR", "USD", "GBP"];
const CARRIERS: [&str; 4] = ["dhl", "ups", "postnl", "dpd"];
const COUNTRIES: [&str; 6] = ["NL", "DE", "FR", "GB", "US", "ES"];

/// The demo stream. Offsets continue from the catalog checkpoints, so running
/// the demo again appends to the archive instead of rewriting it.
pub struct DemoSource {
    config: DemoConfig,
    random: Random,
    next_offsets: HashMap<(String, i32), i64>,
    produced: u64,
    start_time: i64,
    step_micros: i64,
    pending: Vec<Event>,
    order_number: u64,
}

impl DemoSource {
    pub fn new(config: DemoConfig, next_offsets: HashMap<(String, i32), i64>) -> Self {
        let now = now_micros();
        let span = i64::from(config.span_hours.max(1)) * 3_600_000_000;
        let step_micros = (span / config.events.max(1) as i64).max(1);
        DemoSource {
            random: Random(config.seed),
            start_time: now - span,
            step_micros,
            next_offsets,
            produced: 0,
            pending: Vec::new(),
            order_number: 0,
            config,
        }
    }

    fn event_time(&mut self) -> i64 {
        let jitter = self.random.below(self.step_micros as u64) as i64;
        self.start_time + self.produced as i64 * self.step_micros + jitter
    }

    fn emit(&mut self, topic: &str, partitions: i32, key: &str, event: DemoEvent) {
        let partition = (fnv1a(key.as_bytes()) % partitions as u64) as i32;
        let next = self
            .next_offsets
            .entry((topic.to_owned(), partition))
            .or_insert(0);
        let offset = *next;
        *next += 1;
        let event_time = self.event_time();
        self.produced += 1;
        let mut payload = event.payload.into_bytes();
        // A few broken producers, as in any real system.
        let roll = self.random.below(1000);
        let content_type = if roll < 3 {
            payload.truncate(payload.len() / 2); // malformed JSON
            "application/json"
        } else if roll < 5 {
            payload = vec![0xc3, 0x28, 0xff, 0xfe, 0x00, 0x9f]; // not UTF-8
            "application/octet-stream"
        } else if roll < 6 {
            payload.clear(); // empty payload
            "application/json"
        } else {
            "application/json"
        };
        let mut headers = vec![
            Header::new("content-type", content_type),
            Header::new("event-type", event.event_type),
            Header::new(
                "traceparent",
                format!(
                    "00-{:032x}-{:016x}-01",
                    self.random.next(),
                    self.random.next()
                ),
            ),
            Header::new("producer", event.producer),
        ];
        if self.random.chance(20) {
            // Repeated header names happen (retries append, proxies add).
            headers.push(Header::new("x-retry", "1"));
            headers.push(Header::new("x-retry", "2"));
        }
        if self.random.chance(10) {
            headers.push(Header {
                name: "x-null-header".to_owned(),
                value: None,
            });
        }
        let message_id = format!("{:016x}", self.random.next());
        self.pending.push(Event {
            event_id: event_id::kafka(&self.config.source, topic, partition, offset),
            source: self.config.source.clone(),
            bus: Bus::Kafka,
            topic: topic.to_owned(),
            routing_key: None,
            partition: Some(partition),
            offset: Some(offset),
            key: Some(key.as_bytes().to_vec()),
            headers,
            payload_size: payload.len() as i64,
            payload: Some(payload),
            payload_truncated: false,
            content_type: Some(content_type.to_owned()),
            message_id: Some(message_id),
            correlation_id: Some(event.correlation_id),
            timestamp_type: Some("create_time".to_owned()),
            amqp: Default::default(),
            redelivered: None,
            event_time,
            ingest_time: now_micros(),
        });
    }

    /// One order's flow: created, then paid (or declined), then shipped.
    fn generate_order(&mut self) {
        self.order_number += 1;
        let order_id = format!(
            "ord-{:08}",
            self.order_number + self.config.seed % 1000 * 100_000_000
        );
        let customer = format!("cust-{:05}", self.random.below(CUSTOMERS));
        let product = self.random.pick(&PRODUCTS);
        let quantity = 1 + self.random.below(4);
        let cents = 500 + self.random.below(20_000);
        let currency = self.random.pick(&CURRENCIES);
        let country = self.random.pick(&COUNTRIES);
        let amount = format!("{}.{:02}", cents / 100, cents % 100);
        self.emit(
            "orders",
            DEMO_TOPICS[0].1,
            &customer,
            DemoEvent {
                event_type: "order.created",
                producer: "checkout-service",
                correlation_id: order_id.clone(),
                payload: format!(
                    r#"{{"type":"order.created","order_id":"{order_id}","customer":"{customer}","country":"{country}","items":[{{"sku":"{product}","quantity":{quantity}}}],"total":{amount},"currency":"{currency}"}}"#
                ),
            },
        );
        let declined = self.random.chance(40);
        let status = if declined { "declined" } else { "authorized" };
        let psp_reference = self.random.next() >> 16;
        self.emit(
            "payments",
            DEMO_TOPICS[1].1,
            &order_id,
            DemoEvent {
                event_type: if declined { "payment.declined" } else { "payment.authorized" },
                producer: "payment-service",
                correlation_id: order_id.clone(),
                payload: format!(
                    r#"{{"type":"payment.{status}","order_id":"{order_id}","customer":"{customer}","amount":{amount},"currency":"{currency}","psp_reference":"psp-{psp_reference:012x}"}}"#
                ),
            },
        );
        if !declined {
            let carrier = self.random.pick(&CARRIERS);
            let tracking = self.random.below(10_000_000_000);
            self.emit(
                "shipments",
                DEMO_TOPICS[2].1,
                &order_id,
                DemoEvent {
                    event_type: "shipment.dispatched",
                    producer: "warehouse-service",
                    correlation_id: order_id.clone(),
                    payload: format!(
                        r#"{{"type":"shipment.dispatched","order_id":"{order_id}","carrier":"{carrier}","country":"{country}","tracking":"{carrier}-{tracking:010}"}}"#
                    ),
                },
            );
        }
    }
}

struct DemoEvent {
    event_type: &'static str,
    producer: &'static str,
    correlation_id: String,
    payload: String,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[async_trait]
impl Source for DemoSource {
    fn name(&self) -> &str {
        &self.config.source
    }

    fn bus(&self) -> Bus {
        Bus::Kafka
    }

    async fn poll(&mut self, max_events: usize) -> Result<Poll> {
        if self.produced >= self.config.events && self.pending.is_empty() {
            return Ok(Poll::Finished);
        }
        while self.pending.len() < max_events && self.produced < self.config.events {
            self.generate_order();
        }
        // An order yields up to three events; never go past the requested total.
        let total_allowed = self.config.events as usize;
        let overshoot = (self.produced as usize).saturating_sub(total_allowed);
        if overshoot > 0 {
            let dropped: Vec<Event> = self
                .pending
                .drain(self.pending.len() - overshoot..)
                .collect();
            // Newest first, so each partition ends at its earliest dropped offset.
            for event in dropped.into_iter().rev() {
                if let (Some(partition), Some(offset)) = (event.partition, event.offset) {
                    self.next_offsets.insert((event.topic, partition), offset);
                }
            }
            self.produced = self.config.events;
        }
        let take = self.pending.len().min(max_events);
        let events: Vec<Event> = self.pending.drain(..take).collect();
        tokio::task::yield_now().await;
        Ok(Poll::Events(events))
    }

    async fn acknowledge(
        &mut self,
        _committed: &[CheckpointAdvance],
        _mark: BatchMark,
    ) -> Result<()> {
        // Generated events need no broker acknowledgement.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn produces_exactly_the_requested_count_with_dense_offsets() {
        let mut source = DemoSource::new(
            DemoConfig {
                events: 1001,
                ..DemoConfig::default()
            },
            HashMap::new(),
        );
        let mut events = Vec::new();
        loop {
            match source.poll(100).await.unwrap() {
                Poll::Events(batch) => events.extend(batch),
                Poll::Idle | Poll::Revoked(_) => {}
                Poll::Finished => break,
            }
        }
        assert_eq!(events.len(), 1001);
        let mut per_partition: HashMap<(String, i32), Vec<i64>> = HashMap::new();
        for event in &events {
            per_partition
                .entry((event.topic.clone(), event.partition.unwrap()))
                .or_default()
                .push(event.offset.unwrap());
        }
        for offsets in per_partition.values() {
            let expected: Vec<i64> = (0..offsets.len() as i64).collect();
            assert_eq!(offsets, &expected, "offsets must be dense from 0");
        }
        assert!(events
            .iter()
            .any(|e| std::str::from_utf8(e.payload_bytes()).is_err()));
        assert!(events
            .iter()
            .any(|e| e.payload.as_ref().is_some_and(Vec::is_empty)));
        let ids: std::collections::HashSet<_> = events.iter().map(|e| &e.event_id).collect();
        assert_eq!(ids.len(), events.len());
    }
}
