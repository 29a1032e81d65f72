//! What a browser on another web site can make the API do (nothing), and
//! what a client with bad input gets back (a JSON error), on every route
//! `ROUTES` and the OpenAPI document list, so a new route cannot be forgotten.

use hindsight_server::ROUTES;
use serde_json::Value;

use crate::query::{http, write_config, HttpResponse, Server, Target};
use crate::util::archive_demo;

/// A path of `ROUTES` with every `{parameter}` replaced by `value`.
fn concrete(path: &str, value: &str) -> String {
    let mut concrete = String::new();
    let mut rest = path;
    while let Some((before, after)) = rest.split_once('{') {
        let (_, after_parameter) = after.split_once('}').unwrap();
        concrete.push_str(before);
        concrete.push_str(value);
        rest = after_parameter;
    }
    concrete.push_str(rest);
    concrete
}

fn assert_json_error(response: &HttpResponse, status: u16, kind: &str, what: &str) -> String {
    assert_eq!(
        response.status,
        status,
        "{what}: expected {status}, got {}: {}",
        response.status,
        response.text()
    );
    let body = response.json();
    assert_eq!(body["error"], kind, "{what}: {body}");
    let message = body["message"].as_str().unwrap_or_default().to_owned();
    assert!(!message.is_empty(), "{what}: no message in {body}");
    message
}

#[test]
fn every_state_changing_route_refuses_what_a_page_on_another_site_can_send() {
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), 1_000);
    let server = Server::start(&Target::DataDir(data.path().to_owned()));
    let address = server.address.as_str();
    // What a browser sends cross-site without asking the server first: the
    // three encodings of an HTML form, and fetch(…, {mode: "no-cors"}).
    let cross_site: [(Option<&str>, &[u8]); 4] = [
        (Some("text/plain;charset=UTF-8"), b"{\"sql\": \"SELECT 1\"}"),
        (Some("application/x-www-form-urlencoded"), b"sql=SELECT+1"),
        (
            Some("multipart/form-data; boundary=b"),
            b"--b\r\nContent-Disposition: form-data; name=\"sql\"\r\n\r\nSELECT 1\r\n--b--\r\n",
        ),
        (None, b""),
    ];
    let state_changing: Vec<_> = ROUTES
        .iter()
        .filter(|(method, _)| *method != "get")
        .collect();
    assert!(
        state_changing
            .iter()
            .any(|(_, path)| *path == "/api/v1/replays/{id}/cancel"),
        "{state_changing:?}"
    );
    for (method, path) in state_changing {
        let method = method.to_uppercase();
        let target = concrete(path, "0123456789abcdef0123456789abcdef");
        for (content_type, body) in cross_site {
            let mut headers = vec![("Origin", "https://attacker.example")];
            if let Some(content_type) = content_type {
                headers.push(("Content-Type", content_type));
            }
            let response = http(address, &method, &target, &headers, body);
            let what = format!("{method} {path} as {content_type:?}");
            let message = assert_json_error(&response, 415, "unsupported_media_type", &what);
            assert!(message.contains("application/json"), "{what}: {message}");
        }
        // The same request as JSON passes the check and reaches the route,
        // which answers for itself (no such replay, or a body it refuses).
        let response = http(
            address,
            &method,
            &target,
            &[("Content-Type", "application/json")],
            b"{}",
        );
        assert!(
            [400, 404].contains(&response.status) && response.json()["error"].is_string(),
            "{method} {path} as JSON: {} {}",
            response.status,
            response.text()
        );
    }
}

