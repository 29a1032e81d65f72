//! What the benchmark baselines (`scripts/bench`) share: the record file
//! format and the one-line JSON report.
// Each example uses only part of this module.
#![allow(dead_code)]

use std::io::BufRead;
use std::time::Duration;

/// One record of a benchmark data file: `KEY<TAB>EVENT_TYPE<TAB>PAYLOAD`.
pub struct Record {
    pub key: String,
    pub event_type: String,
    pub payload: String,
}

pub fn read_records(path: &str) -> std::io::Result<Vec<Record>> {
    std::io::BufReader::new(std::fs::File::open(path)?)
        .lines()
        .map(|line| {
            let line = line?;
            let mut fields = line.splitn(3, '\t');
            let mut next = || fields.next().unwrap_or_default().to_owned();
            Ok(Record {
                key: next(),
                event_type: next(),
                payload: next(),
            })
        })
        .collect()
}

/// The optional trailing TIMEOUT_SECONDS argument, 600 by default.
pub fn timeout(rest: &[String]) -> Result<Duration, std::num::ParseIntError> {
    Ok(Duration::from_secs(
        rest.first().map_or(Ok(600), |t| t.parse())?,
    ))
}

pub fn report(events: u64, bytes: u64, seconds: f64) {
    println!(
        "{{\"events\":{events},\"bytes\":{bytes},\"seconds\":{seconds:.3},\"events_per_second\":{:.0}}}",
        events as f64 / seconds
    );
}

/// Extra librdkafka properties from `BENCH_KAFKA_CLIENT` (`name=value`
/// pairs separated by `;`), for the TLS and SASL rows.
pub fn with_client_properties(
    config: &mut rdkafka::config::ClientConfig,
) -> Result<(), Box<dyn std::error::Error>> {
    let Ok(pairs) = std::env::var("BENCH_KAFKA_CLIENT") else {
        return Ok(());
    };
    for pair in pairs.split(';').filter(|pair| !pair.trim().is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("BENCH_KAFKA_CLIENT: {pair:?} is not name=value"))?;
        config.set(name.trim(), value.trim());
    }
    Ok(())
}
