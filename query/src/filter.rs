//! The one event filter (source, topics, partition, time range, key,
//! headers, text, correlation id, JSON fields): what `GET /api/v1/events`, the histogram, a
//! replay's filter selection and the UI select by.
//!
//! [`FilterSelection`] is its wire form (JSON in a replay request, query
//! parameters over HTTP, flags on the command line). [`EventFilter`] is the
//! parsed filter, with three translations kept side by side so they cannot
//! drift apart: [`EventFilter::to_exprs`] (DataFusion expressions, for
//! search and counts), [`EventFilter::matches`] (in memory, for replay,
//! which reads segments itself) and [`EventFilter::to_sql`] (SQL text over
//! the `events` view, shown to people who want to edit it).
//!
//! JSON paths are dot-separated. A part made only of digits indexes an array
//! and never names an object member, in all three translations (that is how
//! `json_as_text` reads an integer argument).

use datafusion::common::ScalarValue;
use datafusion::execution::FunctionRegistry;
use datafusion::functions::string::expr_fn::contains;
use datafusion::logical_expr::{col, lit, Expr};
use hindsight_archive::catalog::SegmentFilter;
use hindsight_archive::Event;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What text search and `json=` conditions look in: the decoded JSON of a
/// payload framed by a schema (Avro, Protobuf, JSON Schema), the UTF-8 text
/// of any other (`query/src/decode.rs`).
const SEARCHABLE_TEXT: &str = "decoded_text(payload, topic, headers)";

fn searchable_text(functions: &dyn FunctionRegistry) -> Result<Expr> {
    Ok(functions
        .udf("decoded_text")?
        .call(vec![col("payload"), col("topic"), col("headers")]))
}

/// The filter as requests carry it; every field narrows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSelection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// One topic (or exchange, or stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Any of these topics (together with `topic`, if both are given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// Inclusive lower bound of event_time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Exclusive upper bound of event_time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The Kafka key, as UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `name=value`: a header with exactly this value must be present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// Text the UTF-8 payload must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// The correlation id (Kafka header-less events have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// `path=value`: a JSON field (dot path) of the payload must equal the value, as text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json: Vec<String>,
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPart {
    Member(String),
    Index(usize),
}

/// A JSON field that must equal a value, compared as `json_as_text` renders
/// it: strings bare, everything else as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonCondition {
    pub path: Vec<PathPart>,
    pub value: String,
}

/// A parsed filter. Every field narrows; the default selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub source: Option<String>,
    /// Any of these; empty for every topic.
    pub topics: Vec<String>,
    pub partition: Option<i32>,
    /// Inclusive lower bound of event_time, microseconds since the epoch.
    pub time_from: Option<i64>,
    /// Exclusive upper bound of event_time.
    pub time_to: Option<i64>,
    pub key: Option<Vec<u8>>,
    /// Headers that must be present with exactly these values.
    pub headers: Vec<(String, Vec<u8>)>,
    pub contains: Option<String>,
    pub correlation_id: Option<String>,
    pub json: Vec<JsonCondition>,
}

/// Parses an RFC 3339 time into microseconds since the epoch.
pub fn parse_time(what: &str, text: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp_micros())
        .map_err(|error| {
            Error::invalid_input(format!(
                "{what} {text:?} is not an RFC 3339 time like 2026-01-31T00:00:00Z: {error}"
            ))
        })
}

fn split_pair<'a>(what: &str, text: &'a str) -> Result<(&'a str, &'a str)> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name, value)),
        _ => Err(Error::invalid_input(format!(
            "{what} {text:?} must be name=value"
        ))),
    }
}

/// Parses `customer.id=42` or `items.0.sku=A-1`.
pub fn parse_json_condition(text: &str) -> Result<JsonCondition> {
    let (path, value) = split_pair("json filter", text)?;
    if path.split('.').any(str::is_empty) {
        return Err(Error::invalid_input(format!(
            "json field path {path:?} must be dot-separated names, like customer.id"
        )));
    }
    let path = path
        .split('.')
        .map(|part| match part.parse::<usize>() {
            Ok(index) if part.bytes().all(|b| b.is_ascii_digit()) => PathPart::Index(index),
            _ => PathPart::Member(part.to_owned()),
        })
        .collect();
    Ok(JsonCondition {
        path,
        value: value.to_owned(),
    })
}

