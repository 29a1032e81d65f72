//! The OpenAPI 3.1 description of the HTTP API, served at
//! `GET /api/v1/openapi.json`. [`crate::ROUTES`] lists the routes the
//! router serves; a unit test checks that both agree.

use serde_json::{json, Value};

fn error_responses(codes: &[&str]) -> serde_json::Map<String, Value> {
    codes
        .iter()
        .map(|code| {
            (
                (*code).to_owned(),
                json!({ "$ref": format!("#/components/responses/Error{code}") }),
            )
        })
        .collect()
}

fn with_errors(mut responses: Value, codes: &[&str]) -> Value {
    if let Some(map) = responses.as_object_mut() {
        map.extend(error_responses(codes));
    }
    responses
}

fn query_parameter(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn nullable(kind: &str) -> Value {
    json!({ "type": [kind, "null"] })
}

/// The document. Without a token (`token_required` false), no operation
/// names the bearer scheme or a 401 answer.
pub fn document(token_required: bool) -> Value {
    let mut document = core_document();
    if let Some(paths) = document["paths"].as_object_mut() {
        paths.extend(replay_paths());
        paths.extend(access_paths());
        paths.extend(iceberg_paths());
        for operations in paths.values_mut().filter_map(Value::as_object_mut) {
            for (method, operation) in operations.iter_mut() {
                add_request_guard_errors(method, operation, token_required);
            }
        }
    }
    if let Some(schemas) = document["components"]["schemas"].as_object_mut() {
        schemas.extend(replay_schemas());
    }
    if !token_required {
        if let Some(components) = document["components"].as_object_mut() {
            components.remove("securitySchemes");
        }
    }
    document
}

/// The answers of the checks every route goes through: 403 for a `Host` the
/// server does not answer to, 415 for a state-changing request without an
/// accepted content type, and 401 (or, without a token, no security at all).
fn add_request_guard_errors(method: &str, operation: &mut Value, token_required: bool) {
    let Some(operation) = operation.as_object_mut() else {
        return;
    };
    if !token_required {
        operation.remove("security");
    }
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if !token_required {
        responses.remove("401");
    }
    let codes: &[&str] = if method == "get" {
        &["403"]
    } else {
        &["403", "415"]
    };
    responses.extend(error_responses(codes));
}

fn id_parameter() -> Value {
    json!({ "name": "id", "in": "path", "required": true, "description": "replay id", "schema": { "type": "string" } })
}

fn replay_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Replay" } } } })
}

/// `/api/v1/replays…` (served by [`crate::replays::routes`]).
fn replay_paths() -> serde_json::Map<String, Value> {
    let secured = json!([{ "bearer": [] }]);
    let control = |operation: &str, summary: &str| {
        json!({ "post": {
            "operationId": operation, "summary": summary, "security": secured,
            "description": "No body; send Content-Type: application/json all the same (see the API's description).",
            "parameters": [id_parameter()],
            "responses": with_errors(json!({
                "200": replay_response("the replay after the request"),
                "202": replay_response("the replay, started again in this process")
            }), &["400", "401", "404", "409", "500", "503"])
        }})
    };
    let mut paths = serde_json::Map::new();
    paths.insert("/api/v1/replays".to_owned(), json!({
        "post": {
            "operationId": "createReplay",
            "summary": "Dry-run a replay (dry_run: true, answered with the report) or start one (202)",
            "security": secured,
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ReplayRequest" } } } },
            "responses": with_errors(json!({
                "200": { "description": "the dry-run report; nothing was published", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/DryRunReport" } } } },
                "202": replay_response("the replay, started in this process")
            }), &["400", "401", "500", "503"])
        },
        "get": {
            "operationId": "listReplays",
            "summary": "Replays, newest first, dry-runs included",
            "security": secured,
            "parameters": [query_parameter("limit", "at most this many (default 100, at most 1000)", json!({ "type": "integer", "minimum": 1, "maximum": 1000 }))],
            "responses": with_errors(json!({ "200": { "description": "the replays", "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": "#/components/schemas/Replay" } } } } } }), &["401", "500", "503"])
        }
    }));
    paths.insert("/api/v1/replays/{id}".to_owned(), json!({ "get": {
        "operationId": "getReplay", "summary": "One replay: status and progress", "security": secured,
        "parameters": [id_parameter()],
        "responses": with_errors(json!({ "200": replay_response("the replay") }), &["401", "404", "500", "503"])
    }}));
    paths.insert(
        "/api/v1/replays/{id}/pause".to_owned(),
        control("pauseReplay", "Ask the runner to pause at its next window"),
    );
    let mut resume = control(
        "resumeReplay",
        "Continue a paused replay, or restart an interrupted or failed one here",
    );
    resume["post"]["description"] = json!(
        "Send Content-Type: application/json. The body is empty, or {\"target\": …} (the same target, \
         without credentials: the API never takes them; targets that need some go through a named \
         connection). {\"take_over\": true} starts a \
         running or paused replay here whose process is gone (a killed server); a process that \
         still runs it is fenced off at its next checkpoint."
    );
    resume["post"]["requestBody"] = json!({ "required": false, "content": { "application/json": { "schema": {
        "type": "object", "properties": {
            "target": { "$ref": "#/components/schemas/ReplayTarget" },
            "take_over": { "type": "boolean", "description": "start a running or paused replay here that no process runs any more (its server was killed)" }
        }
    } } } });
    paths.insert("/api/v1/replays/{id}/resume".to_owned(), resume);
    paths.insert(
        "/api/v1/replays/{id}/cancel".to_owned(),
        control("cancelReplay", "Ask the runner to stop for good"),
    );
    paths
}

