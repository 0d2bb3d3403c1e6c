//! The lake on S3-compatible object storage: `lake.root = "s3://bucket/prefix"`.
//!
//! delta-rs opens a table through the store registered for its URL's scheme. The store here is
//! object_store's `AmazonS3` (the Arrow project's client, already in the build for DataFusion),
//! and the log store is delta-rs' default one: it writes each commit `_delta_log/N.json` with
//! `PutMode::Create`, which object_store sends as a PUT with `If-None-Match: *`. Of two writers
//! racing for version N, the store accepts one and answers 412 to the other, which reads the
//! winner's commit and tries N+1: no commit is ever lost, whatever the number of writers (two
//! ingests, an ingest and `lake compact`). That is the whole protocol, so it holds only on a
//! store that honours the header (AWS S3 since 2024, MinIO, Ceph RGW, R2...). A store that
//! ignores it would let the second writer overwrite the first commit silently; `CommitProtocol`
//! finds out before anything is written, and a writer refuses to start on such a store unless
//! the operator says only one process ever writes the lake (`lake.single_writer`).
//! docs/design.md §6 states the guarantee.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use deltalake::logstore::object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use deltalake::logstore::object_store::path::Path as StorePath;
use deltalake::logstore::object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError};
use url::Url;

use crate::error::IngestError;
use crate::lake::LakeRoot;

