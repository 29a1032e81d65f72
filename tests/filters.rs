//! One filter, one meaning: the same selection (topics, key, header, text,
//! a JSON path through an array, a time range) picks exactly the same events
//! through event search (`GET /api/v1/events`, paged by cursor), a replay
//! dry-run (`POST /api/v1/replays`), the explorer's own request (the query
//! string `web/assets/selection.js` builds) with its histogram, and the SQL
//! the API writes for it (`GET /api/v1/events/sql`). Each is compared with
//! the same conditions written by hand in SQL.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};

use crate::query::{http, Server, Target};
use crate::replay::unique;
use crate::util::{archive_demo, query_rows};

const HOUR: i64 = 3_600_000_000;

/// The explorer's page size (`PAGE_SIZE` in `web/assets/explorer.js`).
const EXPLORER_PAGE: usize = 50;

/// A selection in the explorer's terms; every field narrows.
struct Filter {
    topics: Vec<String>,
    key: Option<String>,
    /// `name=value`.
    headers: Vec<String>,
    contains: Option<String>,
    /// `path=value`.
    json: Vec<String>,
    /// Inclusive lower and exclusive upper bound of event_time, in
    /// microseconds, on whole seconds.
    from: i64,
    to: i64,
}

impl Filter {
    /// The filters as a plain API client writes them: RFC 3986
    /// percent-encoding, times with microseconds, `from` and `to` first.
    fn api_query(&self) -> String {
        self.query(
            (micros_time(self.from), micros_time(self.to)),
            true,
            percent_encode,
        )
    }

    /// The filters as the explorer sends them: `filterParams` of
    /// `web/assets/selection.js` (source, each topic, from, to, key, each
    /// header, contains, each JSON field), encoded as `URLSearchParams`
    /// encodes, times as `Date.toISOString()` writes them (the time presets
    /// and the histogram's bounds). `searchParams` then appends `limit` and
    /// `cursor`, as `search` does.
    fn ui_query(&self) -> String {
        self.query(
            (iso_millis(self.from), iso_millis(self.to)),
            false,
            form_encode,
        )
    }

    /// The filter parameters with `times` as from and to (first, or after
    /// the topics), each value encoded with `encode`.
    fn query(
        &self,
        times: (String, String),
        times_first: bool,
        encode: fn(&str) -> String,
    ) -> String {
        let topics = self.topics.iter().map(|topic| ("topic", topic.clone()));
        let range = [("from", times.0), ("to", times.1)];
        let mut pairs: Vec<(&str, String)> = if times_first {
            range.into_iter().chain(topics).collect()
        } else {
            topics.chain(range).collect()
        };
        pairs.extend(self.key.iter().map(|key| ("key", key.clone())));
        pairs.extend(self.headers.iter().map(|header| ("header", header.clone())));
        pairs.extend(self.contains.iter().map(|text| ("contains", text.clone())));
        pairs.extend(self.json.iter().map(|field| ("json", field.clone())));
        pairs
            .iter()
            .map(|(name, value)| format!("{name}={}", encode(value)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The replay API's filter selection as `replaySelection` of
    /// `web/assets/selection.js` builds it (`topic` for one, `topics` for
    /// several), times with a numeric offset.
    fn replay_selection(&self) -> Value {
        let mut selection = json!({
            "type": "filter",
            "from": offset_time(self.from),
            "to": offset_time(self.to),
        });
        match self.topics.as_slice() {
            [] => {}
            [topic] => selection["topic"] = json!(topic),
            topics => selection["topics"] = json!(topics),
        }
        if let Some(key) = &self.key {
            selection["key"] = json!(key);
        }
        if !self.headers.is_empty() {
            selection["headers"] = json!(self.headers);
        }
        if let Some(contains) = &self.contains {
            selection["contains"] = json!(contains);
        }
        if !self.json.is_empty() {
            selection["json"] = json!(self.json);
        }
        selection
    }
}

/// `text` as `URLSearchParams` writes it (application/x-www-form-urlencoded).
fn form_encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                encoded.push(char::from(byte));
            }
            b' ' => encoded.push('+'),
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    encoded
}

/// `text` with everything but RFC 3986's unreserved characters percent-encoded.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                encoded.push(char::from(byte));
            }
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    encoded
}

