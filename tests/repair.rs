//! `hindsight repair` with the default grace: a staging file of a writer
//! that holds no lease goes once it is older than `catalog.pending_grace`,
//! and a younger one stays (its writer may still be publishing it).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::util::{archive_demo, hindsight, query_rows, run_ok};

/// `catalog.pending_grace` as the binary resolves it without configuration.
fn default_grace(data: &Path) -> Duration {
    let output = run_ok(hindsight().arg("--data-dir").arg(data).arg("check-config"));
    let config: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "check-config did not print JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let grace = config["catalog"]["pending_grace"]
        .as_str()
        .unwrap_or_else(|| panic!("no catalog.pending_grace in {config}"));
    humantime::parse_duration(grace)
        .unwrap_or_else(|e| panic!("catalog.pending_grace {grace:?} is not a duration: {e}"))
}

/// The local store's staging directory under `data` (the demo's publishes
/// created it).
fn staging_directory(data: &Path) -> PathBuf {
    fn find(directory: &Path) -> Option<PathBuf> {
        for entry in std::fs::read_dir(directory).unwrap() {
            let path = entry.unwrap().path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|name| name == ".staging") {
                return Some(path);
            }
            if let Some(found) = find(&path) {
                return Some(found);
            }
        }
        None
    }
    find(data).unwrap_or_else(|| {
        panic!(
            "no .staging directory under {} after the demo published into it",
            data.display()
        )
    })
}

/// A staging file named as `writer` names them (`<writer>-<unique>.tmp`),
/// last modified `age` ago.
fn staging_file(directory: &Path, writer: &str, age: Duration) -> PathBuf {
    let path = directory.join(format!("{writer}-{}.tmp", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, b"PAR1 half of a segment").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
    path
}

#[test]
fn repair_with_the_default_grace_removes_an_old_staging_file_and_keeps_a_young_one() {
    const EVENTS: u64 = 2_000;
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), EVENTS);
    let grace = default_grace(data.path());
    let staging = staging_directory(data.path());
    // An id shaped like a lease's that no lease has: neither live (kept
    // whatever its age) nor released (removed at once), so only age counts.
    let writer = uuid::Uuid::new_v4().simple().to_string();
    let old = staging_file(&staging, &writer, grace + Duration::from_secs(60));
    let young = staging_file(&staging, &writer, grace / 2);

    let output = run_ok(hindsight().arg("--data-dir").arg(data.path()).arg("repair"));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        !old.exists(),
        "repair kept a staging file older than the {grace:?} grace: {printed}"
    );
    assert!(
        young.exists(),
        "repair removed a staging file younger than the {grace:?} grace: {printed}"
    );
    let rows = query_rows(data.path(), "SELECT count(*) AS n FROM events");
    assert_eq!(rows[0]["n"], EVENTS, "repair changed the committed archive");
}
