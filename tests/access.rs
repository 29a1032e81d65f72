//! Access control: roles, scopes, tokens, the audit trail and the start-up
//! refusal, over the HTTP API of a real `hindsight serve`.
//!
//! The matrix is generated from `ROUTES`: a route without a decision in
//! `route_access` fails it.

use std::collections::BTreeMap;
use std::path::Path;

use hindsight_archive::access::Role;
use hindsight_server::{route_access, Access, ROUTES};
use serde_json::Value;

use crate::query::{http, write_config, HttpResponse, Server, Target};
use crate::util::{archive_demo, hex, hindsight, run_ok};

const ROLES: [Role; 4] = [Role::Viewer, Role::Analyst, Role::Operator, Role::Admin];

/// A token made by `hindsight token create --config-only`: (token, entry).
fn config_token(name: &str, role: Role, topics: &[&str]) -> (String, String) {
    let mut command = hindsight();
    command.args([
        "token",
        "create",
        name,
        "--role",
        role.as_str(),
        "--config-only",
        "--json",
    ]);
    for topic in topics {
        command.args(["--topic", topic]);
    }
    let output = run_ok(&mut command);
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    (
        printed["token"].as_str().unwrap().to_owned(),
        printed["config"].as_str().unwrap().to_owned(),
    )
}

fn request(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer.as_str()));
    }
    http(address, &method.to_uppercase(), path, &headers, body)
}

/// The concrete request for a route: in scope (orders) or out (payments).
fn concrete(
    method: &str,
    path: &str,
    in_scope: bool,
    ids: &BTreeMap<&str, String>,
) -> (String, Vec<u8>) {
    let topic = if in_scope { "orders" } else { "payments" };
    let event_id = &ids[topic];
    let path = path
        .replace("{event_id}", event_id)
        .replace("{id}", "0123456789abcdef0123456789abcdef")
        .replace("{name}", "no-such-token")
        .replace("{namespace}", "demo")
        .replace("{table}", topic);
    let path = match path.as_str() {
        "/api/v1/events" => format!("{path}?topic={topic}&limit=50"),
        "/api/v1/events/sql" => format!("{path}?topic={topic}"),
        "/api/v1/events/histogram" => format!("{path}?topic={topic}&step_ms=3600000"),
        "/api/v1/segments" => format!("{path}?topic={topic}"),
        _ => path,
    };
    let body = match (method, path.as_str()) {
        ("post", "/api/v1/sql") => {
            format!("{{\"sql\": \"SELECT topic, count(*) AS n FROM events WHERE topic = '{topic}' GROUP BY topic\"}}")
        }
        // Refused by the route's own checks once the role passes.
        ("post", "/api/v1/replays") => "{}".to_owned(),
        ("post", "/api/v1/tokens") => "{\"name\": \"\", \"role\": \"viewer\"}".to_owned(),
        _ => "{}".to_owned(),
    };
    (path, body.into_bytes())
}

/// What a principal allowed on the route gets, by route.
fn expected_status(method: &str, path: &str, in_scope: bool) -> u16 {
    match (method, path) {
        ("get", "/api/v1/events/{event_id}") if !in_scope => 404,
        ("get", "/iceberg/v1/namespaces/{namespace}/tables/{table}") if !in_scope => 404,
        ("get", "/api/v1/replays/{id}") => 404,
        (
            "post",
            "/api/v1/replays/{id}/pause"
            | "/api/v1/replays/{id}/resume"
            | "/api/v1/replays/{id}/cancel",
        ) => 404,
        ("post", "/api/v1/tokens/{name}/revoke") => 404,
        ("post", "/api/v1/replays" | "/api/v1/tokens") => 400,
        _ => 200,
    }
}

fn demo_ids(config: &Path) -> BTreeMap<&'static str, String> {
    let mut ids = BTreeMap::new();
    for topic in ["orders", "payments"] {
        let rows = crate::util::query_json(
            config,
            &format!("SELECT event_id FROM events WHERE topic = '{topic}' LIMIT 1"),
        );
        ids.insert(topic, rows[0]["event_id"].as_str().unwrap().to_owned());
    }
    ids
}