/// `/api/v1/whoami`, `/api/v1/tokens…` and `/api/v1/audit` (served by
/// [`crate::admin`]). Every operation's least role is in its description.
fn access_paths() -> serde_json::Map<String, Value> {
    let secured = json!([{ "bearer": [] }]);
    let object = |description: &str| json!({ "description": description, "content": { "application/json": { "schema": { "type": "object" } } } });
    let array = |description: &str| json!({ "description": description, "content": { "application/json": { "schema": { "type": "array", "items": { "type": "object" } } } } });
    let mut paths = serde_json::Map::new();
    paths.insert("/api/v1/whoami".to_owned(), json!({ "get": {
        "operationId": "whoAmI", "summary": "The principal of this request: name, role, scope (any role)",
        "security": secured,
        "responses": with_errors(json!({ "200": object("name, role, scope {sources, topics}, kind") }), &["401", "500"])
    }}));
    paths.insert("/api/v1/tokens".to_owned(), json!({
        "get": {
            "operationId": "listTokens", "summary": "Every token of the configuration and the catalog, never the token itself (admin)",
            "security": secured,
            "responses": with_errors(json!({ "200": array("name, role, scope, defined_in, created_at, created_by, revoked_at, revoked_by") }), &["401", "500"])
        },
        "post": {
            "operationId": "createToken", "summary": "Make a token (admin); the answer is the only time it is shown",
            "security": secured,
            "requestBody": { "required": true, "content": { "application/json": { "schema": {
                "type": "object", "required": ["name", "role"], "additionalProperties": false,
                "properties": {
                    "name": { "type": "string" },
                    "role": { "type": "string", "enum": ["viewer", "analyst", "operator", "admin"] },
                    "sources": { "type": "array", "items": { "type": "string" } },
                    "topics": { "type": "array", "items": { "type": "string" } }
                }
            } } } },
            "responses": with_errors(json!({ "201": object("name, role, scope and the token") }), &["400", "401", "409", "500"])
        }
    }));
    paths.insert("/api/v1/tokens/{name}/revoke".to_owned(), json!({ "post": {
        "operationId": "revokeToken", "summary": "Revoke a catalog token at once (admin)",
        "security": secured,
        "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }],
        "responses": with_errors(json!({ "200": object("name, revoked") }), &["400", "401", "404", "500"])
    }}));
    let text = |name: &str, description: &str| json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": "string" } });
    paths.insert("/api/v1/audit".to_owned(), json!({ "get": {
        "operationId": "auditTrail", "summary": "The audit trail, oldest first (admin)",
        "security": secured,
        "parameters": [
            text("since", "RFC 3339, inclusive"), text("until", "RFC 3339, exclusive"),
            text("principal", "a principal's name"), text("action", "sql, events.search, event.fetch, replay.start, token.create, ..."),
            { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 100000 } }
        ],
        "responses": with_errors(json!({ "200": array("id, at, principal, role, address, action, method, route, detail, status, count") }), &["400", "401", "500"])
    }}));
    paths
}