/// `2026-01-31T10:00:00.000000Z`, as the archive writes times.
fn micros_time(micros: i64) -> String {
    hindsight_archive::event::rfc3339(micros).unwrap_or_else(|| panic!("{micros} µs is not a time"))
}

/// `2026-01-31T10:00:00.000Z`, as JavaScript's `Date.toISOString()` writes it.
fn iso_millis(micros: i64) -> String {
    assert_eq!(micros % 1000, 0, "{micros} µs is not on a millisecond");
    format!("{}Z", &micros_time(micros)[..23])
}

/// `2026-01-31T10:00:00+00:00`: RFC 3339 with a numeric offset.
fn offset_time(micros: i64) -> String {
    assert_eq!(micros % 1_000_000, 0, "{micros} µs is not on a second");
    format!("{}+00:00", &micros_time(micros)[..19])
}

/// Three whole hours inside the demo archive's six, so that the range cuts
/// events off at both ends.
fn three_hours_inside(data: &Path) -> (i64, i64) {
    let rows = query_rows(
        data,
        "SELECT CAST(min(event_time) AS BIGINT) AS lo, CAST(max(event_time) AS BIGINT) AS hi \
         FROM events",
    );
    let oldest = rows[0]["lo"].as_i64().expect("the oldest event time");
    let newest = rows[0]["hi"].as_i64().expect("the newest event time");
    let from = oldest - oldest.rem_euclid(HOUR) + 2 * HOUR;
    let to = from + 3 * HOUR;
    assert!(
        to < newest,
        "the archive spans {oldest}..{newest} µs, less than the five hours this test needs"
    );
    (from, to)
}

fn time_range_sql(from: i64, to: i64) -> String {
    format!(
        "event_time >= '{}' AND event_time < '{}'",
        micros_time(from),
        micros_time(to)
    )
}