#[test]
fn every_route_answers_every_role_in_and_out_of_scope_as_decided() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    archive_demo(&data, 2_000);
    let mut tokens = BTreeMap::new();
    let mut entries = String::new();
    for role in ROLES {
        let (token, entry) = config_token(&format!("orders-{role}"), role, &["orders"]);
        tokens.insert(role, token);
        entries.push_str(&entry);
    }
    let config = write_config(directory.path(), &data, &entries);
    let ids = demo_ids(&config);
    // The Iceberg tables the REST catalog routes serve.
    run_ok(
        hindsight()
            .arg("--config")
            .arg(&config)
            .args(["table", "sync"]),
    );
    let server = Server::start(&Target::Config(config.clone()));
    let address = server.address.as_str();
    let mut checked = 0;
    for (method, path) in ROUTES {
        let decision = route_access(method, path)
            .unwrap_or_else(|| panic!("{method} {path} has no access decision in route_access"));
        for in_scope in [true, false] {
            let (target, body) = concrete(method, path, in_scope, &ids);
            // No token, and a token nobody made.
            for token in [None, Some("hs_not-a-token")] {
                let response = request(address, method, &target, token, &body);
                let want = match decision.0 {
                    Access::Public => 200,
                    Access::Least(_) => 401,
                };
                assert_eq!(
                    response.status,
                    want,
                    "{method} {target} with {token:?}: {}",
                    response.text()
                );
            }
            for role in ROLES {
                let response = request(address, method, &target, Some(&tokens[&role]), &body);
                let what = format!("{method} {target} as {role} (scope orders)");
                let want = match decision.0 {
                    Access::Public => 200,
                    Access::Least(least) if role < least => 403,
                    // Tokens and the audit trail need an admin without a scope.
                    Access::Least(Role::Admin) => 403,
                    Access::Least(_) => expected_status(method, path, in_scope),
                };
                assert_eq!(response.status, want, "{what}: {}", response.text());
                if response.status == 200 && method == "get" && path != "/api/v1/events/sql" {
                    let text = response.text();
                    // Nothing of another topic: no name, no event id.
                    if (path.starts_with("/api/v1/") || path.starts_with("/iceberg/"))
                        && path != "/api/v1/openapi.json"
                        && path != "/api/v1/audit"
                    {
                        assert!(
                            !text.contains("payments") && !text.contains(&ids["payments"]),
                            "{what} shows another topic: {text}"
                        );
                    }
                }
                if response.status == 200 && path == "/api/v1/sql" {
                    let text = response.text();
                    assert!(!text.contains("payments"), "{what}: {text}");
                    assert_eq!(text.trim().is_empty(), !in_scope, "{what}: {text}");
                }
                checked += 1;
            }
        }
    }
    println!("{checked} route × role × scope requests checked");
    // A viewer sees no payload, and may not filter by one.
    let page = request(
        address,
        "get",
        "/api/v1/events?topic=orders&limit=5",
        Some(&tokens[&Role::Viewer]),
        b"",
    )
    .json();
    for event in page["events"].as_array().unwrap() {
        assert!(
            event["payload_text"].is_null() && event["payload_base64"].is_null(),
            "{event}"
        );
        assert!(
            event["key"].is_null() && event["key_base64"].is_null(),
            "{event}"
        );
        assert_eq!(event["payload_redacted"], true, "{event}");
    }
    for probe in ["contains=a", "json=currency=EUR", "key=x", "header=a=b"] {
        let path = format!("/api/v1/events?topic=orders&{probe}");
        let probe = request(address, "get", &path, Some(&tokens[&Role::Viewer]), b"");
        assert_eq!(probe.status, 403, "{path}: {}", probe.text());
    }
    let analyst = request(
        address,
        "get",
        "/api/v1/events?topic=orders&limit=5",
        Some(&tokens[&Role::Analyst]),
        b"",
    )
    .json();
    assert!(
        analyst["events"][0]["payload_base64"].is_string(),
        "{analyst}"
    );
}

fn sql_as(address: &str, token: &str, sql: &str) -> Vec<Value> {
    let body = serde_json::json!({ "sql": sql }).to_string();
    let response = request(
        address,
        "post",
        "/api/v1/sql?format=json",
        Some(token),
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "{sql}: {}", response.text());
    serde_json::from_slice(&response.body).unwrap()
}