/// The read-only Iceberg REST catalog ([`crate::iceberg`]); its errors
/// have the REST specification's shape, not this API's.
fn iceberg_paths() -> serde_json::Map<String, Value> {
    let secured = json!([{ "bearer": [] }]);
    let object = |description: &str| json!({ "description": description, "content": { "application/json": { "schema": { "type": "object" } } } });
    let iceberg_error = json!({ "description": "{\"error\": {message, type, code}} (the Iceberg REST error model)", "content": { "application/json": { "schema": { "type": "object" } } } });
    let name = |name: &str| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } });
    let operation = |id: &str, summary: &str, parameters: Value, answer: &str| {
        json!({ "get": {
            "operationId": id, "summary": summary, "security": secured, "parameters": parameters,
            "responses": {
                "200": object(answer), "401": error_response("no valid token"),
                "403": error_response("the role is below analyst"), "404": iceberg_error
            }
        }})
    };
    let mut paths = serde_json::Map::new();
    paths.insert(
        "/iceberg/v1/config".to_owned(),
        operation(
            "icebergConfig",
            "Iceberg REST catalog: configuration and the read endpoints served (analyst)",
            json!([]),
            "defaults, overrides, endpoints",
        ),
    );
    paths.insert("/iceberg/v1/namespaces".to_owned(), operation("icebergNamespaces", "Iceberg REST catalog: the sources with a table this token may read (analyst)", json!([{ "name": "parent", "in": "query", "required": false, "schema": { "type": "string" } }]), "namespaces"));
    paths.insert(
        "/iceberg/v1/namespaces/{namespace}".to_owned(),
        operation(
            "icebergNamespace",
            "Iceberg REST catalog: one source (analyst)",
            json!([name("namespace")]),
            "namespace, properties",
        ),
    );
    paths.insert(
        "/iceberg/v1/namespaces/{namespace}/tables".to_owned(),
        operation(
            "icebergTables",
            "Iceberg REST catalog: the topics of a source this token may read (analyst)",
            json!([name("namespace")]),
            "identifiers",
        ),
    );
    paths.insert("/iceberg/v1/namespaces/{namespace}/tables/{table}".to_owned(), operation("icebergLoadTable", "Iceberg REST catalog: a table's current metadata; out of scope or masked for the role is 404 (analyst)", json!([name("namespace"), name("table")]), "metadata-location, metadata, config"));
    paths
}

