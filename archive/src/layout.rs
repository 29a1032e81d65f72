//! How objects are named and laid out. Only this module builds object keys.
//!
//! Segments are laid out Hive-style under a root of their own, so that
//! DuckDB, pyarrow, polars and Spark read `<store>/segments` as a dataset as
//! it is (the SQLite catalog and the staging directory stay outside it):
//!
//! ```text
//! segments/source=<source>/topic=<topic>/date=YYYY-MM-DD/hour=H/<partition>-<first>-<last>-<unique>.parquet
//! ```
//!
//! The hour is not zero-padded: readers infer partition types from the
//! values, and DuckDB types `hour=00` as text but `hour=21` as a number, so
//! one archive read as BIGINT and another as VARCHAR. `hour=0` to `hour=23`
//! read as integers everywhere.
//!
//! Archives written before the `segments/` root hold keys that start at
//! `source=` with a padded hour. Catalog rows store whole keys, so those keep
//! working; nothing moves them.
//!
//! Keys are built only from [`NamePart`]s. A name part percent-encodes every
//! byte outside `[A-Za-z0-9._-]`, and a leading `.` or `_` (which Hive readers
//! treat as hidden), so user data can never inject a separator, `..`, or a
//! hidden file. Kafka topic names are always in the safe set and so appear
//! unchanged.

use std::fmt;

use chrono::{DateTime, Timelike, Utc};
use object_store::path::Path;

use crate::error::{Error, Result};

/// The directory, under the store root, that holds every segment.
pub const SEGMENTS_ROOT: &str = "segments";

/// Every segment key starts with this: the root, then the first Hive level.
pub const SEGMENT_KEY_PREFIX: &str = "segments/source=";

/// Segment keys written before the `segments/` root start with this.
pub const LEGACY_SEGMENT_KEY_PREFIX: &str = "source=";

/// Whether an object key names a segment (of either layout).
pub fn is_segment_key(key: &str) -> bool {
    key.starts_with(SEGMENT_KEY_PREFIX) || key.starts_with(LEGACY_SEGMENT_KEY_PREFIX)
}

/// The longest name (source, topic or exchange) accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// A validated, encoded path component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamePart(String);

impl NamePart {
    /// Encodes a raw name (a topic, an exchange) into a safe path component.
    pub fn encode(what: &str, raw: &str) -> Result<NamePart> {
        if raw.is_empty() {
            return Err(Error::invalid_input(format!("{what} name is empty")));
        }
        if raw.len() > MAX_NAME_BYTES {
            return Err(Error::invalid_input(format!(
                "{what} name is longer than {MAX_NAME_BYTES} bytes"
            )));
        }
        let mut encoded = String::with_capacity(raw.len());
        for (index, byte) in raw.bytes().enumerate() {
            let hidden_prefix = index == 0 && (byte == b'.' || byte == b'_');
            if is_safe_byte(byte) && !hidden_prefix {
                encoded.push(char::from(byte));
            } else {
                encoded.push_str(&format!("%{byte:02X}"));
            }
        }
        Ok(NamePart(encoded))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The raw name back from an encoded component.
    pub fn decode(encoded: &str) -> Result<String> {
        let bytes = encoded.as_bytes();
        let mut raw = Vec::with_capacity(bytes.len());
        let mut index = 0;
        while index < bytes.len() {
            if bytes[index] == b'%' {
                let hex = encoded
                    .get(index + 1..index + 3)
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| {
                        Error::invalid_input(format!("bad escape in path component {encoded:?}"))
                    })?;
                raw.push(hex);
                index += 3;
            } else {
                raw.push(bytes[index]);
                index += 1;
            }
        }
        String::from_utf8(raw)
            .map_err(|_| Error::invalid_input(format!("path component {encoded:?} is not utf-8")))
    }
}

impl fmt::Display for NamePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_safe_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-')
}

/// Validates a configured name (a source name): 1 to 128 bytes of
/// `[A-Za-z0-9._-]`, not starting with `.` or `_`. Configured names are
/// strict so that they read the same everywhere: paths, SQL, metrics.
pub fn validate_source_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err("must be 1 to 128 characters long".to_owned());
    }
    if !name.bytes().all(is_safe_byte) {
        return Err("may only contain letters, digits, '.', '_' and '-'".to_owned());
    }
    if name.starts_with('.') || name.starts_with('_') {
        return Err("must not start with '.' or '_'".to_owned());
    }
    Ok(())
}

/// Where one segment goes: everything its key is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentLocation {
    pub source: NamePart,
    pub topic: NamePart,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// Any instant inside the hour the segment belongs to, microseconds UTC.
    pub hour_micros: i64,
}