#[test]
fn a_token_scoped_to_orders_never_sees_a_row_or_a_count_of_another_topic() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    archive_demo(&data, 3_000);
    let (scoped, scoped_entry) = config_token("orders-analyst", Role::Analyst, &["orders"]);
    let (admin, admin_entry) = config_token("admin", Role::Admin, &[]);
    let config = write_config(
        directory.path(),
        &data,
        &format!("{scoped_entry}{admin_entry}"),
    );
    let server = Server::start(&Target::Config(config));
    let address = server.address.as_str();
    let orders = sql_as(address, &admin, "SELECT count(*) AS n, count(DISTINCT event_id) AS ids, sum(payload_size) AS bytes FROM events WHERE topic = 'orders'");
    let total = sql_as(address, &admin, "SELECT count(*) AS n FROM events");
    assert!(
        total[0]["n"].as_i64() > orders[0]["n"].as_i64(),
        "the demo has other topics"
    );
    // Each query would count other topics without the scope.
    let same_count = [
        ("SELECT count(*) AS n FROM events", "n"),
        ("SELECT count(*) AS n FROM events_raw", "n"),
        ("SELECT count(*) AS n FROM events_dedup", "ids"),
        ("SELECT count(*) AS n FROM (SELECT * FROM events WHERE topic <> 'nothing') AS sub", "n"),
        ("SELECT count(*) AS n FROM events_dedup a JOIN events_dedup b ON a.event_id = b.event_id", "ids"),
        ("SELECT count(*) AS n FROM (SELECT event_id FROM events WHERE topic = 'orders' UNION ALL SELECT event_id FROM events WHERE topic <> 'orders') AS u", "n"),
        ("SELECT sum(rows) AS n FROM segments", "n"),
        ("SELECT count(*) AS n FROM events WHERE event_id IN (SELECT event_id FROM events_raw)", "n"),
        ("SELECT count(*) AS n FROM events e WHERE EXISTS (SELECT 1 FROM segments s WHERE s.topic = e.topic)", "n"),
    ];
    for (sql, expected) in same_count {
        let rows = sql_as(address, &scoped, sql);
        assert_eq!(rows[0]["n"], orders[0][expected], "{sql}: {rows:?}");
    }
    let bytes = sql_as(
        address,
        &scoped,
        "SELECT sum(payload_size) AS bytes FROM events",
    );
    assert_eq!(bytes[0]["bytes"], orders[0]["bytes"]);
    for sql in [
        "SELECT DISTINCT topic FROM events",
        "SELECT topic FROM events UNION SELECT topic FROM segments",
        "SELECT topic, count(*) AS n FROM events_dedup GROUP BY topic",
        "SELECT topic FROM events WHERE topic = 'payments'",
        "SELECT topic FROM segments WHERE topic IN ('payments', 'shipments', 'orders')",
        "WITH t AS (SELECT topic FROM events_raw) SELECT DISTINCT topic FROM t",
    ] {
        let rows = sql_as(address, &scoped, sql);
        for row in &rows {
            assert!(row["topic"] == "orders", "{sql} shows {row}");
        }
    }
    let nothing = sql_as(
        address,
        &scoped,
        "SELECT count(*) AS n FROM events WHERE topic = 'payments'",
    );
    assert_eq!(nothing[0]["n"], 0);
    // The typed views and the topic list follow the scope too.
    let topics = request(address, "get", "/api/v1/topics", Some(&scoped), b"").json();
    let names: Vec<&str> = topics
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["topic"].as_str())
        .collect();
    assert_eq!(names, vec!["orders"]);
}