/// The orders of the customer who ordered one product in one currency most
/// often inside three hours of the archive, through every kind of filter:
/// key (the customer), header, text (the currency), a JSON path through an
/// array (the product) and the time range. Returns the filter and the same
/// conditions written by hand in SQL.
fn busiest_customer_filter(data: &Path) -> (Filter, String) {
    let (from, to) = three_hours_inside(data);
    let range = time_range_sql(from, to);
    let rows = query_rows(
        data,
        &format!(
            "SELECT CAST(key AS VARCHAR) AS k, json_get_str(payload_text, 'items', 0, 'sku') AS sku, \
             json_get_str(payload_text, 'currency') AS currency, count(*) AS n FROM events \
             WHERE topic = 'orders' AND {range} \
             AND json_get_str(payload_text, 'items', 0, 'sku') IS NOT NULL \
             AND json_get_str(payload_text, 'currency') IS NOT NULL \
             GROUP BY 1, 2, 3 ORDER BY n DESC, k, sku, currency LIMIT 1"
        ),
    );
    let row = rows
        .first()
        .unwrap_or_else(|| panic!("no order with a product and a currency where {range}"));
    let text = |name: &str| {
        row[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {row}"))
            .to_owned()
    };
    let (key, sku, currency) = (text("k"), text("sku"), text("currency"));
    let filter = Filter {
        topics: vec!["orders".to_owned()],
        key: Some(key.clone()),
        headers: vec!["event-type=order.created".to_owned()],
        contains: Some(format!(r#""currency":"{currency}""#)),
        json: vec![format!("items.0.sku={sku}")],
        from,
        to,
    };
    let reference = format!(
        r#"topic = 'orders' AND {range} AND key = CAST('{key}' AS BYTEA)
           AND header_text(headers, 'event-type') = 'order.created'
           AND payload_text LIKE '%"currency":"{currency}"%'
           AND json_get_str(payload_text, 'items', 0, 'sku') = '{sku}'"#
    );
    (filter, reference)
}

/// The orders and payments of the customer with the most of both in one
/// currency inside three hours of the archive: two topics, a header, text
/// (the customer) and a JSON field (the currency). Returns the filter and
/// the same conditions written by hand in SQL.
fn busiest_customer_over_orders_and_payments(data: &Path) -> (Filter, String) {
    let (from, to) = three_hours_inside(data);
    let range = time_range_sql(from, to);
    let rows = query_rows(
        data,
        &format!(
            "SELECT json_get_str(payload_text, 'customer') AS customer, \
             json_get_str(payload_text, 'currency') AS currency, count(*) AS n FROM events \
             WHERE topic IN ('orders', 'payments') AND {range} \
             AND header_text(headers, 'content-type') = 'application/json' \
             AND json_get_str(payload_text, 'customer') IS NOT NULL \
             AND json_get_str(payload_text, 'currency') IS NOT NULL \
             GROUP BY 1, 2 HAVING count(DISTINCT topic) = 2 \
             ORDER BY n DESC, customer, currency LIMIT 1"
        ),
    );
    let row = rows
        .first()
        .unwrap_or_else(|| panic!("no customer with both an order and a payment where {range}"));
    let text = |name: &str| {
        row[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {row}"))
            .to_owned()
    };
    let (customer, currency) = (text("customer"), text("currency"));
    let filter = Filter {
        topics: vec!["orders".to_owned(), "payments".to_owned()],
        key: None,
        headers: vec!["content-type=application/json".to_owned()],
        contains: Some(format!(r#""customer":"{customer}""#)),
        json: vec![format!("currency={currency}")],
        from,
        to,
    };
    let reference = format!(
        r#"topic IN ('orders', 'payments') AND {range}
           AND header_text(headers, 'content-type') = 'application/json'
           AND payload_text LIKE '%"customer":"{customer}"%'
           AND json_get_str(payload_text, 'currency') = '{currency}'"#
    );
    (filter, reference)
}

/// The ids of the events matching `condition`, by `hindsight query`.
fn sql_ids(data: &Path, condition: &str) -> BTreeSet<String> {
    query_rows(
        data,
        &format!("SELECT event_id FROM events WHERE {condition}"),
    )
    .iter()
    .map(|row| {
        row["event_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no event_id in {row}"))
            .to_owned()
    })
    .collect()
}

/// The ids of the rows `sql` returns through `POST /api/v1/sql`.
fn sql_ids_over_http(address: &str, sql: &str) -> BTreeSet<String> {
    let response = http(
        address,
        "POST",
        "/api/v1/sql",
        &[
            ("Content-Type", "application/sql"),
            ("Accept", "application/x-ndjson"),
        ],
        sql.as_bytes(),
    );
    assert_eq!(response.status, 200, "{sql}: {}", response.text());
    response
        .text()
        .lines()
        .map(|line| {
            let row: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e} ({sql})"));
            row["event_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{sql} returned a row without event_id: {row}"))
                .to_owned()
        })
        .collect()
}

/// Every event `GET /api/v1/events?{filters}` finds, following
/// `next_cursor` page by page with `limit` events a page.
fn search(address: &str, filters: &str, limit: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100_000 {
        let mut path = format!("/api/v1/events?{filters}&limit={limit}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={}", form_encode(cursor)));
        }
        let response = http(address, "GET", &path, &[], b"");
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        let page = response.json();
        let batch = page["events"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {path}: no events array in {page}"));
        assert!(
            batch.len() <= limit,
            "GET {path}: {} events on a page of {limit}",
            batch.len()
        );
        events.extend(batch.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return events,
        }
    }
    panic!("GET /api/v1/events?{filters} never ran out of pages");
}

/// The ids of `events`, which must not repeat (pages neither repeat nor overlap).
fn distinct_ids(what: &str, events: &[Value]) -> BTreeSet<String> {
    let ids: Vec<String> = events
        .iter()
        .map(|event| {
            event["event_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: an event without event_id: {event}"))
                .to_owned()
        })
        .collect();
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        ids.len(),
        "{what} returned an event twice: {ids:?}"
    );
    distinct
}