/// The start of the UTC hour containing `micros`.
pub fn hour_start(micros: i64) -> i64 {
    const HOUR: i64 = 3_600_000_000;
    micros.div_euclid(HOUR) * HOUR
}

impl SegmentLocation {
    /// The Hive directory of the segment, `segments/source=…/topic=…/date=…/hour=…`.
    pub fn directory(&self) -> Result<String> {
        let time: DateTime<Utc> = DateTime::from_timestamp_micros(self.hour_micros)
            .ok_or_else(|| Error::invalid_input("event time is out of range"))?;
        Ok(format!(
            "{SEGMENT_KEY_PREFIX}{}/topic={}/date={}/hour={}",
            self.source,
            self.topic,
            time.format("%Y-%m-%d"),
            time.hour(),
        ))
    }

    /// The full object key. `unique` tells apart two segments of the same
    /// offsets (a rewrite); it must itself be a safe name.
    pub fn object_path(&self, unique: &str) -> Result<Path> {
        self.object_path_in(&self.directory()?, unique)
    }

    /// The key of a compacted segment holding a whole UTC day of a quiet
    /// partition: `…/date=…/hour=all/…`. The directory keeps the Hive
    /// depth, so readers of the tree read it with the hourly ones; its
    /// `hour` is not a number, so such readers type `hour` as text.
    pub fn day_object_path(&self, unique: &str) -> Result<Path> {
        let hour_directory = self.directory()?;
        let day_directory = hour_directory
            .rsplit_once("/hour=")
            .map(|(day, _)| day)
            .ok_or_else(|| Error::internal("segment directory has no hour"))?;
        self.object_path_in(&format!("{day_directory}/hour={ALL_HOURS}"), unique)
    }

    fn object_path_in(&self, directory: &str, unique: &str) -> Result<Path> {
        if unique.is_empty() || !unique.bytes().all(is_safe_byte) {
            return Err(Error::internal("segment unique suffix is not a safe name"));
        }
        let key = format!(
            "{}/{}-{}-{}-{}.parquet",
            directory, self.partition, self.first_offset, self.last_offset, unique
        );
        Ok(Path::parse(&key)?)
    }
}

/// The directory, under the store root, that holds the Iceberg tables'
/// metadata (never their data: a table's data files are the segments).
pub const TABLES_ROOT: &str = "tables";

/// The location of the Iceberg table of (source, topic):
/// `tables/<source>/<topic>`.
pub fn table_location(source: &str, topic: &str) -> Result<String> {
    Ok(format!(
        "{TABLES_ROOT}/{}/{}",
        NamePart::encode("source", source)?,
        NamePart::encode("topic", topic)?
    ))
}

/// The key of a metadata file (metadata JSON, manifest list, manifest) of
/// the table at `location`: `<location>/metadata/<file>`.
pub fn table_metadata_key(location: &str, file: &str) -> Result<Path> {
    if file.is_empty() || !file.bytes().all(is_safe_byte) || file.starts_with('.') {
        return Err(Error::internal(
            "table metadata file name is not a safe name",
        ));
    }
    Ok(Path::parse(format!("{location}/metadata/{file}"))?)
}

/// The `hour` of a day-long compacted segment's directory.
pub const ALL_HOURS: &str = "all";

/// The key of a rewrite of the segment at `existing` (an erasure): same
/// directory, new offsets and a new unique suffix.
pub fn sibling_object_path(
    existing: &str,
    partition: i32,
    first_offset: i64,
    last_offset: i64,
    unique: &str,
) -> Result<Path> {
    if unique.is_empty() || !unique.bytes().all(is_safe_byte) {
        return Err(Error::internal("segment unique suffix is not a safe name"));
    }
    let (directory, _) = existing
        .rsplit_once('/')
        .filter(|(directory, _)| is_segment_key(&format!("{directory}/x.parquet")))
        .ok_or_else(|| Error::internal(format!("{existing:?} is not a segment key")))?;
    Ok(Path::parse(format!(
        "{directory}/{partition}-{first_offset}-{last_offset}-{unique}.parquet"
    ))?)
}