#[test]
fn catalog_tokens_work_until_revoked_and_every_request_is_audited_once() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    archive_demo(&data, 1_000);
    let config = write_config(directory.path(), &data, "");
    let created = run_ok(
        hindsight()
            .arg("--config")
            .arg(&config)
            .args(["token", "create", "ops", "--role", "operator", "--json"]),
    );
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let admin = run_ok(
        hindsight()
            .arg("--config")
            .arg(&config)
            .args(["token", "create", "root", "--role", "admin", "--json"]),
    );
    let admin: Value = serde_json::from_slice(&admin.stdout).unwrap();
    let admin = admin["token"].as_str().unwrap().to_owned();
    let listed = run_ok(
        hindsight()
            .arg("--config")
            .arg(&config)
            .args(["token", "list", "--json"]),
    );
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.contains("\"ops\"") && !listed.contains(&token),
        "{listed}"
    );

    let server = Server::start(&Target::Config(config.clone()));
    let address = server.address.as_str();
    // A scripted session: 1000 mixed requests, each recorded exactly once.
    let mut sent: BTreeMap<(String, u16), usize> = BTreeMap::new();
    for index in 0..1000usize {
        let (method, path, body, who): (&str, String, String, Option<&str>) = match index % 8 {
            0 => (
                "post",
                "/api/v1/sql".to_owned(),
                format!("{{\"sql\": \"SELECT {index} AS i\"}}"),
                Some(&token),
            ),
            1 => (
                "get",
                format!("/api/v1/events?limit={}", 1 + index % 20),
                String::new(),
                Some(&token),
            ),
            2 => (
                "get",
                "/api/v1/topics".to_owned(),
                String::new(),
                Some(&token),
            ),
            3 => (
                "get",
                "/api/v1/events/histogram?step_ms=60000".to_owned(),
                String::new(),
                Some(&token),
            ),
            4 => (
                "get",
                "/api/v1/tokens".to_owned(),
                String::new(),
                Some(&token),
            ), // 403: operator
            5 => ("get", "/api/v1/topics".to_owned(), String::new(), None), // 401
            6 => (
                "get",
                "/api/v1/whoami".to_owned(),
                String::new(),
                Some(&admin),
            ),
            _ => (
                "get",
                "/api/v1/replays".to_owned(),
                String::new(),
                Some(&token),
            ),
        };
        let response = request(address, method, &path, who, body.as_bytes());
        let action = route_access(method, path.split('?').next().unwrap())
            .unwrap()
            .1
            .unwrap();
        *sent
            .entry((action.to_owned(), response.status))
            .or_default() += 1;
    }
    assert_eq!(
        sent.get(&("tokens.list".to_owned(), 403)),
        Some(&125),
        "{sent:?}"
    );
    // Revocation takes effect at once.
    run_ok(
        hindsight()
            .arg("--config")
            .arg(&config)
            .args(["token", "revoke", "ops"]),
    );
    let refused = request(address, "get", "/api/v1/topics", Some(&token), b"");
    assert_eq!(refused.status, 401, "{}", refused.text());
    *sent.entry(("topics.list".to_owned(), 401)).or_default() += 1;
    let trail = request(
        address,
        "get",
        "/api/v1/audit?limit=100000",
        Some(&admin),
        b"",
    );
    assert_eq!(trail.status, 200);
    drop(server); // SIGTERM: the audit queue drains before the process exits

    let exported = run_ok(
        hindsight()
            .arg("--config")
            .arg(&config)
            .args(["audit", "--json", "--limit", "100000"]),
    );
    let records: Vec<Value> = String::from_utf8(exported.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let mut recorded: BTreeMap<(String, u16), usize> = BTreeMap::new();
    for record in records.iter().filter(|r| {
        r["principal"] != "cli:root"
            && !r["action"].as_str().unwrap().starts_with("token.")
            && r["action"] != "audit.read"
    }) {
        let key = (
            record["action"].as_str().unwrap().to_owned(),
            record["status"].as_u64().unwrap() as u16,
        );
        *recorded.entry(key).or_default() += 1;
    }
    assert_eq!(recorded, sent, "one audit record per request");
    let sql = records
        .iter()
        .find(|r| r["action"] == "sql" && r["detail"] == "SELECT 8 AS i")
        .unwrap();
    assert_eq!(sql["principal"], "ops");
    assert_eq!(sql["count"], 1);
    assert_eq!(sql["address"], "127.0.0.1");
    assert!(records
        .iter()
        .any(|r| r["action"] == "token.create"
            && r["principal"].as_str().unwrap().starts_with("cli:")));
    assert!(records.iter().any(|r| r["action"] == "token.revoke"));
    assert!(records
        .iter()
        .any(|r| r["action"] == "audit.read" && r["principal"] == "root"));
    let text = String::from_utf8_lossy(&exported.stdout);
    assert!(
        !text.contains(&token) && !text.contains(&admin),
        "a token is in the audit trail"
    );
}

/// The standard error of `hindsight serve` on `listen`, which must fail.
fn refused_start(config: &Path, listen: &str) -> String {
    let refused = hindsight()
        .arg("--config")
        .arg(config)
        .args(["serve", "--listen", listen])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    String::from_utf8_lossy(&refused.stderr).into_owned()
}

#[test]
fn a_server_without_tokens_listens_on_loopback_only() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    archive_demo(&data, 200);
    let config = write_config(directory.path(), &data, "");
    let stderr = refused_start(&config, "0.0.0.0:0");
    assert!(
        stderr.contains("http.listen 0.0.0.0:0") && stderr.contains("allow_unauthenticated"),
        "{stderr}"
    );
    // With a token, or the explicit setting, it starts.
    let (_token, entry) = config_token("admin", Role::Admin, &[]);
    for extra in [entry, "[http]\nallow_unauthenticated = true\n".to_owned()] {
        let config = write_config(directory.path(), &data, &extra);
        let (mut child, mut stdout) =
            crate::util::spawn_with_stdout(hindsight().arg("--config").arg(&config).args([
                "serve",
                "--listen",
                "0.0.0.0:0",
            ]));
        crate::util::read_until(
            &mut stdout,
            "serving the API",
            std::time::Duration::from_secs(60),
        );
        let status = crate::util::terminate(&mut child);
        assert!(status.success(), "{status:?}");
    }
}

/// Every string in `secrets` (and its hex) is absent from `body`.
fn assert_hidden(body: &str, secrets: &[String], what: &str) {
    for secret in secrets {
        assert!(
            !body.contains(secret.as_str()) && !body.contains(&hex(secret.as_bytes())),
            "{what} shows {secret}: {}",
            body.chars().take(400).collect::<String>()
        );
    }
}

