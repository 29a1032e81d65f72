//! Object storage for segments.
//!
//! Reads, listing and deletes go through `object_store`. Publishing differs by
//! backend because durability does:
//! - S3: one `PUT`, which is atomic: an object is whole or absent.
//! - Local directory: `object_store`'s `LocalFileSystem` neither fsyncs nor
//!   hides its staging file (it writes `<dest>#N` beside the destination), so
//!   this module writes the bytes to `<root>/.staging/<unique>.tmp`, fsyncs the
//!   file, renames it into place and fsyncs the directories it touched. A
//!   partial file is never visible under its final name, and a file under its
//!   final name survives a power cut.

use std::collections::HashSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, ErrorKind, Result};
use crate::layout::is_segment_key;

/// The staging directory under a local root; hidden, so Hive readers skip it.
pub const STAGING_DIR: &str = ".staging";

/// Where segments live: a URL plus S3 settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreConfig {
    /// `file:///abs/dir`, a plain directory path, or `s3://bucket/prefix`.
    pub url: String,
    /// S3 endpoint, for S3-compatible servers (moto, MinIO). Defaults to AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<crate::secret::Secret>,
    /// Allow `http://` endpoints (test servers).
    pub allow_http: bool,
}

#[derive(Debug, Clone)]
enum Backend {
    Local { root: PathBuf },
    S3,
}

/// The archive's object store.
#[derive(Debug, Clone)]
pub struct ArchiveStore {
    inner: Arc<dyn ObjectStore>,
    /// Prefix inside the bucket (S3); empty for local stores.
    prefix: Path,
    backend: Backend,
    url: String,
}

