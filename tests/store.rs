//! One conformance suite for every store backend: a local directory and S3
//! (the moto server), plus the demo end to end on S3 with a PostgreSQL catalog.

use std::any::Any;

use bytes::Bytes;
use hindsight_archive::catalog::{Catalog, SegmentFilter};
use hindsight_archive::segment::decode_segment;
use hindsight_archive::store::{ArchiveStore, StoreConfig};
use object_store::path::Path;

use crate::util::{hindsight, run_ok, START_SERVICES};

pub fn s3_endpoint() -> String {
    std::env::var("HINDSIGHT_TEST_S3_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:5000".to_owned())
}

/// Creates a fresh bucket on the S3 test server (object_store cannot).
pub fn create_bucket() -> String {
    let bucket = format!("hindsight-{}", uuid::Uuid::new_v4().simple());
    let script = "import boto3, sys\n\
        boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
        aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket=sys.argv[2])";
    let output = std::process::Command::new("python3")
        .args(["-c", script, &s3_endpoint(), &bucket])
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "cannot create a bucket on the S3 server at {} (start it with {START_SERVICES}): {}",
        s3_endpoint(),
        String::from_utf8_lossy(&output.stderr)
    );
    bucket
}

fn s3_config(bucket: &str) -> StoreConfig {
    StoreConfig {
        url: format!("s3://{bucket}/archive/prefix"),
        endpoint: Some(s3_endpoint()),
        region: Some("us-east-1".to_owned()),
        access_key_id: Some("test".to_owned()),
        secret_access_key: Some("test".into()),
        allow_http: true,
    }
}

fn local_store() -> (ArchiveStore, Box<dyn Any>) {
    let directory = tempfile::tempdir().unwrap();
    let store = ArchiveStore::open(&StoreConfig {
        url: directory.path().display().to_string(),
        ..StoreConfig::default()
    })
    .unwrap();
    (store, Box::new(directory))
}

fn s3_store() -> (ArchiveStore, Box<dyn Any>) {
    let store = ArchiveStore::open(&s3_config(&create_bucket())).unwrap();
    (store, Box::new(()))
}

fn segment_path(name: &str) -> Path {
    Path::parse(format!(
        "source=s/topic=t/date=2026-01-01/hour=00/{name}.parquet"
    ))
    .unwrap()
}

async fn publish_get_list_delete(store: ArchiveStore) {
    assert!(store.list(None).await.unwrap().is_empty());
    let first = segment_path("0-0-9-a");
    let second = segment_path("0-10-19-b");
    store
        .publish(&first, Bytes::from_static(b"first"))
        .await
        .unwrap();
    store
        .publish(&second, Bytes::from(vec![7u8; 3 * 1024 * 1024]))
        .await
        .unwrap();
    assert_eq!(
        store.get(&first).await.unwrap(),
        Bytes::from_static(b"first")
    );
    assert_eq!(store.get(&second).await.unwrap().len(), 3 * 1024 * 1024);
    let mut listed = store.list(None).await.unwrap();
    listed.sort();
    assert_eq!(listed, vec![first.clone(), second.clone()]);
    let prefix = Path::parse("source=s/topic=t").unwrap();
    assert_eq!(store.list(Some(&prefix)).await.unwrap().len(), 2);
    let other = Path::parse("source=s/topic=u").unwrap();
    assert!(store.list(Some(&other)).await.unwrap().is_empty());
    store.delete(&first).await.unwrap();
    store.delete(&first).await.unwrap(); // deleting twice is fine
    assert_eq!(store.list(None).await.unwrap(), vec![second]);
}

async fn missing_objects_are_not_found(store: ArchiveStore) {
    let error = store.get(&segment_path("nope")).await.unwrap_err();
    assert_eq!(error.kind(), hindsight_archive::ErrorKind::NotFound);
    assert!(error.message().contains("nope"), "{}", error.message());
}

async fn publishing_again_replaces_whole(store: ArchiveStore) {
    let path = segment_path("0-0-0-x");
    store
        .publish(&path, Bytes::from_static(b"old contents"))
        .await
        .unwrap();
    store
        .publish(&path, Bytes::from_static(b"new"))
        .await
        .unwrap();
    assert_eq!(store.get(&path).await.unwrap(), Bytes::from_static(b"new"));
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _guard) = super::local_store();
                    super::$name(store).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _guard) = super::s3_store();
                    super::$name(store).await;
                }
            )*
        }
    };
}

conformance!(
    publish_get_list_delete,
    missing_objects_are_not_found,
    publishing_again_replaces_whole,
);

#[tokio::test]
async fn demo_archives_to_s3_with_a_postgres_catalog() {
    let bucket = create_bucket();
    let catalog_url = crate::util::fresh_postgres_database("hindsight_demo").await;
    let scratch = tempfile::tempdir().unwrap();

    run_ok(
        hindsight()
            .args(["demo", "--no-serve", "--events", "20000", "--data-dir"])
            .arg(scratch.path())
            .env("HINDSIGHT__STORAGE__URL", format!("s3://{bucket}/archive"))
            .env("HINDSIGHT__STORAGE__ENDPOINT", s3_endpoint())
            .env("HINDSIGHT__STORAGE__ALLOW_HTTP", "true")
            .env("HINDSIGHT__CATALOG__URL", &catalog_url)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1"),
    );

    let catalog = Catalog::connect(&catalog_url).await.unwrap();
    let segments = catalog.segments(&SegmentFilter::default()).await.unwrap();
    let store = ArchiveStore::open(&StoreConfig {
        url: format!("s3://{bucket}/archive"),
        ..s3_config(&bucket)
    })
    .unwrap();
    let objects = store.list(None).await.unwrap();
    assert_eq!(
        objects.len(),
        segments.len(),
        "every object has a committed row"
    );
    let mut events = 0;
    for record in &segments {
        let bytes = store
            .get(&Path::parse(&record.segment.uri).unwrap())
            .await
            .unwrap();
        let decoded = decode_segment(bytes).unwrap();
        assert_eq!(decoded.len() as i64, record.segment.rows);
        events += decoded.len();
    }
    assert_eq!(events, 20_000);
    // Nothing was written locally: the scratch data dir holds no segment.
    assert!(crate::util::parquet_files(scratch.path()).is_empty());
}