impl From<object_store::path::Error> for Error {
    fn from(error: object_store::path::Error) -> Self {
        Error::with_source(
            crate::error::ErrorKind::InvalidInput,
            "invalid object path",
            error,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kafka_topic_names_are_unchanged() {
        let part = NamePart::encode("topic", "orders.v1-eu_west").ok();
        assert_eq!(part.map(|p| p.0), Some("orders.v1-eu_west".to_owned()));
    }

    #[test]
    fn traversal_and_separators_are_escaped() {
        let part = NamePart::encode("topic", "../etc/passwd").map(|p| p.0).ok();
        assert_eq!(part.as_deref(), Some("%2E.%2Fetc%2Fpasswd"));
        let part = NamePart::encode("topic", "_hidden").map(|p| p.0).ok();
        assert_eq!(part.as_deref(), Some("%5Fhidden"));
        assert!(NamePart::encode("topic", "").is_err());
        assert!(NamePart::encode("topic", &"x".repeat(256)).is_err());
    }

    #[test]
    fn source_names_are_strict() {
        assert!(validate_source_name("orders-prod.1").is_ok());
        assert!(validate_source_name("a/b").is_err());
        assert!(validate_source_name("..").is_err());
        assert!(validate_source_name("").is_err());
        assert!(validate_source_name("_x").is_err());
    }

    #[test]
    fn object_path_is_hive_style() {
        let location = SegmentLocation {
            source: NamePart::encode("source", "demo").unwrap(),
            topic: NamePart::encode("topic", "orders").unwrap(),
            partition: 2,
            first_offset: 10,
            last_offset: 19,
            // 2026-11-21T21:15:00Z
            hour_micros: 1_795_295_700_000_000,
        };
        let path = location.object_path("01abc").map(|p| p.to_string()).ok();
        assert_eq!(
            path.as_deref(),
            Some("segments/source=demo/topic=orders/date=2026-11-21/hour=21/2-10-19-01abc.parquet")
        );
        assert!(location.object_path("../x").is_err());
    }

    #[test]
    fn hours_are_not_zero_padded() {
        let location = SegmentLocation {
            source: NamePart::encode("source", "demo").unwrap(),
            topic: NamePart::encode("topic", "orders").unwrap(),
            partition: 0,
            first_offset: 0,
            last_offset: 0,
            // 2026-11-21T00:15:00Z and 2026-11-21T07:15:00Z
            hour_micros: 1_795_220_100_000_000,
        };
        let directory = location.directory().ok();
        assert_eq!(
            directory.as_deref(),
            Some("segments/source=demo/topic=orders/date=2026-11-21/hour=0")
        );
        let later = SegmentLocation {
            hour_micros: location.hour_micros + 7 * 3_600_000_000,
            ..location
        };
        assert_eq!(
            later.directory().ok().as_deref(),
            Some("segments/source=demo/topic=orders/date=2026-11-21/hour=7")
        );
        assert!(is_segment_key("segments/source=a/x.parquet"));
        assert!(is_segment_key(
            "source=a/topic=b/date=2026-01-01/hour=00/x.parquet"
        ));
        assert!(!is_segment_key("catalog.db"));
    }

    #[test]
    fn day_segments_keep_the_hive_depth_and_rewrites_stay_in_their_directory() {
        let location = SegmentLocation {
            source: NamePart::encode("source", "demo").unwrap(),
            topic: NamePart::encode("topic", "orders").unwrap(),
            partition: 1,
            first_offset: 5,
            last_offset: 9,
            // 2026-11-21T21:15:00Z
            hour_micros: 1_795_295_700_000_000,
        };
        let day = location.day_object_path("c1").map(|p| p.to_string()).ok();
        assert_eq!(
            day.as_deref(),
            Some("segments/source=demo/topic=orders/date=2026-11-21/hour=all/1-5-9-c1.parquet")
        );
        let existing = "segments/source=demo/topic=orders/date=2026-11-21/hour=21/1-5-9-a.parquet";
        let rewrite = sibling_object_path(existing, 1, 5, 8, "e1")
            .map(|p| p.to_string())
            .ok();
        assert_eq!(
            rewrite.as_deref(),
            Some("segments/source=demo/topic=orders/date=2026-11-21/hour=21/1-5-8-e1.parquet")
        );
        assert!(sibling_object_path("catalog.db", 1, 0, 0, "x").is_err());
    }

    proptest! {
        #[test]
        fn any_name_encodes_to_one_safe_component_and_back(raw in "\\PC{1,60}") {
            prop_assume!(raw.len() <= MAX_NAME_BYTES);
            let part = NamePart::encode("topic", &raw).unwrap();
            let text = part.as_str();
            prop_assert!(!text.contains('/'));
            prop_assert!(text != "." && text != "..");
            prop_assert!(!text.starts_with('.') && !text.starts_with('_'));
            prop_assert!(Path::parse(text).is_ok());
            prop_assert_eq!(NamePart::decode(text).ok(), Some(raw));
        }
    }
}
