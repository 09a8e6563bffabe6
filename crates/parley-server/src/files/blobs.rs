//! Content-addressed blob storage through `object_store` (a `LocalFileSystem` rooted at the
//! files directory), plus the upload temp directory beside it.
//!
//! Layout under the files directory:
//!
//! * `tmp/<upload id>` — bytes of an upload in progress (written by [`super::upload`]);
//! * `blobs/<aa>/<bb>/<sha256 hex>` — complete content, named by its hash, so the same bytes
//!   are stored once whoever uploads them and however often;
//! * `info/<aa>/<bb>/<sha256 hex>.json` — cached image facts of a blob (size, format,
//!   thumbnail hash), so a second upload of the same picture needs no decode.
//!
//! Every path here is built from a hash or a numeric id, never from a user-supplied name.
//! A finished upload becomes a blob by a create-if-absent move (a hard link then unlink on a
//! local disk, with fsync), so a blob, once visible, is complete and is never overwritten.

use std::ops::Range;
use std::path::PathBuf;

use axum::body::Body;
use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, GetResult, GetResultPayload, ObjectStore as _, ObjectStoreExt as _,
};
use object_store::{PutMode, PutOptions, PutPayload};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::sync::OnceCell;
use tokio_util::io::ReaderStream;

use super::ApiError;
use super::images::ImageFacts;

/// A SHA-256 digest.
pub type Sha256 = [u8; 32];

/// Read size when streaming a blob to a client.
const STREAM_CHUNK: usize = 256 * 1024;

/// The blob store and temp directory under one files directory.
pub struct Blobs {
    root: PathBuf,
    store: OnceCell<LocalFileSystem>,
}

/// The cached image facts of a blob: `None` when the bytes are not a decodable image.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct InfoFile {
    image: Option<ImageFacts>,
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

fn is_already_exists(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::AlreadyExists { .. })
}

/// `<dir>/<aa>/<bb>/<hex><suffix>`.
fn sharded(dir: &str, sha: &Sha256, suffix: &str) -> Path {
    let hex = hex::encode(sha);
    Path::from_iter([dir, &hex[0..2], &hex[2..4], &format!("{hex}{suffix}")])
}

/// Where the blob with hash `sha` lives (relative to the files directory).
pub fn blob_path(sha: &Sha256) -> Path {
    sharded("blobs", sha, "")
}

fn info_path(sha: &Sha256) -> Path {
    sharded("info", sha, ".json")
}

fn tmp_object(upload_id: i64) -> Path {
    Path::from_iter(["tmp".to_string(), upload_id.to_string()])
}

impl Blobs {
    /// Blobs under `root`; directories are created on first use.
    pub fn new(root: PathBuf) -> Self {
        Blobs {
            root,
            store: OnceCell::new(),
        }
    }

    /// The object store, creating the directories the first time (retried on later calls
    /// if that failed, e.g. while a volume was not yet mounted).
    pub async fn store(&self) -> Result<&LocalFileSystem, ApiError> {
        self.store
            .get_or_try_init(|| async {
                for dir in ["tmp", "blobs", "info"] {
                    tokio::fs::create_dir_all(self.root.join(dir)).await?;
                }
                let fs = LocalFileSystem::new_with_prefix(&self.root)?.with_fsync(true);
                Ok::<_, ApiError>(fs)
            })
            .await
    }

    /// The temp directory of uploads in progress.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The temp file of upload `upload_id`.
    pub fn tmp_file(&self, upload_id: i64) -> PathBuf {
        self.tmp_dir().join(upload_id.to_string())
    }

    /// The size of the blob with hash `sha`, if it is stored.
    pub async fn size(&self, sha: &Sha256) -> Result<Option<u64>, ApiError> {
        match self.store().await?.head(&blob_path(sha)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The local file of the blob `sha` (for decoding it in place).
    pub async fn local_file(&self, sha: &Sha256) -> Result<PathBuf, ApiError> {
        Ok(self.store().await?.path_to_filesystem(&blob_path(sha))?)
    }

    /// Moves the verified temp file of `upload_id` into the blob `sha`. If that blob exists
    /// already (the same bytes were stored before), the temp file is simply removed.
    pub async fn adopt(&self, upload_id: i64, sha: &Sha256) -> Result<(), ApiError> {
        let store = self.store().await?;
        match store
            .rename_if_not_exists(&tmp_object(upload_id), &blob_path(sha))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_already_exists(&e) => {
                remove_quietly(self.tmp_file(upload_id)).await;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stores small `bytes` (a thumbnail) under their hash `sha` unless already there.
    pub async fn put_if_absent(&self, sha: &Sha256, bytes: Bytes) -> Result<(), ApiError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store()
            .await?
            .put_opts(&blob_path(sha), PutPayload::from_bytes(bytes), opts)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_already_exists(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a whole small blob (a thumbnail) into memory.
    pub async fn read_small(&self, sha: &Sha256) -> Result<Bytes, ApiError> {
        let result = self.store().await?.get(&blob_path(sha)).await.map_err(missing)?;
        Ok(result.bytes().await?)
    }

    /// Opens `range` of the blob `sha` for streaming.
    pub async fn get(&self, sha: &Sha256, range: Range<u64>) -> Result<GetResult, ApiError> {
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        self.store()
            .await?
            .get_opts(&blob_path(sha), opts)
            .await
            .map_err(missing)
    }

    /// The cached image facts of `sha`: outer `None` when not probed yet, inner `None` when
    /// probed and found not to be an image.
    pub async fn image_info(&self, sha: &Sha256) -> Result<Option<Option<ImageFacts>>, ApiError> {
        let bytes = match self.store().await?.get(&info_path(sha)).await {
            Ok(result) => result.bytes().await?,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match serde_json::from_slice::<InfoFile>(&bytes) {
            Ok(info) => Ok(Some(info.image)),
            Err(e) => {
                // A damaged cache entry is only a cache miss.
                tracing::warn!(error = %e, "unreadable image info; probing again");
                Ok(None)
            }
        }
    }

    /// Caches the image facts of `sha` (see [`Blobs::image_info`]).
    pub async fn set_image_info(&self, sha: &Sha256, image: &ImageFacts) -> Result<(), ApiError> {
        let info = InfoFile {
            image: Some(image.clone()),
        };
        let json = serde_json::to_vec(&info).map_err(|e| ApiError::internal("encoding image info", &e))?;
        self.store()
            .await?
            .put(&info_path(sha), PutPayload::from(json))
            .await?;
        Ok(())
    }
}

/// A blob that a file row points to but that is gone is data loss: log loudly.
fn missing(e: object_store::Error) -> ApiError {
    if is_not_found(&e) {
        ApiError::internal("file content missing from blob storage", &e)
    } else {
        e.into()
    }
}

/// Removes a file, ignoring "already gone" and logging anything else.
pub async fn remove_quietly(path: PathBuf) {
    match tokio::fs::remove_file(&path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(error = %e, path = %path.display(), "cannot remove file"),
    }
}

/// A response body streaming the bytes of `result` (never the whole blob in memory).
pub async fn stream_body(result: GetResult) -> Result<Body, ApiError> {
    let range = result.range.clone();
    match result.payload {
        GetResultPayload::File(file, _) => {
            let mut file = tokio::fs::File::from_std(file);
            file.seek(std::io::SeekFrom::Start(range.start)).await?;
            let reader = file.take(range.end.saturating_sub(range.start));
            Ok(Body::from_stream(ReaderStream::with_capacity(
                reader,
                STREAM_CHUNK,
            )))
        }
        GetResultPayload::Stream(stream) => Ok(Body::from_stream(stream)),
    }
}