/// Newest first, by (event_time, event_id), across every topic.
fn assert_newest_first(what: &str, events: &[Value]) {
    let order: Vec<(&str, &str)> = events
        .iter()
        .map(|event| {
            (
                event["event_time"].as_str().unwrap_or_default(),
                event["event_id"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    for pair in order.windows(2) {
        assert!(
            pair[0] > pair[1],
            "{what}: {:?} comes before {:?}, not newest first",
            pair[0],
            pair[1]
        );
    }
}

/// The ids a replay dry-run of `filter` lists in its sample (large enough
/// for all of them); checks that its count agrees.
fn dry_run_ids(address: &str, filter: &Filter) -> BTreeSet<String> {
    // A dry-run to RabbitMQ publishes nothing and needs no answer from the
    // broker (a Kafka target's dry-run asks the topic's size limit).
    let body = json!({
        "dry_run": true,
        "selection": filter.replay_selection(),
        "target": {"type": "amqp", "connection": "local-rabbit", "exchange": unique("hs-filter-x")},
        "options": {"sample": 100_000},
    });
    let response = http(
        address,
        "POST",
        "/api/v1/replays",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(response.status, 200, "dry-run {body}: {}", response.text());
    let report = response.json();
    let sample = report["sample"]
        .as_array()
        .unwrap_or_else(|| panic!("no sample in the dry-run report {report}"));
    let events: Vec<Value> = sample.iter().map(|entry| entry["event"].clone()).collect();
    let ids = distinct_ids("the dry-run sample", &events);
    assert_eq!(
        report["totals"]["events"],
        ids.len(),
        "the dry-run counts other events than it samples: {report}"
    );
    ids
}

/// The sum of the histogram's bucket counts for the same filters, an hour a bucket.
fn histogram_total(address: &str, filters: &str) -> u64 {
    let path = format!("/api/v1/events/histogram?{filters}&step_ms=3600000");
    let response = http(address, "GET", &path, &[], b"");
    assert_eq!(response.status, 200, "GET {path}: {}", response.text());
    let body = response.json();
    body["buckets"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path}: no buckets array in {body}"))
        .iter()
        .map(|bucket| {
            bucket["count"]
                .as_u64()
                .unwrap_or_else(|| panic!("GET {path}: a bucket without a count: {bucket}"))
        })
        .sum()
}

/// Search, dry-run, the explorer's request and its histogram each select
/// exactly `expected`, which is neither empty nor the whole archive.
/// Returns the events of the explorer's request.
fn every_reader_selects(
    address: &str,
    filter: &Filter,
    expected: &BTreeSet<String>,
    archived: u64,
) -> Vec<Value> {
    assert!(
        !expected.is_empty(),
        "the filter selects nothing in SQL, so comparing would test nothing"
    );
    assert!(
        (expected.len() as u64) < archived,
        "the filter selects the whole archive, so it is not filtering"
    );
    // Pages of two: the cursor is followed across pages.
    let api_query = filter.api_query();
    let searched = distinct_ids("event search", &search(address, &api_query, 2));
    assert_eq!(
        searched, *expected,
        "GET /api/v1/events?{api_query} disagrees with SQL"
    );
    let dry_run = dry_run_ids(address, filter);
    assert_eq!(
        dry_run,
        *expected,
        "the replay dry-run of {} disagrees with SQL",
        filter.replay_selection()
    );
    let ui_query = filter.ui_query();
    let explorer_events = search(address, &ui_query, EXPLORER_PAGE);
    assert_newest_first("the explorer's request", &explorer_events);
    let explorer = distinct_ids("the explorer's request", &explorer_events);
    assert_eq!(
        explorer, *expected,
        "the explorer's GET /api/v1/events?{ui_query} disagrees with SQL"
    );
    assert_eq!(
        histogram_total(address, &ui_query),
        expected.len() as u64,
        "the histogram of {ui_query} counts other events than the list shows"
    );
    explorer_events
}

/// `hindsight serve` over `data` with the test services as named
/// connections: the dry-run names `local-rabbit`.
fn server_with_connections(data: &Path) -> Server {
    // Read at start: the file may go once the server answers.
    let directory = tempfile::tempdir().unwrap();
    let config =
        crate::query::write_config(directory.path(), data, &crate::util::local_connections());
    Server::start(&Target::Config(config))
}

#[test]
fn one_filter_selects_the_same_events_in_search_dry_run_explorer_and_histogram() {
    const EVENTS: u64 = 100_000;
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), EVENTS);
    let (filter, reference) = busiest_customer_filter(data.path());
    let expected = sql_ids(data.path(), &reference);
    let server = server_with_connections(data.path());
    let events = every_reader_selects(&server.address, &filter, &expected, EVENTS);
    assert!(
        events.iter().all(|event| event["topic"] == "orders"
            && event["key"] == filter.key.as_deref().unwrap_or_default()),
        "events of another topic or key: {events:#?}"
    );
}

#[test]
fn one_filter_over_two_topics_selects_the_same_events_in_search_dry_run_explorer_and_histogram() {
    const EVENTS: u64 = 50_000;
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), EVENTS);
    let (filter, reference) = busiest_customer_over_orders_and_payments(data.path());
    let expected = sql_ids(data.path(), &reference);
    let server = server_with_connections(data.path());
    let events = every_reader_selects(&server.address, &filter, &expected, EVENTS);
    // Repeated topics are a union: neither the first nor the last one alone.
    let topics: BTreeSet<&str> = events
        .iter()
        .filter_map(|event| event["topic"].as_str())
        .collect();
    assert_eq!(
        topics,
        BTreeSet::from(["orders", "payments"]),
        "the selection holds both topics' events"
    );
}

#[test]
fn the_sql_the_api_writes_for_a_filter_selects_the_same_events_as_the_filter() {
    const EVENTS: u64 = 20_000;
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), EVENTS);
    let (narrow, _) = busiest_customer_filter(data.path());
    let (from, to) = three_hours_inside(data.path());
    // Two topics, a header that repeats (x-retry: 1, then 2) and text.
    let broad = Filter {
        topics: vec!["orders".to_owned(), "shipments".to_owned()],
        key: None,
        headers: vec!["x-retry=2".to_owned()],
        contains: Some(r#""country":"NL""#.to_owned()),
        json: Vec::new(),
        from,
        to,
    };
    let server = Server::start(&Target::DataDir(data.path().to_owned()));
    let address = server.address.as_str();
    for filter in [narrow, broad] {
        let searched = distinct_ids("event search", &search(address, &filter.api_query(), 1000));
        assert!(
            !searched.is_empty() && (searched.len() as u64) < EVENTS,
            "{} selects {} events: the comparison would test nothing",
            filter.api_query(),
            searched.len()
        );
        let path = format!("/api/v1/events/sql?{}", filter.ui_query());
        let response = http(address, "GET", &path, &[], b"");
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        let translation = response.json();
        let condition = translation["where"]
            .as_str()
            .unwrap_or_else(|| panic!("GET {path}: no where in {translation}"));
        let sql = translation["sql"]
            .as_str()
            .unwrap_or_else(|| panic!("GET {path}: no sql in {translation}"));
        assert!(
            sql.contains(condition),
            "GET {path}: the statement {sql:?} does not use its own condition {condition:?}"
        );
        assert_eq!(
            sql_ids_over_http(address, sql),
            searched,
            "the SQL written for {path} selects other events than the search"
        );
        assert_eq!(
            sql_ids_over_http(
                address,
                &format!("SELECT event_id FROM events WHERE {condition}")
            ),
            searched,
            "the WHERE clause written for {path} selects other events than the search"
        );
    }
}