#[test]
fn redacted_fields_never_leave_the_server_below_the_policys_role() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    archive_demo(&data, 3_000);
    let (analyst, analyst_entry) = config_token("analyst", Role::Analyst, &[]);
    let (operator, operator_entry) = config_token("operator", Role::Operator, &[]);
    let policy = "[[redaction]]\ntopics = [\"payments\"]\njson_paths = [\"$.psp_reference\"]\n\
                  key = true\nunmasked_for = \"operator\"\n";
    let config = write_config(
        directory.path(),
        &data,
        &format!("{analyst_entry}{operator_entry}{policy}"),
    );
    // What must never show: every payment's PSP reference, from the files.
    let secrets: Vec<String> = crate::util::query_json(
        &config,
        "SELECT DISTINCT json_get_str(payload_text, 'psp_reference') AS psp FROM events \
         WHERE topic = 'payments' ORDER BY 1 LIMIT 20",
    )
    .iter()
    .map(|row| row["psp"].as_str().unwrap().to_owned())
    .collect();
    assert_eq!(secrets.len(), 20);
    let server = Server::start(&Target::Config(config));
    let address = server.address.as_str();
    // The operator (the policy's role) sees them.
    let raw = sql_as(address, &operator, "SELECT json_get_str(payload_text, 'psp_reference') AS psp FROM events WHERE topic = 'payments'");
    let shown = serde_json::to_string(&raw).unwrap();
    assert!(secrets.iter().all(|secret| shown.contains(secret.as_str())));

    let templates: [&str; 10] = [
        "SELECT payload_text FROM events WHERE topic = 'payments' AND payload_text LIKE '%{s}%'",
        "SELECT count(*) AS n FROM events WHERE payload_text LIKE '%{s}%'",
        "SELECT CAST(payload AS VARCHAR) AS p, encode(payload, 'hex') AS h FROM events WHERE topic = 'payments' ORDER BY json_get_str(payload_text, 'psp_reference') LIMIT 50",
        "SELECT substr(payload_text, strpos(payload_text, 'psp-'), 16) AS s, count(*) AS n FROM events_dedup WHERE topic = 'payments' GROUP BY 1 ORDER BY 1 LIMIT 50",
        "SELECT json_get_str(payload_text, 'psp_reference') AS p FROM events WHERE json_get_str(payload_text, 'psp_reference') = '{s}'",
        "SELECT decode_payload(payload, topic) AS d FROM events WHERE topic = 'payments' LIMIT 30",
        "SELECT json_get_str(decode_payload(payload, topic), 'psp_reference') AS p, count(*) AS n FROM events_raw WHERE topic = 'payments' GROUP BY 1 LIMIT 30",
        "SELECT utf8_or_null(key) AS k, lower(upper(payload_text)) AS t FROM events WHERE topic = 'payments' AND strpos(payload_text, '{s}') > 0",
        "SELECT max(payload_text) AS m, min(encode(payload, 'base64')) AS b FROM events WHERE topic = 'payments'",
        "SELECT regexp_replace(payload_text, '\\\\*', 'x', 'g') AS r FROM events WHERE topic = 'payments' ORDER BY r LIMIT 20",
    ];
    let mut requests = 0;
    for secret in &secrets {
        for template in templates {
            let sql = template.replace("{s}", secret);
            let rows = sql_as(address, &analyst, &sql);
            assert_hidden(&serde_json::to_string(&rows).unwrap(), &secrets, &sql);
            if sql.contains("count(*) AS n FROM events WHERE") {
                assert_eq!(rows[0]["n"], 0, "{sql}: a count tells the value exists");
            }
            requests += 1;
        }
    }
    // Search, fetch and export routes.
    let ids = sql_as(
        address,
        &analyst,
        "SELECT event_id FROM events WHERE topic = 'payments' LIMIT 5",
    );
    for row in &ids {
        let path = format!("/api/v1/events/{}", row["event_id"].as_str().unwrap());
        let event = request(address, "get", &path, Some(&analyst), b"");
        assert_eq!(event.status, 200);
        assert_hidden(&event.text(), &secrets, &path);
        assert!(
            event.json()["key"].as_str().unwrap().starts_with("****"),
            "{}",
            event.text()
        );
        requests += 1;
    }
    for path in [
        "/api/v1/events?topic=payments&limit=200".to_owned(),
        format!("/api/v1/events?topic=payments&contains={}", secrets[0]),
        format!(
            "/api/v1/events?topic=payments&json=psp_reference={}",
            secrets[1]
        ),
    ] {
        let page = request(address, "get", &path, Some(&analyst), b"");
        assert_eq!(page.status, 200, "{}", page.text());
        assert_hidden(&page.text(), &secrets, &path);
        if path.contains("contains=") || path.contains("json=") {
            assert_eq!(page.json()["events"].as_array().unwrap().len(), 0, "{path}");
        }
        requests += 1;
    }
    for format in ["csv", "parquet", "arrow"] {
        let body =
            serde_json::json!({"sql": "SELECT * FROM events WHERE topic = 'payments'"}).to_string();
        let export = request(
            address,
            "post",
            &format!("/api/v1/sql?format={format}"),
            Some(&analyst),
            body.as_bytes(),
        );
        assert_eq!(export.status, 200);
        assert_hidden(&String::from_utf8_lossy(&export.body), &secrets, format);
        requests += 1;
    }
    println!(
        "{requests} requests tried to unmask {} values",
        secrets.len()
    );
}