impl FilterSelection {
    /// Parses the filter, naming the field that is wrong.
    pub fn compile(&self) -> Result<EventFilter> {
        let mut topics: Vec<String> = self.topic.iter().chain(&self.topics).cloned().collect();
        topics.sort();
        topics.dedup();
        let headers = self
            .headers
            .iter()
            .map(|pair| {
                split_pair("header filter", pair)
                    .map(|(name, value)| (name.to_owned(), value.as_bytes().to_vec()))
            })
            .collect::<Result<Vec<_>>>()?;
        let time = |what: &str, text: &Option<String>| {
            text.as_deref().map(|t| parse_time(what, t)).transpose()
        };
        Ok(EventFilter {
            source: self.source.clone(),
            topics,
            partition: self.partition,
            time_from: time("from", &self.from)?,
            time_to: time("to", &self.to)?,
            key: self.key.as_ref().map(|key| key.as_bytes().to_vec()),
            headers,
            contains: self.contains.clone(),
            correlation_id: self.correlation_id.clone(),
            json: self
                .json
                .iter()
                .map(|pair| parse_json_condition(pair))
                .collect::<Result<Vec<_>>>()?,
        })
    }
}

/// The value at `path` in the JSON `text` as `json_as_text` (jiter) gives
/// it: a string's content, any other value's text as the payload writes it
/// (`1.50` stays `1.50`, `{"a": 1}` keeps its spaces); `None` for a
/// missing path, `null`, or text that is not JSON. Raw values, not parsed
/// ones, so that the matcher and SQL compare the same text.
fn json_as_text(text: &str, path: &[PathPart]) -> Option<String> {
    use serde_json::value::RawValue;
    let mut current: &RawValue = serde_json::from_str(text).ok()?;
    for part in path {
        let raw = current.get();
        current = match part {
            PathPart::Member(name) if raw.starts_with('{') => {
                let members: std::collections::HashMap<String, &RawValue> =
                    serde_json::from_str(raw).ok()?;
                *members.get(name)?
            }
            PathPart::Index(index) if raw.starts_with('[') => {
                let items: Vec<&RawValue> = serde_json::from_str(raw).ok()?;
                *items.get(*index)?
            }
            _ => return None,
        };
    }
    let raw = current.get().trim();
    match raw {
        "null" => None,
        _ if raw.starts_with('"') => serde_json::from_str::<String>(raw).ok(),
        _ => Some(raw.to_owned()),
    }
}

fn timestamp(micros: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(micros),
        Some("UTC".into()),
    ))
}

fn binary(bytes: &[u8]) -> Expr {
    lit(ScalarValue::Binary(Some(bytes.to_vec())))
}

/// `'text'` with quotes doubled.
fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn sql_time(micros: i64) -> String {
    let text = hindsight_archive::event::rfc3339(micros).unwrap_or_default();
    format!("TIMESTAMP {}", sql_string(&text))
}

/// Bytes as an SQL literal: text when it is UTF-8, hex otherwise.
fn sql_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("CAST({} AS BYTEA)", sql_string(text)),
        Err(_) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("decode({}, 'hex')", sql_string(&hex))
        }
    }
}

impl EventFilter {
    /// The catalog's part of the filter: it prunes segments before any is read.
    pub fn segment_filter(&self) -> SegmentFilter {
        SegmentFilter {
            source: self.source.clone(),
            topic: match self.topics.as_slice() {
                [one] => Some(one.clone()),
                _ => None,
            },
            partition: self.partition,
            time_from: self.time_from,
            time_to: self.time_to,
        }
    }

    /// [`EventFilter::segment_filter`] once per topic when there are several,
    /// so the catalog lists only their segments.
    pub fn segment_filters(&self) -> Vec<SegmentFilter> {
        if self.topics.len() <= 1 {
            return vec![self.segment_filter()];
        }
        self.topics
            .iter()
            .map(|topic| SegmentFilter {
                topic: Some(topic.clone()),
                ..self.segment_filter()
            })
            .collect()
    }

    /// True when a (source, topic) can hold matching events.
    pub fn selects_topic(&self, source: &str, topic: &str) -> bool {
        self.source.as_deref().is_none_or(|s| s == source)
            && (self.topics.is_empty() || self.topics.iter().any(|t| t == topic))
    }