fn replay_schemas() -> serde_json::Map<String, Value> {
    let totals = json!({
        "type": "object",
        "properties": {
            "events": { "type": "integer" }, "bytes": { "type": "integer" },
            "first_event_time": nullable("string"), "last_event_time": nullable("string")
        }
    });
    let mut schemas = serde_json::Map::new();
    schemas.insert("ReplayRequest".to_owned(), json!({
        "type": "object", "required": ["selection", "target"], "additionalProperties": false,
        "properties": {
            "selection": { "type": "object", "description": "{\"type\": \"filter\", source, topic, topics, partition, from, to, key, headers, contains, json} (the filter of /api/v1/events) or {\"type\": \"sql\", \"sql\": …}" },
            "target": { "$ref": "#/components/schemas/ReplayTarget" },
            "options": { "type": "object", "description": "rate, bytes_rate, pace, provenance, strip_headers, set_headers, allow_loop, dedup, window, sample, oversized (\"stop\" or \"skip\"), skip_damaged" },
            "dry_run": { "type": "boolean" }
        }
    }));
    schemas.insert("ReplayTarget".to_owned(), json!({
        "type": "object",
        "description": "{\"type\": \"kafka\", connection, topic, topic_map, partitioning, keep_timestamp} or {\"type\": \"amqp\", connection, exchange, exchange_map, routing_key}. `connection` names one of the server's [connections.NAME] (GET /api/v1/connections lists them). An address instead (kafka `brokers`, amqp `url`) is refused unless the server sets replay.allow_adhoc_targets, and credentials (a URL password, secret Kafka client properties) are always refused: the API never takes them."
    }));
    schemas.insert("Totals".to_owned(), totals);
    schemas.insert("DryRunReport".to_owned(), json!({
        "type": "object",
        "properties": {
            "id": { "type": "string" },
            "totals": { "$ref": "#/components/schemas/Totals" },
            "by_target": { "type": "object", "additionalProperties": { "$ref": "#/components/schemas/Totals" } },
            "duplicates_skipped": { "type": "integer" },
            "segments": { "type": "integer" },
            "problems": { "type": "array", "items": { "type": "string" } },
            "oversized": { "type": "array", "items": { "$ref": "#/components/schemas/SkippedEvent" } },
            "oversized_count": { "type": "integer" },
            "size_limits": { "type": "object", "additionalProperties": { "type": "object", "properties": { "bytes": { "type": "integer" }, "from": { "type": "string" } } } },
            "damaged_segments": { "type": "array", "items": { "$ref": "#/components/schemas/SkippedSegment" } },
            "sample": { "type": "array", "items": { "type": "object", "properties": { "destination": nullable("string"), "event": { "$ref": "#/components/schemas/Event" } } } }
        }
    }));
    schemas.insert("Replay".to_owned(), json!({
        "type": "object",
        "properties": {
            "id": { "type": "string" },
            "status": { "type": "string", "enum": ["dry_run", "running", "paused", "completed", "failed", "cancelled", "interrupted"] },
            "requested": { "type": "string" },
            "dry_run": { "type": "boolean" },
            "created_at": nullable("string"), "updated_at": nullable("string"),
            "finished_at": nullable("string"), "snapshot_at": nullable("string"),
            "selection": {}, "target": {}, "options": {},
            "planned": { "type": "integer" },
            "progress": { "type": "object", "properties": {
                "selected": { "type": "integer" }, "published": { "type": "integer" }, "failed": { "type": "integer" },
                "duplicates_skipped": { "type": "integer" }, "bytes": { "type": "integer" },
                "position_group": { "type": "integer" }, "position_row": { "type": "integer" },
                "resend_on_resume": { "type": "integer" }, "oversized_skipped": { "type": "integer" },
                "damaged_segments_skipped": { "type": "integer" }, "damaged_rows_skipped": { "type": "integer" }
            }},
            "details": { "type": "object", "properties": {
                "resume_at": { "type": "object", "properties": {
                    "source": { "type": "string" }, "topic": { "type": "string" }, "partition": { "type": "integer" },
                    "offset": { "type": "integer" }, "event_id": { "type": "string" }
                }},
                "oversized": { "type": "array", "items": { "$ref": "#/components/schemas/SkippedEvent" } },
                "damaged_segments": { "type": "array", "items": { "$ref": "#/components/schemas/SkippedSegment" } }
            }},
            "error": nullable("string")
        }
    }));
    schemas.insert("SkippedEvent".to_owned(), json!({
        "type": "object",
        "properties": {
            "event_id": { "type": "string" }, "source": { "type": "string" }, "topic": { "type": "string" },
            "partition": { "type": "integer" }, "offset": { "type": "integer" }, "destination": { "type": "string" },
            "size": { "type": "integer" }, "limit": { "type": "integer" }, "limit_from": { "type": "string" }
        }
    }));
    schemas.insert("SkippedSegment".to_owned(), json!({
        "type": "object",
        "properties": { "uri": { "type": "string" }, "rows": { "type": "integer" }, "error": { "type": "string" } }
    }));
    schemas
}