/// `tests/support/iceberg_read.py` through the REST catalog at `address`
/// with `token`: Ok(its JSON answer) or Err(its error line).
fn iceberg_rest(address: &str, token: &str, args: &[&str]) -> Result<Value, String> {
    let output = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/iceberg_read.py"))
        .args([
            "--uri",
            &format!("http://{address}/iceberg"),
            "--token",
            token,
        ])
        .args(args)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn the_iceberg_rest_catalog_shows_a_token_only_the_tables_it_may_read() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    archive_demo(&data, 1_500);
    let (scoped, scoped_entry) = config_token("orders-analyst", Role::Analyst, &["orders"]);
    let (analyst, analyst_entry) = config_token("analyst", Role::Analyst, &[]);
    let (operator, operator_entry) = config_token("operator", Role::Operator, &[]);
    let (viewer, viewer_entry) = config_token("viewer", Role::Viewer, &[]);
    let (admin, admin_entry) = config_token("admin", Role::Admin, &[]);
    // Payments are masked below operator: their files hold the values unmasked.
    let policy = "[[redaction]]\ntopics = [\"payments\"]\njson_paths = [\"$.psp_reference\"]\n\
                  unmasked_for = \"operator\"\n";
    let config = write_config(
        directory.path(),
        &data,
        &format!(
            "{scoped_entry}{analyst_entry}{operator_entry}{viewer_entry}{admin_entry}{policy}"
        ),
    );
    run_ok(
        hindsight()
            .arg("--config")
            .arg(&config)
            .args(["table", "sync"]),
    );
    let server = Server::start(&Target::Config(config));
    let address = server.address.as_str();
    let tables = |token: &str| iceberg_rest(address, token, &["tables"]);
    let names = |list: &[&str]| {
        Value::Array(
            list.iter()
                .map(|topic| serde_json::json!(["demo", topic]))
                .collect(),
        )
    };
    assert_eq!(
        tables(&operator),
        Ok(names(&["orders", "payments", "shipments"]))
    );
    assert_eq!(tables(&analyst), Ok(names(&["orders", "shipments"])));
    assert_eq!(tables(&scoped), Ok(names(&["orders"])));
    // Every table read through the REST catalog holds what SQL counts.
    for topic in ["orders", "payments", "shipments"] {
        let counted = iceberg_rest(address, &operator, &["count", "demo", topic]).unwrap();
        let rows = sql_as(
            address,
            &operator,
            &format!("SELECT count(*) AS n FROM events WHERE topic = '{topic}'"),
        );
        assert_eq!(counted["count"], rows[0]["n"], "{topic}");
        assert!(counted["count"].as_i64().unwrap() > 0, "{topic}");
    }
    // Out of scope, or masked for the role: as if there were no table.
    for (token, topic) in [
        (&scoped, "payments"),
        (&scoped, "shipments"),
        (&analyst, "payments"),
    ] {
        let refused = iceberg_rest(address, token, &["count", "demo", topic]).unwrap_err();
        assert!(refused.contains("NoSuchTableError"), "{topic}: {refused}");
    }
    let refused = iceberg_rest(address, &viewer, &["tables"]).unwrap_err();
    assert!(refused.contains("403"), "{refused}");
    let refused = iceberg_rest(address, "hs_not-a-token", &["tables"]).unwrap_err();
    assert!(refused.contains("401"), "{refused}");
    // Each table load is in the audit trail, with its principal and table.
    let audit = request(
        address,
        "get",
        "/api/v1/audit?action=iceberg.table.load",
        Some(&admin),
        b"",
    )
    .json();
    let loads: Vec<(String, String, i64)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|record| {
            (
                record["principal"].as_str().unwrap().to_owned(),
                record["detail"].as_str().unwrap().to_owned(),
                record["status"].as_i64().unwrap(),
            )
        })
        .collect();
    for (principal, detail, status) in [
        ("operator", "table demo.orders", 200),
        ("orders-analyst", "table demo.payments", 404),
        ("analyst", "table demo.payments", 404),
    ] {
        assert!(
            loads.contains(&(principal.to_owned(), detail.to_owned(), status)),
            "{principal} {detail} {status} not in {loads:?}"
        );
    }
}

