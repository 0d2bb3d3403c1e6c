//! The lake's local files, durable when written: object_store's local file system writes a
//! file and renames it into place but never syncs it, so after a host crash (power loss, kernel
//! panic) a Delta commit could survive while the data files it names did not. Every table of
//! the lake is opened through `SyncedLocalStore`, which syncs each file it writes, and the
//! directory that names it, before the write returns: a data file is on disk before the commit
//! that adds it is written, and a commit is on disk before the ingest counts it done (and
//! before the Kafka offsets it carries are acted on).

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::logstore::object_store::local::LocalFileSystem;
use deltalake::logstore::object_store::path::Path;
use deltalake::logstore::object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};
use futures::stream::BoxStream;

/// The local file system, each write synced to disk with its directory entry.
#[derive(Debug)]
pub struct SyncedLocalStore {
    inner: Arc<LocalFileSystem>,
}

impl SyncedLocalStore {
    /// A store with `/` at the file system's root, as delta-rs expects of a root store.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(LocalFileSystem::new()),
        }
    }
}

impl Default for SyncedLocalStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for SyncedLocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SyncedLocalStore({})", self.inner)
    }
}

/// Syncs the file and then its directory (so that the rename that put it there survives too).
fn sync_file_and_dir(path: &FsPath) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

async fn sync(inner: &LocalFileSystem, location: &Path) -> Result<()> {
    let path: PathBuf = inner.path_to_filesystem(location)?;
    tokio::task::spawn_blocking(move || sync_file_and_dir(&path))
        .await
        .map_err(|e| deltalake::logstore::object_store::Error::Generic {
            store: "SyncedLocalStore",
            source: Box::new(e),
        })?
        .map_err(|e| deltalake::logstore::object_store::Error::Generic {
            store: "SyncedLocalStore",
            source: Box::new(e),
        })
}

#[async_trait]
impl ObjectStore for SyncedLocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        sync(&self.inner, location).await?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(SyncedUpload {
            upload,
            inner: self.inner.clone(),
            location: location.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        sync(&self.inner, to).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await?;
        sync(&self.inner, to).await
    }
}

/// A multipart write (large files), synced when complete.
#[derive(Debug)]
struct SyncedUpload {
    upload: Box<dyn MultipartUpload>,
    inner: Arc<LocalFileSystem>,
    location: Path,
}

#[async_trait]
impl MultipartUpload for SyncedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.upload.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let result = self.upload.complete().await?;
        sync(&self.inner, &self.location).await?;
        Ok(result)
    }

    async fn abort(&mut self) -> Result<()> {
        self.upload.abort().await
    }
}

#[cfg(test)]
mod tests {
    use deltalake::logstore::object_store::ObjectStoreExt as _;

    use super::*;

    #[tokio::test]
    async fn writes_land_where_the_local_store_puts_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = SyncedLocalStore::new();
        let file = dir.path().join("date=2024-07-15/part-0.parquet");
        // A root store: the object path is the file's absolute path without its first `/`.
        let location = Path::from(file.to_str().unwrap().trim_start_matches('/'));
        store
            .put(&location, PutPayload::from_static(b"rows"))
            .await
            .unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"rows");
        let mut upload = store.put_multipart(&location).await.unwrap();
        upload
            .put_part(PutPayload::from_static(b"more "))
            .await
            .unwrap();
        upload
            .put_part(PutPayload::from_static(b"rows"))
            .await
            .unwrap();
        upload.complete().await.unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"more rows");
        let listed: Vec<_> = futures::StreamExt::collect::<Vec<_>>(store.list(Some(&Path::from(
            dir.path().to_str().unwrap().trim_start_matches('/'),
        ))))
        .await;
        assert_eq!(listed.len(), 1);
    }
}
