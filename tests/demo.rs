//! `hindsight demo` archives what it says it archived, readable by DuckDB
//! straight from the Hive-partitioned tree, and then answers over HTTP.

use std::time::Duration;

use crate::util::{
    archive_demo, duckdb_scalar, hindsight, http_get, read_until, run_ok, spawn_with_stdout,
    terminate,
};

fn number_after(lines: &[String], prefix: &str) -> u64 {
    lines
        .iter()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in {lines:#?}"))
}

#[test]
fn demo_archive_matches_duckdb_and_serves_http() {
    let data = tempfile::tempdir().unwrap();
    let (mut child, mut stdout) = spawn_with_stdout(
        hindsight()
            .arg("demo")
            .args(["--events", "200000", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path()),
    );
    let lines = read_until(
        &mut stdout,
        "serving the API and UI on",
        Duration::from_secs(600),
    );
    let archived = number_after(&lines, "archived ");
    let held = number_after(&lines, "archive now holds ");
    assert_eq!(archived, 200_000, "{lines:#?}");
    assert_eq!(held, 200_000);

    let glob = format!("{}/**/*.parquet", data.path().display());
    let counted = duckdb_scalar(&format!(
        "SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true)"
    ));
    assert_eq!(counted, held.to_string(), "duckdb disagrees with the demo");
    // Hive columns agree with the columns inside the files.
    let mismatched = duckdb_scalar(&format!(
        "SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true) \
         WHERE strftime(event_time AT TIME ZONE 'UTC', '%Y-%m-%d') <> CAST(date AS VARCHAR)"
    ));
    assert_eq!(mismatched, "0");
    let distinct_ids = duckdb_scalar(&format!(
        "SELECT count(DISTINCT event_id) FROM read_parquet('{glob}')"
    ));
    assert_eq!(distinct_ids, held.to_string());

    let address = lines
        .last()
        .and_then(|line| line.split("http://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .expect("address in the serving line")
        .to_owned();
    let (status, body) = http_get(&address, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = http_get(&address, "/api/v1/topics");
    assert_eq!(status, 200, "{body}");
    let topics: serde_json::Value = serde_json::from_str(&body).unwrap();
    let total: u64 = topics
        .as_array()
        .unwrap()
        .iter()
        .map(|topic| topic["events"].as_u64().unwrap())
        .sum();
    assert_eq!(total, held);
    let (status, body) = http_get(&address, "/");
    assert_eq!(status, 200);
    assert!(body.contains("Hindsight"));
    let (status, body) = http_get(&address, "/api/v1/nope");
    assert_eq!(status, 404);
    assert!(body.contains("\"error\":\"not_found\""), "{body}");
    let (status, _) = http_get(&address, "/api/v1/segments?partition=notanumber");
    assert_eq!(status, 400);
    run_the_readme_curl_commands(&address);

    let exit = terminate(&mut child);
    assert!(
        exit.success(),
        "demo did not exit cleanly on SIGTERM: {exit:?}"
    );
}

/// Runs the README's `curl` examples for SQL and event search, as written
/// but for the port, against a running demo; each must answer 2xx.
fn run_the_readme_curl_commands(address: &str) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let port = address.rsplit_once(':').unwrap().1;
    let commands: Vec<String> = readme
        .lines()
        .filter(|line| line.starts_with("curl ") && line.contains("localhost:7878"))
        .filter(|line| line.contains("/api/v1/sql") || line.contains("/api/v1/events?"))
        .map(|line| line.replace("localhost:7878", &format!("localhost:{port}")))
        .collect();
    assert!(
        commands
            .iter()
            .filter(|c| c.contains("/api/v1/sql"))
            .count()
            >= 2,
        "the README's SQL examples are gone: {commands:#?}"
    );
    for command in commands {
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{command} --fail-with-body"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && !stdout.trim().is_empty(),
            "{command}: {:?} {stdout}",
            output.status
        );
    }
}

#[test]
fn rerunning_the_demo_appends_with_continuous_offsets() {
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), 5000);
    archive_demo(data.path(), 5000);
    let glob = format!("{}/**/*.parquet", data.path().display());
    let duplicates = duckdb_scalar(&format!(
        "SELECT count(*) FROM (SELECT topic, \"partition\", \"offset\" FROM read_parquet('{glob}') \
         GROUP BY ALL HAVING count(*) > 1)"
    ));
    assert_eq!(duplicates, "0");
    let gaps = duckdb_scalar(&format!(
        "SELECT count(*) FROM (SELECT topic, \"partition\", max(\"offset\") + 1 - count(*) AS gap \
         FROM read_parquet('{glob}') GROUP BY ALL) WHERE gap <> 0"
    ));
    assert_eq!(gaps, "0", "offsets must run from 0 without gaps");
    assert_eq!(
        duckdb_scalar(&format!("SELECT count(*) FROM read_parquet('{glob}')")),
        "10000"
    );
}

/// Runs `hindsight --config FILE check-config`, expects failure, returns stderr.
fn check_config_fails(file: &std::path::Path) -> String {
    let output = hindsight()
        .arg("--config")
        .arg(file)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "check-config accepted {}",
        file.display()
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn invalid_configuration_reports_every_problem_with_its_path() {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("hindsight.toml");
    std::fs::write(
        &file,
        "[http]\nlisten = \"nowhere\"\n[[sources]]\ntype = \"kafka\"\nname = \"k\"\ngroup_id = \"g\"\ntopics = [\"t\"]\n",
    )
    .unwrap();
    let stderr = check_config_fails(&file);
    assert!(stderr.contains("http.listen:"), "{stderr}");
    assert!(stderr.contains("sources[0].brokers:"), "{stderr}");

    std::fs::write(
        &file,
        "[storage]
ulr = \"x\"
",
    )
    .unwrap();
    let stderr = check_config_fails(&file);
    assert!(stderr.contains("ulr"), "{stderr}");
}

#[test]
fn completions_name_every_command_for_bash_zsh_and_fish_and_a_closed_pipe_is_no_error() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run_ok(hindsight().args(["completions", shell]));
        let script = String::from_utf8(output.stdout).unwrap();
        for command in [
            "demo",
            "archive",
            "serve",
            "replay",
            "check-config",
            "completions",
        ] {
            assert!(
                script.contains(command),
                "{shell} completions lack {command}"
            );
        }
    }
    // `hindsight completions bash | head -1`: the reader goes away early.
    let mut child = hindsight()
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