/// A JWT signed by `tests/support/jwt_sign.py` with the key in `directory`.
fn jwt(directory: &Path, claims: &str, extra: &[&str]) -> String {
    let output = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/jwt_sign.py"))
        .args(["sign"])
        .arg(directory)
        .arg(claims)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A new RSA key pair in `directory` (key.pem, jwks.json) whose key is `kid`.
fn jwt_keygen(directory: &Path, kid: &str) {
    std::fs::create_dir_all(directory).unwrap();
    let made = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/jwt_sign.py"))
        .arg("keygen")
        .arg(directory)
        .args(["--kid", kid])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}

#[test]
fn jwts_signed_by_the_configured_key_carry_their_role_and_scope() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    archive_demo(&data, 1_000);
    let keys = directory.path().join("keys");
    let other = directory.path().join("other");
    for dir in [&keys, &other] {
        jwt_keygen(dir, "test-key");
    }
    let config = write_config(
        directory.path(),
        &data,
        &format!(
            "[http.jwt]\njwks_file = {:?}\nissuer = \"https://idp.test\"\naudience = \"hindsight\"\n",
            keys.join("jwks.json").display().to_string()
        ),
    );
    let server = Server::start(&Target::Config(config));
    let address = server.address.as_str();
    let claims = |role: &str, exp: &str, topics: &str| {
        format!("{{\"sub\": \"alice\", \"iss\": \"https://idp.test\", \"aud\": \"hindsight\", \"exp\": \"{exp}\", \"hindsight_role\": \"{role}\", \"hindsight_topics\": {topics}}}")
    };
    let analyst = jwt(&keys, &claims("analyst", "+600", "[\"orders\"]"), &[]);
    let me = request(address, "get", "/api/v1/whoami", Some(&analyst), b"").json();
    assert_eq!(me["name"], "jwt:alice");
    assert_eq!(me["role"], "analyst");
    assert_eq!(me["scope"]["topics"][0], "orders");
    let topics = sql_as(address, &analyst, "SELECT DISTINCT topic FROM events");
    assert_eq!(topics, vec![serde_json::json!({"topic": "orders"})]);
    let replay = request(address, "post", "/api/v1/replays", Some(&analyst), b"{}");
    assert_eq!(replay.status, 403, "{}", replay.text());
    // Refused: expired, another key, another audience, no role, HS256 and
    // alg none (both with the set's kid), an unknown kid.
    let refused = [
        jwt(&keys, &claims("admin", "-600", "[]"), &[]),
        jwt(&other, &claims("admin", "+600", "[]"), &[]),
        jwt(&keys, &claims("admin", "+600", "[]").replace("\"hindsight\"", "\"other\""), &[]),
        jwt(&keys, "{\"sub\": \"x\", \"iss\": \"https://idp.test\", \"aud\": \"hindsight\", \"exp\": \"+600\"}", &[]),
        jwt(&keys, &claims("admin", "+600", "[]"), &["--alg", "HS256"]),
        jwt(&keys, &claims("admin", "+600", "[]"), &["--alg", "none"]),
        jwt(&keys, &claims("admin", "+600", "[]"), &["--kid", "unknown"]),
        // No aud claim at all, and a token not yet valid.
        jwt(
            &keys,
            &claims("admin", "+600", "[]").replace("\"aud\": \"hindsight\", ", ""),
            &[],
        ),
        jwt(
            &keys,
            &claims("admin", "+600", "[]").replace("\"exp\"", "\"nbf\": \"+3600\", \"exp\""),
            &[],
        ),
    ];
    for token in &refused {
        let response = request(address, "get", "/api/v1/topics", Some(token), b"");
        assert_eq!(response.status, 401, "{}", response.text());
    }
}

/// Python's `http.server` serving `directory` on a loopback port: the
/// identity provider's JWKS endpoint. Returns the server and its base URL.
fn serve_directory(directory: &Path) -> (crate::util::ChildGuard, String) {
    let (child, mut stdout) = crate::util::spawn_with_stdout(
        std::process::Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(directory),
    );
    let lines = crate::util::read_until(
        &mut stdout,
        "Serving HTTP on",
        std::time::Duration::from_secs(30),
    );
    let port = lines
        .last()
        .and_then(|line| line.split(" port ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no port in {lines:?}"))
        .to_owned();
    (
        crate::util::ChildGuard(child),
        format!("http://127.0.0.1:{port}"),
    )
}