impl ArchiveStore {
    pub fn open(config: &StoreConfig) -> Result<Self> {
        if let Some(rest) = config.url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::invalid_input(
                    "storage url s3:// needs a bucket: s3://bucket/prefix",
                ));
            }
            // Standard AWS_* variables first; explicit configuration wins.
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = &config.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(region) = &config.region {
                builder = builder.with_region(region);
            }
            if let Some(key) = &config.access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &config.secret_access_key {
                builder = builder.with_secret_access_key(secret.expose());
            }
            if config.allow_http {
                builder = builder.with_allow_http(true);
            }
            let store = builder.build().map_err(|error| {
                Error::with_source(
                    ErrorKind::InvalidInput,
                    "cannot configure the s3 store",
                    error,
                )
            })?;
            return Ok(ArchiveStore {
                inner: Arc::new(store),
                prefix: Path::parse(prefix)?,
                backend: Backend::S3,
                url: config.url.clone(),
            });
        }
        let directory = match config.url.strip_prefix("file://") {
            Some(path) => PathBuf::from(path),
            None if config.url.contains("://") => {
                return Err(Error::invalid_input(format!(
                "unsupported storage url {:?}: use a directory, file:///dir or s3://bucket/prefix",
                config.url
            )))
            }
            None => PathBuf::from(&config.url),
        };
        std::fs::create_dir_all(&directory).map_err(|error| {
            Error::with_source(
                ErrorKind::InvalidInput,
                format!(
                    "cannot create the storage directory {}",
                    directory.display()
                ),
                error,
            )
        })?;
        let root = directory.canonicalize()?;
        let store = LocalFileSystem::new_with_prefix(&root)?;
        Ok(ArchiveStore {
            inner: Arc::new(store),
            prefix: Path::default(),
            backend: Backend::Local { root },
            url: config.url.clone(),
        })
    }

    /// The URL this store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying object store, rooted at the bucket (not the prefix).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.inner)
    }

    /// The local root directory, for a local store.
    pub fn local_root(&self) -> Option<&FsPath> {
        match &self.backend {
            Backend::Local { root } => Some(root),
            Backend::S3 => None,
        }
    }

    /// The absolute URI of the object at `relative`, as outside readers
    /// (Iceberg engines) name it: `file:///root/…` or `s3://bucket/prefix/…`.
    pub fn uri_of(&self, relative: &str) -> String {
        match &self.backend {
            Backend::Local { root } => format!("file://{}/{relative}", root.display()),
            Backend::S3 => format!("{}/{relative}", self.url.trim_end_matches('/')),
        }
    }

    /// The key, relative to the store root, of an absolute URI that
    /// [`ArchiveStore::uri_of`] made; `None` for one outside this store.
    pub fn relative_of(&self, uri: &str) -> Option<Path> {
        let base = match &self.backend {
            Backend::Local { root } => format!("file://{}/", root.display()),
            Backend::S3 => format!("{}/", self.url.trim_end_matches('/')),
        };
        Path::parse(uri.strip_prefix(&base)?).ok()
    }

    /// The key of `relative` inside the store (the prefix applied).
    pub fn full_path(&self, relative: &Path) -> Path {
        self.prefix.parts().chain(relative.parts()).collect()
    }

    /// Makes `bytes` durable under `relative`, atomically: readers see the
    /// whole object or nothing.
    pub async fn publish(&self, relative: &Path, bytes: Bytes) -> Result<()> {
        self.publish_for(None, relative, bytes).await
    }

    /// [`ArchiveStore::publish`] by a writer holding lease `writer`: a local
    /// staging file is named `<writer>-<unique>.tmp`, so recovery can remove
    /// a dead writer's staging files at once.
    pub async fn publish_for(
        &self,
        writer: Option<&str>,
        relative: &Path,
        bytes: Bytes,
    ) -> Result<()> {
        let staging_name = match writer {
            Some(writer) => format!("{writer}-{}.tmp", uuid::Uuid::now_v7().simple()),
            None => format!("{}.tmp", uuid::Uuid::now_v7().simple()),
        };
        match &self.backend {
            Backend::S3 => {
                let path = self.full_path(relative);
                self.inner.put(&path, PutPayload::from(bytes)).await?;
                Ok(())
            }
            Backend::Local { root } => {
                let root = root.clone();
                let relative = relative.to_string();
                tokio::task::spawn_blocking(move || {
                    publish_local(&root, &relative, &staging_name, &bytes)
                })
                .await
                .map_err(|error| {
                    Error::with_source(ErrorKind::Internal, "segment publish task failed", error)
                })?
            }
        }
    }

    pub async fn get(&self, relative: &Path) -> Result<Bytes> {
        let path = self.full_path(relative);
        let result = self.inner.get(&path).await.map_err(|error| {
            let kind = Error::from(error).kind();
            Error::new(kind, format!("cannot read segment {relative}"))
        })?;
        Ok(result.bytes().await?)
    }

    /// The bytes of the object a catalog row names by its key.
    pub async fn get_key(&self, key: &str) -> Result<Bytes> {
        let relative = Path::parse(key).map_err(|error| {
            Error::with_source(
                ErrorKind::InvalidInput,
                format!("the catalog holds an invalid object key {key:?}"),
                error,
            )
        })?;
        self.get(&relative).await
    }

    pub async fn delete(&self, relative: &Path) -> Result<()> {
        let path = self.full_path(relative);
        match self.inner.delete(&path).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Every segment object key (the Hive tree, `segments/source=…/…`, or
    /// `source=…/…` in archives written before the `segments/` root) under
    /// `relative_prefix`, relative to the store root. Other files that share
    /// the root (the SQLite catalog, staging files) are not listed.
    pub async fn list(&self, relative_prefix: Option<&Path>) -> Result<Vec<Path>> {
        let prefix = relative_prefix.map(|p| self.full_path(p));
        let prefix =
            prefix.or_else(|| (!self.prefix.as_ref().is_empty()).then(|| self.prefix.clone()));
        let strip = self.prefix.parts().count();
        let objects: Vec<_> = self.inner.list(prefix.as_ref()).try_collect().await?;
        Ok(objects
            .into_iter()
            .map(|meta| meta.location.parts().skip(strip).collect())
            .filter(|path: &Path| is_segment_key(path.as_ref()))
            .collect())
    }

    /// Removes every staging file (local stores; a no-op on S3). Only safe
    /// when no writer runs.
    pub fn clean_staging(&self) -> Result<usize> {
        self.clean_staging_left_behind(Duration::ZERO, &HashSet::new(), &HashSet::new())
    }

    /// Removes staging files left by crashed writers (local stores; a no-op
    /// on S3). A file named for a writer in `live_writers` stays; one named
    /// for a writer in `released_writers` goes at once; any other goes once
    /// last modified more than `grace` ago.
    pub fn clean_staging_left_behind(
        &self,
        grace: Duration,
        released_writers: &HashSet<String>,
        live_writers: &HashSet<String>,
    ) -> Result<usize> {
        let Backend::Local { root } = &self.backend else {
            return Ok(0);
        };
        let staging = root.join(STAGING_DIR);
        let entries = match std::fs::read_dir(&staging) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(error.into()),
        };
        let mut removed = 0;
        let now = std::time::SystemTime::now();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let writer = name.split_once('-').map(|(writer, _)| writer);
            if writer.is_some_and(|writer| live_writers.contains(writer)) {
                continue;
            }
            let of_released_writer = writer.is_some_and(|writer| released_writers.contains(writer));
            let age = entry
                .metadata()?
                .modified()
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .unwrap_or_default();
            if !of_released_writer && age < grace {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(removed)
    }
}

fn sync_directory(directory: &FsPath) -> std::io::Result<()> {
    std::fs::File::open(directory)?.sync_all()
}

/// Creates `directory` and its missing parents, fsyncing each new entry's parent.
fn create_directories_durably(root: &FsPath, directory: &FsPath) -> std::io::Result<()> {
    if directory.is_dir() {
        return Ok(());
    }
    if let Some(parent) = directory.parent() {
        if parent != root {
            create_directories_durably(root, parent)?;
        }
        match std::fs::create_dir(directory) {
            Ok(()) => sync_directory(parent)?,
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn publish_local(root: &FsPath, relative: &str, staging_name: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let destination = root.join(relative);
    let staging = root.join(STAGING_DIR);
    std::fs::create_dir_all(&staging)?;
    let temporary = staging.join(staging_name);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        let directory = destination
            .parent()
            .ok_or_else(|| std::io::Error::other("segment path has no parent directory"))?;
        create_directories_durably(root, directory)?;
        std::fs::rename(&temporary, &destination)?;
        sync_directory(directory)
    };
    write().map_err(|error| {
        let _ = std::fs::remove_file(&temporary);
        Error::with_source(
            ErrorKind::Retryable,
            format!("cannot publish segment {relative}"),
            error,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_publish_is_visible_whole_and_leaves_no_staging() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArchiveStore::open(&StoreConfig {
            url: dir.path().display().to_string(),
            ..StoreConfig::default()
        })
        .unwrap();
        let path = Path::parse("source=s/topic=t/date=2026-01-01/hour=00/0-0-9-x.parquet").unwrap();
        store
            .publish(&path, Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(
            store.get(&path).await.unwrap(),
            Bytes::from_static(b"hello")
        );
        assert_eq!(store.list(None).await.unwrap(), vec![path.clone()]);
        let staging = dir.path().join(STAGING_DIR);
        assert_eq!(std::fs::read_dir(staging).unwrap().count(), 0);
        store.delete(&path).await.unwrap();
        store.delete(&path).await.unwrap();
        assert!(store.list(None).await.unwrap().is_empty());
    }

    #[test]
    fn unknown_schemes_are_refused() {
        let error = ArchiveStore::open(&StoreConfig {
            url: "ftp://x/y".into(),
            ..StoreConfig::default()
        })
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
    }
}