/// How to reach an S3-compatible store. Unset fields come from the standard AWS variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`...).
#[derive(Clone, Default)]
pub struct S3Settings {
    /// `http://127.0.0.1:9000` for MinIO or a test server; empty: AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Plain HTTP to the endpoint (a store on loopback or a private network).
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl S3Settings {
    fn builder(&self, url: &Url) -> AmazonS3Builder {
        let mut builder = AmazonS3Builder::from_env()
            .with_url(url.as_str())
            .with_conditional_put(S3ConditionalPut::ETagMatch);
        if let Some(endpoint) = nonempty(&self.endpoint) {
            // A custom endpoint (MinIO, a test server) serves buckets as paths, not host names.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(region) = nonempty(&self.region) {
            builder = builder.with_region(region);
        }
        if let Some(key) = nonempty(&self.access_key_id) {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = nonempty(&self.secret_access_key) {
            builder = builder.with_secret_access_key(secret);
        }
        builder.with_allow_http(self.allow_http)
    }
}

fn nonempty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The settings `s3://` stores are made with, by bucket (a process serves one lake, so one
/// bucket, but the tests run several lakes, each on its own server, in one process).
static SETTINGS: LazyLock<RwLock<HashMap<String, S3Settings>>> = LazyLock::new(Default::default);

/// Makes `root`'s bucket open on an S3-compatible store reached with `settings`, for every table
/// this process opens there (the ingest, the maintenance, the rollups, the query service).
pub fn use_s3(root: &LakeRoot, settings: S3Settings) {
    let Some(bucket) = root.url().host_str() else {
        return;
    };
    SETTINGS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(bucket.to_owned(), settings);
    let Ok(scheme) = Url::parse("s3://") else {
        return;
    };
    object_store_factories().insert(scheme.clone(), Arc::new(S3Stores));
    logstore_factories().insert(scheme, Arc::new(S3Stores));
}

/// The store and the log store of `s3://` tables.
struct S3Stores;

impl ObjectStoreFactory for S3Stores {
    fn parse_url_opts(
        &self,
        url: &Url,
        _config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, StorePath)> {
        let settings = url
            .host_str()
            .and_then(|bucket| {
                let known = SETTINGS.read().unwrap_or_else(|e| e.into_inner());
                known.get(bucket).cloned()
            })
            .unwrap_or_default();
        let store = settings
            .builder(url)
            .build()
            .map_err(|e| DeltaTableError::Generic(format!("{url}: {e}")))?;
        let path = StorePath::from_url_path(url.path())
            .map_err(|e| DeltaTableError::Generic(format!("{url}: {e}")))?;
        Ok((Arc::new(store), path))
    }
}

impl LogStoreFactory for S3Stores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        // Commits with `PutMode::Create`, which the store above sends as `If-None-Match: *`.
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Whether concurrent writers are safe on the lake's store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitProtocol {
    /// A local directory: delta-rs creates each commit file with a link that fails if it exists.
    LocalFiles,
    /// The store refused a second create of one object: commits are conditional writes.
    ConditionalWrites,
    /// The store let a second create overwrite the first: safe for one writer only.
    Unconditional,
}

impl CommitProtocol {
    /// Finds out how `root`'s store commits: on object storage, creates a probe object twice
    /// (the second must be refused), then deletes it.
    pub async fn of(root: &LakeRoot) -> Result<CommitProtocol, IngestError> {
        let url = root.url();
        if url.scheme() == "file" {
            return Ok(CommitProtocol::LocalFiles);
        }
        let location_err = |reason: String| IngestError::LakeLocation {
            location: url.to_string(),
            reason,
        };
        let store = deltalake::logstore::store_for(url, std::iter::empty::<(String, String)>())
            .map_err(|e| location_err(e.to_string()))?;
        let probe = StorePath::from(format!(
            "_mxpulse/commit-probe-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        store
            .put_opts(&probe, PutPayload::from_static(b"1"), create.clone())
            .await
            .map_err(|e| location_err(format!("cannot write a probe object: {e}")))?;
        let second = store
            .put_opts(&probe, PutPayload::from_static(b"2"), create)
            .await;
        let _ = store.delete(&probe).await;
        match second {
            Err(deltalake::logstore::object_store::Error::AlreadyExists { .. }) => {
                Ok(CommitProtocol::ConditionalWrites)
            }
            Ok(_) => Ok(CommitProtocol::Unconditional),
            Err(e) => Err(location_err(format!(
                "the store answered a conditional write with an error: {e}"
            ))),
        }
    }
}

/// Refuses to write `root` when a second writer could lose a commit: on a store that ignores
/// conditional writes, unless the operator said this process is the lake's only writer.
pub async fn check_writers(
    root: &LakeRoot,
    single_writer: bool,
) -> Result<CommitProtocol, IngestError> {
    let protocol = CommitProtocol::of(root).await?;
    if protocol == CommitProtocol::Unconditional {
        if single_writer {
            tracing::warn!(lake = %root.url(), "the store ignores conditional writes: safe only while this process is the lake's one writer (lake.single_writer)");
        } else {
            return Err(IngestError::LakeLocation {
                location: root.url().to_string(),
                reason: "the store ignores conditional writes (a second create of one object \
                         overwrote the first), so two writers (two ingests, or an ingest and \
                         `mxpulse lake compact`) could write the same commit and one would be \
                         lost. Use a store that honours If-None-Match (AWS S3, MinIO, Ceph RGW), \
                         or set lake.single_writer = true if exactly one process ever writes \
                         this lake"
                    .into(),
            });
        }
    }
    Ok(protocol)
}

/// The S3 store of `root` itself (for what is not a Delta table: the lake's own objects).
pub fn object_store(root: &LakeRoot) -> Result<Arc<dyn ObjectStore>, IngestError> {
    deltalake::logstore::store_for(root.url(), std::iter::empty::<(String, String)>()).map_err(
        |e| IngestError::LakeLocation {
            location: root.url().to_string(),
            reason: e.to_string(),
        },
    )
}

/// Deletes everything under `path` (`rollups`) in the lake: a directory, or on object storage
/// every object under that prefix.
pub async fn remove_tree(root: &LakeRoot, path: &str) -> Result<(), IngestError> {
    use futures::{StreamExt, TryStreamExt};
    let err = |reason: String| IngestError::LakeLocation {
        location: format!("{}{path}", root.url()),
        reason,
    };
    if let Ok(dir) = root.url().to_file_path() {
        return std::fs::remove_dir_all(dir.join(path)).map_err(|e| err(e.to_string()));
    }
    let store = object_store(root)?;
    let prefix = StorePath::from(path);
    let locations = store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location)
        .boxed();
    store
        .delete_stream(locations)
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(())
}