#[test]
fn jwts_are_verified_against_a_jwks_url_that_follows_key_rotation() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    archive_demo(&data, 200);
    let first = directory.path().join("first");
    let second = directory.path().join("second");
    let published = directory.path().join("published");
    jwt_keygen(&first, "key-1");
    jwt_keygen(&second, "key-2");
    std::fs::create_dir_all(&published).unwrap();
    std::fs::copy(first.join("jwks.json"), published.join("jwks.json")).unwrap();
    let (provider, base) = serve_directory(&published);
    let config = write_config(
        directory.path(),
        &data,
        &format!("[http.jwt]\njwks_url = \"{base}/jwks.json\"\naudience = \"hindsight\"\n"),
    );
    let server = Server::start(&Target::Config(config));
    let address = server.address.as_str();
    let claims = |role: &str| {
        format!("{{\"sub\": \"bob\", \"aud\": \"hindsight\", \"exp\": \"+600\", \"hindsight_role\": \"{role}\"}}")
    };
    let status = |token: &str| request(address, "get", "/api/v1/whoami", Some(token), b"").status;
    let old = jwt(&first, &claims("analyst"), &["--kid", "key-1"]);
    let me = request(address, "get", "/api/v1/whoami", Some(&old), b"").json();
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("jwt:bob"), Some("analyst"))
    );
    let new = jwt(&second, &claims("operator"), &["--kid", "key-2"]);
    assert_eq!(status(&new), 401, "key-2 is not published yet");

    // The provider rotates: key-2 replaces key-1. A token naming key-2 makes
    // the server load the set again (at most once every 5 s), with no restart.
    std::fs::copy(second.join("jwks.json"), published.join("jwks.json")).unwrap();
    let rotated = std::time::Instant::now();
    while status(&new) != 200 {
        assert!(
            rotated.elapsed() < std::time::Duration::from_secs(20),
            "the rotated key was never loaded"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    println!("the rotated key was accepted after {:?}", rotated.elapsed());
    assert_eq!(
        status(&old),
        401,
        "key-1 left the set, so its tokens are refused"
    );

    // The provider goes away: the keys loaded before are kept, and a token
    // naming an unknown key is refused, not waited for.
    drop(provider);
    std::thread::sleep(std::time::Duration::from_secs(6));
    let unknown = jwt(&second, &claims("admin"), &["--kid", "key-3"]);
    assert_eq!(status(&unknown), 401);
    assert_eq!(
        status(&new),
        200,
        "a failed load keeps the keys the server has"
    );

    // Start-up: an unreachable key set stops the server with one line
    // naming the setting, the address and the cause; plain http to another
    // host is refused by check-config.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    for (url, expected) in [
        (
            format!("http://user:hunter2@127.0.0.1:{port}/jwks.json"),
            format!("127.0.0.1:{port}"),
        ),
        (
            "http://idp.example.com/jwks.json".to_owned(),
            "must be https".to_owned(),
        ),
    ] {
        let config = write_config(
            directory.path(),
            &data,
            &format!("[http.jwt]\njwks_url = \"{url}\"\n"),
        );
        let stderr = refused_start(&config, "127.0.0.1:0");
        assert!(
            stderr.contains("http.jwt.jwks_url") && stderr.contains(&expected),
            "{stderr}"
        );
        assert!(
            !stderr.contains("hunter2"),
            "the password is shown: {stderr}"
        );
    }
}

#[test]
fn audit_records_made_while_the_disk_is_full_are_written_when_space_returns() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    // The store and the SQLite catalog (and so the audit trail) share one small filesystem.
    let filesystem = crate::amqp::SmallFilesystem::mount(&data, "16m");
    archive_demo(&data, 300);
    let server = Server::start(&Target::DataDir(data.clone()));
    let address = server.address.as_str();
    let ballast = filesystem.fill();
    const REQUESTS: usize = 40;
    for index in 0..REQUESTS {
        let response = request(
            address,
            "get",
            &format!("/api/v1/events?limit={}", 1 + index),
            None,
            b"",
        );
        assert_eq!(response.status, 200, "{}", response.text());
    }
    // The writer retries with backoff; give it a failed try or two, then space.
    std::thread::sleep(std::time::Duration::from_secs(2));
    std::fs::remove_file(&ballast).unwrap();
    drop(server); // SIGTERM: the queue drains before the process exits
    let exported = run_ok(hindsight().arg("--data-dir").arg(&data).args([
        "audit",
        "--json",
        "--action",
        "events.search",
    ]));
    let records = String::from_utf8(exported.stdout).unwrap().lines().count();
    assert_eq!(
        records, REQUESTS,
        "every request of the full-disk time is in the audit trail"
    );
}