    /// The filter as DataFusion expressions over the `events` view (one per
    /// condition, all of which must hold). `functions` resolves
    /// `has_header` and `json_as_text`.
    pub fn to_exprs(&self, functions: &dyn FunctionRegistry) -> Result<Vec<Expr>> {
        let mut filters = Vec::new();
        if let Some(source) = &self.source {
            filters.push(col("source").eq(lit(source.clone())));
        }
        match self.topics.as_slice() {
            [] => {}
            [one] => filters.push(col("topic").eq(lit(one.clone()))),
            many => filters.push(
                col("topic").in_list(many.iter().map(|topic| lit(topic.clone())).collect(), false),
            ),
        }
        if let Some(partition) = self.partition {
            filters.push(col("partition").eq(lit(partition)));
        }
        if let Some(from) = self.time_from {
            filters.push(col("event_time").gt_eq(timestamp(from)));
        }
        if let Some(to) = self.time_to {
            filters.push(col("event_time").lt(timestamp(to)));
        }
        if let Some(key) = &self.key {
            filters.push(col("key").eq(binary(key)));
        }
        if !self.headers.is_empty() {
            let has_header = functions.udf("has_header")?;
            for (name, value) in &self.headers {
                filters.push(has_header.call(vec![
                    col("headers"),
                    lit(name.clone()),
                    binary(value),
                ]));
            }
        }
        if let Some(needle) = &self.contains {
            filters.push(contains(searchable_text(functions)?, lit(needle.clone())));
        }
        if let Some(id) = &self.correlation_id {
            filters.push(col("correlation_id").eq(lit(id.clone())));
        }
        if !self.json.is_empty() {
            let json_as_text = functions.udf("json_as_text")?;
            for condition in &self.json {
                let mut arguments = vec![searchable_text(functions)?];
                arguments.extend(condition.path.iter().map(|part| match part {
                    PathPart::Index(index) => lit(*index as i64),
                    PathPart::Member(name) => lit(name.clone()),
                }));
                filters.push(
                    json_as_text
                        .call(arguments)
                        .eq(lit(condition.value.clone())),
                );
            }
        }
        Ok(filters)
    }