#[test]
fn a_foreign_host_is_refused_on_every_route_and_the_servers_own_names_are_answered() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    archive_demo(&data, 1_000);
    let config = write_config(
        directory.path(),
        &data,
        "[http]\nallowed_hosts = [\"hindsight.example.com\"]\n",
    );
    let server = Server::start(&Target::Config(config));
    let address = server.address.as_str();
    let port = address.rsplit_once(':').unwrap().1;
    let foreign = [
        "attacker.example".to_owned(),
        format!("attacker.example:{port}"),
        format!("localhost.attacker.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("192.168.1.5:{port}"),
    ];
    let every_route =
        ROUTES
            .iter()
            .copied()
            .chain([("get", "/"), ("get", "/app.js"), ("get", "/api/v1/nope")]);
    for (method, path) in every_route {
        let method = method.to_uppercase();
        let target = concrete(path, "0123456789abcdef0123456789abcdef");
        for host in &foreign {
            let response = http(
                address,
                &method,
                &target,
                &[
                    ("Host", host.as_str()),
                    ("Content-Type", "application/json"),
                ],
                b"{}",
            );
            let what = format!("{method} {path} with Host {host}");
            let message = assert_json_error(&response, 403, "host_not_allowed", &what);
            assert!(message.contains("http.allowed_hosts"), "{what}: {message}");
        }
    }
    let own = [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "hindsight.example.com".to_owned(),
        "HINDSIGHT.example.com:8443".to_owned(),
    ];
    for host in &own {
        let response = http(
            address,
            "GET",
            "/api/v1/topics",
            &[("Host", host.as_str())],
            b"",
        );
        assert_eq!(response.status, 200, "Host {host}: {}", response.text());
        let response = http(
            address,
            "POST",
            "/api/v1/sql",
            &[("Host", host.as_str()), ("Content-Type", "application/sql")],
            b"SELECT count(*) AS n FROM events",
        );
        assert_eq!(response.status, 200, "Host {host}: {}", response.text());
        assert_eq!(response.text().trim(), r#"{"n":1000}"#);
    }
}

#[test]
fn bad_parameters_and_bodies_on_every_route_get_json_errors() {
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), 1_000);
    let server = Server::start(&Target::DataDir(data.path().to_owned()));
    let address = server.address.as_str();
    // The case that once answered in plain text.
    let response = http(address, "GET", "/api/v1/replays?limit=null", &[], b"");
    assert_json_error(&response, 400, "invalid_input", "limit=null");

    let document = http(address, "GET", "/api/v1/openapi.json", &[], b"").json();
    let mut checked = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let method = method.to_uppercase();
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let has_body = operation.get("requestBody").is_some();
            if parameters.is_empty() && !has_body {
                continue;
            }
            let query_parameters: Vec<&Value> =
                parameters.iter().filter(|p| p["in"] == "query").collect();
            // Everything wrong at once: every path parameter and every query
            // parameter invalid UTF-8, and a body that is not JSON.
            let query: Vec<String> = query_parameters
                .iter()
                .map(|p| format!("{}=%FF", p["name"].as_str().unwrap()))
                .collect();
            let mut target = concrete(path, "%FF");
            if !query.is_empty() {
                target = format!("{target}?{}", query.join("&"));
            }
            let response = http(
                address,
                &method,
                &target,
                &[("Content-Type", "application/json")],
                b"{",
            );
            if path.starts_with("/iceberg/") {
                // The REST catalog answers in its specification's error model.
                assert_eq!(
                    response.status,
                    400,
                    "{method} {target}: {}",
                    response.text()
                );
                let error = &response.json()["error"];
                assert_eq!(
                    error["type"], "BadRequestException",
                    "{method} {target}: {error}"
                );
                assert_eq!(error["code"], 400, "{method} {target}: {error}");
                assert!(
                    error["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{error}"
                );
            } else {
                assert_json_error(
                    &response,
                    400,
                    "invalid_input",
                    &format!("{method} {target}"),
                );
            }
            checked += 1;
            // Each number or time parameter alone, as the word null.
            for parameter in query_parameters {
                let schema = &parameter["schema"];
                if !(schema["type"] == "integer" || schema["format"] == "date-time") {
                    continue;
                }
                let name = parameter["name"].as_str().unwrap();
                let target = format!(
                    "{}?{name}=null",
                    concrete(path, "0123456789abcdef0123456789abcdef")
                );
                let response = http(
                    address,
                    &method,
                    &target,
                    &[("Content-Type", "application/json")],
                    b"{}",
                );
                assert_json_error(
                    &response,
                    400,
                    "invalid_input",
                    &format!("{method} {target}"),
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "only {checked} requests checked");
}
