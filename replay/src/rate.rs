//! Pacing: limits in events/s and bytes/s, and "original pace × N".
//!
//! The limiter keeps a schedule rather than a bucket: every event moves the
//! earliest time of the next one by `1 / rate` (and `bytes / bytes_rate`).
//! The schedule may fall at most [`MAX_BURST`] behind the clock, so a pause
//! (a slow confirm, a paused replay) never turns into a burst, and the
//! average rate over any long window is the limit.

use std::time::Duration;

use tokio::time::Instant;

/// How far the schedule may lag the clock before it is reset.
pub const MAX_BURST: Duration = Duration::from_millis(100);

/// How fast a replay publishes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pace {
    /// Events per second.
    pub events_per_second: Option<f64>,
    /// Payload bytes per second.
    pub bytes_per_second: Option<f64>,
    /// Reproduce the gaps between consecutive events' `event_time`, divided
    /// by this factor (2.0: twice as fast).
    pub original_speed: Option<f64>,
}

#[derive(Debug)]
pub struct Limiter {
    pace: Pace,
    next: Option<Instant>,
    previous_send: Option<Instant>,
    previous_event_time: Option<i64>,
}

impl Limiter {
    pub fn new(pace: Pace) -> Self {
        Limiter {
            pace,
            next: None,
            previous_send: None,
            previous_event_time: None,
        }
    }

    /// Forgets the schedule, after a pause.
    pub fn reset(&mut self) {
        self.next = None;
        self.previous_send = None;
        self.previous_event_time = None;
    }

    /// How long to wait before sending an event of `bytes` with this
    /// `event_time`; books the event on the schedule.
    pub fn delay(&mut self, now: Instant, bytes: usize, event_time: i64) -> Duration {
        let mut step = Duration::ZERO;
        if let Some(rate) = self.pace.events_per_second.filter(|r| *r > 0.0) {
            step = step.max(Duration::from_secs_f64(1.0 / rate));
        }
        if let Some(rate) = self.pace.bytes_per_second.filter(|r| *r > 0.0) {
            step = step.max(Duration::from_secs_f64(bytes as f64 / rate));
        }
        // The original gap before this event, divided by the speed-up. Gaps
        // backwards in time (the next partition starts) are no gaps.
        let mut gap = Duration::ZERO;
        if let Some(speed) = self.pace.original_speed.filter(|s| *s > 0.0) {
            if let Some(previous) = self.previous_event_time {
                let seconds = (event_time - previous).max(0) as f64 / 1e6 / speed;
                gap = Duration::from_secs_f64(seconds.min(3600.0));
            }
            self.previous_event_time = Some(event_time);
        }
        let floor = now.checked_sub(MAX_BURST).unwrap_or(now);
        let earliest = match (self.next, self.previous_send) {
            // The first event goes at once.
            (None, _) | (_, None) => now,
            (Some(next), Some(previous_send)) => next.max(previous_send + gap).max(floor),
        };
        self.previous_send = Some(earliest);
        self.next = Some(earliest + step);
        earliest.saturating_duration_since(now)
    }

    pub fn is_limited(&self) -> bool {
        self.pace.events_per_second.is_some()
            || self.pace.bytes_per_second.is_some()
            || self.pace.original_speed.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates sending `count` events, each taking `work` of wall time.
    fn simulate(pace: Pace, count: usize, bytes: usize, work: Duration) -> Duration {
        let mut limiter = Limiter::new(pace);
        let start = Instant::now();
        let mut now = start;
        for index in 0..count {
            now += limiter.delay(now, bytes, index as i64 * 1_000_000);
            now += work;
        }
        now - start
    }

    #[test]
    fn event_rate_holds_on_average() {
        let pace = Pace {
            events_per_second: Some(2000.0),
            ..Default::default()
        };
        let elapsed = simulate(pace, 4001, 10, Duration::from_micros(50));
        let seconds = elapsed.as_secs_f64();
        assert!((1.99..2.02).contains(&seconds), "{seconds}");
    }

    #[test]
    fn byte_rate_and_event_rate_take_the_slower() {
        let pace = Pace {
            events_per_second: Some(1_000_000.0),
            bytes_per_second: Some(1_000_000.0),
            ..Default::default()
        };
        // 101 events of 10 kB at 1 MB/s: 100 gaps of 10 ms.
        let seconds = simulate(pace, 101, 10_000, Duration::ZERO).as_secs_f64();
        assert!((0.99..1.01).contains(&seconds), "{seconds}");
    }

    #[test]
    fn original_pace_divides_the_gaps() {
        let pace = Pace {
            original_speed: Some(4.0),
            ..Default::default()
        };
        // Events one second apart, four times as fast: 9 gaps of 250 ms.
        let seconds = simulate(pace, 10, 1, Duration::ZERO).as_secs_f64();
        assert!((2.24..2.26).contains(&seconds), "{seconds}");
    }

    #[test]
    fn a_stall_does_not_become_a_burst() {
        let mut limiter = Limiter::new(Pace {
            events_per_second: Some(100.0),
            ..Default::default()
        });
        let start = Instant::now();
        assert_eq!(limiter.delay(start, 1, 0), Duration::ZERO);
        // Two seconds of stall: at most MAX_BURST (10 events) go at once.
        let later = start + Duration::from_secs(2);
        let immediate = (0..50)
            .take_while(|_| limiter.delay(later, 1, 0) == Duration::ZERO)
            .count();
        assert!((10..=11).contains(&immediate), "{immediate}");
    }
}