    /// The filter as an SQL condition over the `events` view (`TRUE` when it
    /// selects everything), for people to read and edit.
    pub fn to_sql(&self) -> String {
        let mut conditions = Vec::new();
        if let Some(source) = &self.source {
            conditions.push(format!("source = {}", sql_string(source)));
        }
        match self.topics.as_slice() {
            [] => {}
            [one] => conditions.push(format!("topic = {}", sql_string(one))),
            many => conditions.push(format!(
                "topic IN ({})",
                many.iter()
                    .map(|topic| sql_string(topic))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
        if let Some(partition) = self.partition {
            conditions.push(format!("\"partition\" = {partition}"));
        }
        if let Some(from) = self.time_from {
            conditions.push(format!("event_time >= {}", sql_time(from)));
        }
        if let Some(to) = self.time_to {
            conditions.push(format!("event_time < {}", sql_time(to)));
        }
        if let Some(key) = &self.key {
            conditions.push(format!("key = {}", sql_bytes(key)));
        }
        for (name, value) in &self.headers {
            conditions.push(format!(
                "has_header(headers, {}, {})",
                sql_string(name),
                sql_bytes(value)
            ));
        }
        if let Some(needle) = &self.contains {
            conditions.push(format!(
                "contains({SEARCHABLE_TEXT}, {})",
                sql_string(needle)
            ));
        }
        if let Some(id) = &self.correlation_id {
            conditions.push(format!("correlation_id = {}", sql_string(id)));
        }
        for condition in &self.json {
            let parts: Vec<String> = condition
                .path
                .iter()
                .map(|part| match part {
                    PathPart::Index(index) => index.to_string(),
                    PathPart::Member(name) => sql_string(name),
                })
                .collect();
            conditions.push(format!(
                "json_as_text({SEARCHABLE_TEXT}, {}) = {}",
                parts.join(", "),
                sql_string(&condition.value)
            ));
        }
        if conditions.is_empty() {
            "TRUE".to_owned()
        } else {
            conditions.join(" AND ")
        }
    }

    /// True when the event passes the filter; the in-memory twin of
    /// [`EventFilter::to_exprs`].
    pub fn matches(&self, event: &Event) -> bool {
        self.matches_decoded(event, |_| None)
    }

    /// [`Self::matches`], with text search and `json=` conditions over
    /// `decoded(event)` where it is `Some` (the decoded JSON of a payload
    /// framed by a schema, `Some(None)` when it does not decode), as SQL's
    /// `decoded_text` does; over the payload's UTF-8 text where it is `None`.
    pub fn matches_decoded(
        &self,
        event: &Event,
        decoded: impl FnOnce(&Event) -> Option<Option<String>>,
    ) -> bool {
        if !self.selects_topic(&event.source, &event.topic) {
            return false;
        }
        if self.partition.is_some() && event.partition != self.partition {
            return false;
        }
        if self.time_from.is_some_and(|from| event.event_time < from)
            || self.time_to.is_some_and(|to| event.event_time >= to)
        {
            return false;
        }
        if self.key.is_some() && event.key != self.key {
            return false;
        }
        if self.correlation_id.is_some() && event.correlation_id != self.correlation_id {
            return false;
        }
        for (name, value) in &self.headers {
            let present = event.headers.iter().any(|header| {
                &header.name == name && header.value.as_deref() == Some(value.as_slice())
            });
            if !present {
                return false;
            }
        }
        if self.contains.is_none() && self.json.is_empty() {
            return true;
        }
        // A tombstone has no text, as `payload_text` is NULL for it in SQL.
        let decoded_text = match decoded(event) {
            Some(None) => return false,
            Some(Some(text)) => Some(text),
            None => None,
        };
        let text = match &decoded_text {
            Some(text) => text.as_str(),
            None => match event.payload.as_deref().map(std::str::from_utf8) {
                Some(Ok(text)) => text,
                _ => return false,
            },
        };
        if let Some(needle) = &self.contains {
            if !text.contains(needle.as_str()) {
                return false;
            }
        }
        if self.json.is_empty() {
            return true;
        }
        self.json.iter().all(|condition| {
            json_as_text(text, &condition.path).as_deref() == Some(condition.value.as_str())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_with(payload: &str) -> Event {
        Event {
            source: "s".into(),
            topic: "orders".into(),
            payload: Some(payload.as_bytes().to_vec()),
            ..Event::default()
        }
    }

    fn filter(json: &[&str]) -> EventFilter {
        FilterSelection {
            json: json.iter().map(|j| (*j).to_owned()).collect(),
            ..FilterSelection::default()
        }
        .compile()
        .unwrap()
    }

    #[test]
    fn numeric_path_parts_index_arrays_and_never_name_members() {
        let array = event_with(r#"{"items": [{"sku": "A"}, {"sku": "B"}]}"#);
        let object = event_with(r#"{"items": {"0": {"sku": "A"}}}"#);
        let first = filter(&["items.0.sku=A"]);
        assert!(first.matches(&array));
        assert!(!first.matches(&object));
        assert!(filter(&["items.1.sku=B"]).matches(&array));
        assert!(!filter(&["items.2.sku=B"]).matches(&array));
        assert_eq!(
            first.to_sql(),
            "json_as_text(decoded_text(payload, topic, headers), 'items', 0, 'sku') = 'A'"
        );
    }

    #[test]
    fn values_compare_as_json_as_text_renders_them() {
        let event =
            event_with(r#"{"n": 42, "f": 1.50, "ok": true, "s": "x", "o": {"a": 1}, "z": null}"#);
        for pair in ["n=42", "f=1.50", "ok=true", "s=x", r#"o={"a": 1}"#] {
            assert!(filter(&[pair]).matches(&event), "{pair}");
        }
        // SQL's json_as_text gives the text as written, and NULL for null.
        for pair in ["s=\"x\"", "f=1.5", r#"o={"a":1}"#, "z=null", "missing=x"] {
            assert!(!filter(&[pair]).matches(&event), "{pair}");
        }
    }

    #[test]
    fn several_topics_select_any_of_them_and_the_catalog_prunes_one() {
        let selection = FilterSelection {
            topic: Some("a".into()),
            topics: vec!["b".into(), "a".into()],
            ..FilterSelection::default()
        };
        let filter = selection.compile().unwrap();
        assert_eq!(filter.topics, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(filter.segment_filter().topic, None);
        assert!(filter.selects_topic("s", "b"));
        assert!(!filter.selects_topic("s", "c"));
        assert_eq!(filter.to_sql(), "topic IN ('a', 'b')");
    }

    #[test]
    fn bad_filters_name_what_is_wrong() {
        let bad = |selection: FilterSelection| selection.compile().unwrap_err().to_string();
        assert!(bad(FilterSelection {
            from: Some("yesterday".into()),
            ..FilterSelection::default()
        })
        .contains("from \"yesterday\""));
        assert!(bad(FilterSelection {
            json: vec!["a..b=1".into()],
            ..FilterSelection::default()
        })
        .contains("dot-separated"));
        assert!(bad(FilterSelection {
            headers: vec!["novalue".into()],
            ..FilterSelection::default()
        })
        .contains("name=value"));
    }

    #[test]
    fn the_correlation_id_narrows_in_memory_and_in_sql_text() {
        let filter = FilterSelection {
            correlation_id: Some("order-7".into()),
            ..FilterSelection::default()
        }
        .compile()
        .unwrap();
        let mut event = event_with("{}");
        assert!(!filter.matches(&event));
        event.correlation_id = Some("order-7".into());
        assert!(filter.matches(&event));
        assert_eq!(filter.to_sql(), "correlation_id = 'order-7'");
    }

    #[test]
    fn sql_text_quotes_what_it_embeds() {
        let filter = FilterSelection {
            source: Some("it's".into()),
            key: Some("k".into()),
            headers: vec!["h=v'".into()],
            contains: Some("%".into()),
            ..FilterSelection::default()
        }
        .compile()
        .unwrap();
        assert_eq!(
            filter.to_sql(),
            "source = 'it''s' AND key = CAST('k' AS BYTEA) AND \
             has_header(headers, 'h', CAST('v''' AS BYTEA)) AND contains(decoded_text(payload, topic, headers), '%')"
        );
    }
}