fn core_document() -> Value {
    let secured = json!([{ "bearer": [] }]);
    let maintenance_responses = with_errors(
        json!({ "200": { "description": "maintenance", "content": { "application/json": { "schema": { "type": "object", "properties": {
                    "policy": { "type": "object", "properties": {
                        "compaction_enabled": { "type": "boolean" }, "interval_seconds": { "type": "integer" }, "target_bytes": { "type": "integer" },
                        "zstd_level": { "type": "integer" }, "grace_seconds": { "type": "integer" },
                        "retention": { "type": "array", "items": { "type": "object", "properties": { "source": { "type": "string" }, "topic": { "type": ["string", "null"] }, "keep_seconds": { "type": "integer" } } } }
                    } },
                    "runs": { "type": "array", "items": { "type": "object", "properties": {
                        "id": { "type": "string" }, "kind": { "type": "string", "enum": ["compaction", "retention", "erasure"] }, "dry_run": { "type": "boolean" },
                        "actor": { "type": ["string", "null"] }, "scope": { "type": "object" }, "started_at": { "type": "string" }, "finished_at": { "type": ["string", "null"] },
                        "status": { "type": "string" }, "segments_in": { "type": "integer" }, "segments_out": { "type": "integer" }, "rows_in": { "type": "integer" },
                        "rows_out": { "type": "integer" }, "bytes_in": { "type": "integer" }, "bytes_out": { "type": "integer" }, "error": { "type": ["string", "null"] }
                    } } },
                    "retired_objects_waiting": { "type": "integer" }
                } } } } } }),
        &["401", "503"],
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Hindsight",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Event archive for Kafka and RabbitMQ: search, fetch and query archived events with SQL. \
                            When http.auth_token is set, every /api/v1 route except this document, and /metrics, \
                            need `Authorization: Bearer <token>`. Every route refuses a Host header the server does \
                            not answer to (403; see http.allowed_hosts), and every POST needs Content-Type \
                            application/json (or application/sql for /api/v1/sql): without one, or with text/plain \
                            or a form type, it is refused (415), so other web sites cannot post through a browser.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "paths": {
            "/healthz": { "get": {
                "operationId": "healthz", "summary": "Liveness: the process answers",
                "responses": { "200": { "description": "ok", "content": { "text/plain": { "schema": { "type": "string" } } } } }
            }},
            "/readyz": { "get": {
                "operationId": "readyz", "summary": "Readiness: the catalog answers",
                "responses": with_errors(json!({ "200": { "description": "ready", "content": { "text/plain": { "schema": { "type": "string" } } } } }), &["503"])
            }},
            "/metrics": { "get": {
                "operationId": "metrics", "summary": "Prometheus / OpenMetrics text", "security": secured,
                "responses": with_errors(json!({ "200": { "description": "metrics", "content": { "application/openmetrics-text": { "schema": { "type": "string" } } } } }), &["401"])
            }},
            "/api/v1/openapi.json": { "get": {
                "operationId": "openapi", "summary": "This document",
                "responses": { "200": { "description": "the OpenAPI document", "content": { "application/json": { "schema": { "type": "object" } } } } }
            }},
            "/api/v1/topics": { "get": {
                "operationId": "listTopics", "summary": "Events, bytes, segments and time span per source and topic", "security": secured,
                "responses": with_errors(json!({ "200": { "description": "topics", "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": "#/components/schemas/Topic" } } } } } }), &["401", "503"])
            }},
            "/api/v1/connections": { "get": {
                "operationId": "listConnections", "summary": "The named connections replays may target (no secrets), and whether ad-hoc addresses are allowed", "security": secured,
                "responses": with_errors(json!({ "200": { "description": "connections", "content": { "application/json": { "schema": { "type": "object", "properties": {
                    "connections": { "type": "array", "items": { "type": "object", "properties": { "name": { "type": "string" }, "bus": { "type": "string", "enum": ["kafka", "amqp"] }, "addresses": { "type": "string" }, "security": { "type": "string" } } } },
                    "allow_adhoc_targets": { "type": "boolean" }
                } } } } } }), &["401"])
            }},
            "/api/v1/sources": { "get": {
                "operationId": "listSources", "summary": "Configured sources that have archived something", "security": secured,
                "responses": with_errors(json!({ "200": { "description": "sources", "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": "#/components/schemas/Source" } } } } } }), &["401", "503"])
            }},
            "/api/v1/segments": { "get": {
                "operationId": "listSegments", "summary": "Committed segments (Parquet files)", "security": secured,
                "parameters": [
                    query_parameter("source", "only this source", json!({ "type": "string" })),
                    query_parameter("topic", "only this topic or exchange", json!({ "type": "string" })),
                    query_parameter("partition", "only this partition", json!({ "type": "integer", "format": "int32" })),
                    query_parameter("limit", "at most this many (default 1000, at most 10000)", json!({ "type": "integer", "minimum": 0 }))
                ],
                "responses": with_errors(json!({ "200": { "description": "segments", "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": "#/components/schemas/Segment" } } } } } }), &["400", "401", "503"])
            }},
            "/api/v1/maintenance": { "get": {
                "operationId": "getMaintenance", "summary": "Compaction and retention policy, the latest compaction, retention and erasure runs, and retired objects awaiting deletion", "security": secured,
                "responses": maintenance_responses
            }},
            "/api/v1/sql": { "post": {
                "operationId": "runSql",
                "summary": "Run one read-only SQL statement and stream the result",
                "description": "Tables: events (with payload_text), events_dedup, events_raw, segments. \
                                DDL, DML, COPY, SET and file or URL tables are refused with 400 read_only. \
                                The result streams as NDJSON (default), JSON, CSV, Arrow IPC or Parquet, chosen by \
                                the Accept header or the format parameter. Errors before the first row are JSON \
                                with a status code; an error after it cuts the response short.",
                "security": secured,
                "parameters": [
                    query_parameter("format", "overrides Accept", json!({ "type": "string", "enum": ["ndjson", "json", "csv", "arrow", "parquet"] }))
                ],
                "requestBody": {
                    "required": true,
                    "content": {
                        "application/json": { "schema": { "$ref": "#/components/schemas/SqlRequest" } },
                        "application/sql": { "schema": { "type": "string" } }
                    }
                },
                "responses": with_errors(json!({
                    "200": {
                        "description": "the rows",
                        "headers": {
                            "x-hindsight-segments-scanned": { "description": "segments opened", "schema": { "type": "integer" } },
                            "x-hindsight-segments-from-catalog": { "description": "segments the catalog matched before pruning", "schema": { "type": "integer" } }
                        },
                        "content": {
                            "application/x-ndjson": { "schema": { "type": "string" } },
                            "application/json": { "schema": { "type": "array", "items": { "type": "object" } } },
                            "text/csv": { "schema": { "type": "string" } },
                            "application/vnd.apache.arrow.stream": { "schema": { "type": "string", "contentMediaType": "application/vnd.apache.arrow.stream" } },
                            "application/vnd.apache.parquet": { "schema": { "type": "string", "contentMediaType": "application/vnd.apache.parquet" } }
                        }
                    }
                }), &["400", "401", "406", "413", "415", "422", "429", "500", "503"])
            }},
            "/api/v1/events": { "get": {
                "operationId": "searchEvents",
                "summary": "Search events, newest first, with cursor pagination",
                "security": secured,
                "parameters": filter_parameters(&[
                    query_parameter("limit", "page size (default 50, at most 1000)", json!({ "type": "integer", "minimum": 1, "maximum": 1000 })),
                    query_parameter("cursor", "next_cursor of the previous page", json!({ "type": "string" }))
                ]),
                "responses": with_errors(json!({ "200": { "description": "a page of events", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/EventPage" } } } } }), &["400", "401", "422", "429", "500", "503"])
            }},
            "/api/v1/events/histogram": { "get": {
                "operationId": "eventHistogram",
                "summary": "Counts of the filter's events per time bucket (only buckets with events, in time order; buckets start at multiples of step_ms since the epoch)",
                "security": secured,
                "parameters": filter_parameters(&[
                    query_parameter("step_ms", "bucket length in milliseconds (at least 1; at most 10000 buckets between from and to)", json!({ "type": "integer", "minimum": 1 }))
                ]),
                "responses": with_errors(json_response("the buckets", histogram_schema()), &["400", "401", "422", "429", "500", "503"])
            }},
            "/api/v1/events/sql": { "get": {
                "operationId": "eventFilterSql",
                "summary": "The filter as SQL over the events view: a condition (where) and a query selecting its events (sql), for the SQL route or a replay's SQL selection",
                "security": secured,
                "parameters": filter_parameters(&[]),
                "responses": with_errors(json_response("the SQL text", filter_sql_schema()), &["400", "401"])
            }},
            "/api/v1/events/{event_id}": { "get": {
                "operationId": "getEvent",
                "summary": "One whole event: headers, properties and payload",
                "security": secured,
                "parameters": [
                    { "name": "event_id", "in": "path", "required": true, "description": "32 lowercase hex characters", "schema": { "type": "string", "pattern": "^[0-9a-f]{32}$" } }
                ],
                "responses": with_errors(json!({ "200": { "description": "the event", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/EventDetail" } } } } }), &["400", "401", "404", "429", "500", "503"])
            }}
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": {
                "Error400": error_response("invalid input: bad SQL, a refused statement (read_only) or a bad parameter"),
                "Error401": error_response("missing or wrong bearer token"),
                "Error403": error_response("the Host header names a host this server does not answer to (host_not_allowed): add it to http.allowed_hosts"),
                "Error404": error_response("not found"),
                "Error409": error_response("conflict: the replay is not in a state that allows this request"),
                "Error406": error_response("the Accept header names no format this API produces"),
                "Error413": error_response("the request body is larger than http.max_body_bytes"),
                "Error415": error_response("no Content-Type, or one this route does not take: POST needs application/json (or application/sql for /api/v1/sql)"),
                "Error422": error_response("the query needed more memory than query.max_memory_bytes"),
                "Error429": error_response("too many queries are running"),
                "Error500": error_response("an internal error, or a segment file that is missing or corrupt (segment_unreadable, naming it)"),
                "Error503": error_response("the catalog or store is unavailable, or the query ran past query.timeout")
            },
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error", "message"],
                    "properties": { "error": { "type": "string", "description": "kind" }, "message": { "type": "string" } }
                },
                "SqlRequest": {
                    "type": "object", "required": ["sql"], "additionalProperties": false,
                    "properties": { "sql": { "type": "string" } }
                },
                "Topic": {
                    "type": "object",
                    "properties": {
                        "source": { "type": "string" }, "topic": { "type": "string" },
                        "events": { "type": "integer" }, "bytes": { "type": "integer" }, "segments": { "type": "integer" },
                        "first_event_time": nullable("string"), "last_event_time": nullable("string"), "last_committed_at": nullable("string")
                    }
                },
                "Source": {
                    "type": "object",
                    "properties": { "name": { "type": "string" }, "bus": { "type": "string" }, "created_at": nullable("string") }
                },
                "Segment": {
                    "type": "object",
                    "properties": {
                        "uri": { "type": "string" }, "source": { "type": "string" }, "topic": { "type": "string" },
                        "partition": { "type": "integer" }, "first_offset": { "type": "integer" }, "last_offset": { "type": "integer" },
                        "rows": { "type": "integer" }, "bytes": { "type": "integer" },
                        "min_event_time": nullable("string"), "max_event_time": nullable("string")
                    }
                },
                "Header": {
                    "type": "object",
                    "properties": { "name": { "type": "string" }, "value": nullable("string"), "value_base64": nullable("string") }
                },
                "Event": {
                    "type": "object",
                    "properties": {
                        "event_id": { "type": "string" }, "source": { "type": "string" }, "bus": { "type": "string", "enum": ["kafka", "amqp"] },
                        "topic": { "type": "string" }, "routing_key": nullable("string"),
                        "partition": nullable("integer"), "offset": nullable("integer"),
                        "key": nullable("string"), "key_base64": nullable("string"),
                        "headers": { "type": "array", "items": { "$ref": "#/components/schemas/Header" } },
                        "payload_text": nullable("string"), "payload_base64": { "type": ["string", "null"], "description": "null for a Kafka tombstone" },
                        "tombstone": { "type": "boolean", "description": "a Kafka record with a null value (not an empty one)" },
                        "payload_size": { "type": "integer" }, "payload_truncated": { "type": "boolean" },
                        "content_type": nullable("string"), "message_id": nullable("string"), "correlation_id": nullable("string"),
                        "timestamp_type": nullable("string"),
                        "amqp": { "type": ["object", "null"] },
                        "redelivered": nullable("boolean"),
                        "event_time": nullable("string"), "ingest_time": nullable("string"),
                        "decoded_preview": { "type": "string", "description": "in search results: the start of a schema-framed payload (Avro, Protobuf, JSON Schema) decoded" }
                    }
                },
                "EventDetail": {
                    "allOf": [
                        { "$ref": "#/components/schemas/Event" },
                        { "type": "object", "properties": {
                            "copies": { "type": "integer", "description": "archived copies (AMQP redeliveries)" },
                            "decoded": {
                                "type": "object",
                                "description": "the payload decoded with its schema (absent when it does not decode); replay always sends the original bytes",
                                "properties": {
                                    "format": { "type": "string", "enum": ["avro", "protobuf", "json_schema", "json"] },
                                    "schema_id": { "type": "integer" }, "registry": { "type": "string" },
                                    "subject": { "type": "string" }, "version": { "type": "integer" },
                                    "schema_name": { "type": "string", "description": "the record or message type" },
                                    "value": { "description": "the decoded value as JSON" }
                                },
                                "required": ["format", "value"]
                            },
                            "decode_error": { "type": "string", "description": "why the payload does not decode" }
                        } }
                    ]
                },
                "EventPage": {
                    "type": "object",
                    "properties": {
                        "events": { "type": "array", "items": { "$ref": "#/components/schemas/Event" } },
                        "next_cursor": nullable("string"),
                        "segments_scanned": { "type": "integer" }
                    }
                }
            }
        }
    })
}

/// The filter parameters of every event route, then `extra`.
fn filter_parameters(extra: &[Value]) -> Value {
    let mut parameters = vec![
        query_parameter("source", "source name", json!({ "type": "string" })),
        query_parameter("topic", "Kafka topic, AMQP exchange or stream; repeat for any of several", json!({ "type": "array", "items": { "type": "string" } })),
        query_parameter("partition", "Kafka partition", json!({ "type": "integer", "format": "int32" })),
        query_parameter("from", "event_time at or after (RFC 3339)", json!({ "type": "string", "format": "date-time" })),
        query_parameter("to", "event_time before (RFC 3339)", json!({ "type": "string", "format": "date-time" })),
        query_parameter("key", "Kafka key (UTF-8)", json!({ "type": "string" })),
        query_parameter("header", "name=value; repeat for several", json!({ "type": "array", "items": { "type": "string" } })),
        query_parameter("contains", "text the UTF-8 payload contains", json!({ "type": "string" })),
        query_parameter("correlation_id", "the event's correlation id", json!({ "type": "string" })),
        query_parameter("json", "path=value on the JSON payload, path dot-separated (customer.id=42; a number indexes an array: items.0.sku=A-1); repeat for several", json!({ "type": "array", "items": { "type": "string" } })),
    ];
    parameters.extend(extra.iter().cloned());
    Value::Array(parameters)
}

/// A 200 answer with a JSON body of `schema`.
fn json_response(description: &str, schema: Value) -> Value {
    json!({ "200": { "description": description, "content": { "application/json": { "schema": schema } } } })
}

fn histogram_schema() -> Value {
    let bucket = json!({ "type": "object", "required": ["start", "count"], "properties": {
        "start": { "type": "string", "format": "date-time" }, "count": { "type": "integer" } } });
    json!({
        "type": "object", "required": ["step_ms", "buckets"],
        "properties": { "step_ms": { "type": "integer" }, "buckets": { "type": "array", "items": bucket } }
    })
}

fn filter_sql_schema() -> Value {
    json!({
        "type": "object", "required": ["where", "sql"],
        "properties": { "where": { "type": "string" }, "sql": { "type": "string" } }
    })
}
