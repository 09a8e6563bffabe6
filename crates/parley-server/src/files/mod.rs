//! File transfer over HTTPS (SPEC §3.7): chunked, resumable uploads verified by SHA-256,
//! content-addressed storage (same bytes stored once), range downloads, image thumbnails and
//! avatars.
//!
//! Why HTTP and not the framed protocol: files run to gigabytes, and HTTP gives streaming
//! bodies, `Range` and resumable `PATCH` for free, while the framed protocol keeps its small
//! frame limit. Every endpoint authenticates with the session token (`Authorization: Bearer`)
//! and answers errors as JSON `{"error": "<code>", "message": "<text>"}`.
//!
//! | endpoint | module |
//! |---|---|
//! | `POST /v1/uploads`, `GET`/`PATCH /v1/uploads/{id}` | [`upload`] |
//! | `GET /v1/files/{id}`, `GET /v1/files/{id}/thumbnail` | [`download`] |
//! | `PUT`/`DELETE /v1/me/avatar`, `GET /v1/users/{id}/avatar` | [`avatar`] |
//!
//! Bytes live under the files directory: uploads in progress in `tmp/<upload id>`, complete
//! content in `blobs/<aa>/<bb>/<sha256 hex>` ([`blobs`]). User-supplied names are metadata
//! only; no path is ever built from them.

pub mod auth;
pub mod avatar;
pub mod blobs;
pub mod download;
pub mod images;
pub mod upload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use parley_store::{FileRow, StoreError};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::http::HttpState;
use crate::limits::KeyedLimiter;
use crate::service::Ctx;

/// Image decodes (hashing aside, the most memory-hungry work here) allowed at once.
const DECODE_SLOTS: usize = 2;

/// State shared by the file endpoints.
pub struct Files {
    /// The server's shared context (storage, config).
    pub ctx: Arc<Ctx>,
    /// Content-addressed blob storage and the upload temp directory.
    pub blobs: blobs::Blobs,
    /// Uploads with a chunk being written right now (one writer per upload).
    writers: Mutex<HashMap<i64, Writer>>,
    /// Bounds concurrent image decoding.
    decode_slots: Semaphore,
    /// Upload creations per user.
    creations: KeyedLimiter<i64>,
}

impl Files {
    /// File state over the server context; directories are created lazily on first use.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        let blobs = blobs::Blobs::new(ctx.cfg.files_dir());
        let creations = KeyedLimiter::new(ctx.cfg.uploads_per_hour, Duration::from_secs(3600));
        Files {
            ctx,
            blobs,
            writers: Mutex::new(HashMap::new()),
            decode_slots: Semaphore::new(DECODE_SLOTS),
            creations,
        }
    }

    /// Becomes the one writer of `upload_id`. A writer still busy with an earlier chunk is
    /// told to give up (its client has most likely reconnected and is resuming; the stale
    /// request has not advanced `received`, so nothing is lost), and this waits until it has.
    async fn lock_upload(self: &Arc<Self>, upload_id: i64) -> UploadGuard {
        let cancel = CancellationToken::new();
        let lock = {
            let mut writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
            let writer = writers.entry(upload_id).or_insert_with(|| Writer {
                lock: Arc::new(tokio::sync::Mutex::new(())),
                cancel: CancellationToken::new(),
                users: 0,
            });
            // Tell the current writer (and anyone queued before us) to give up.
            writer.cancel.cancel();
            writer.cancel = cancel.clone();
            writer.users += 1;
            writer.lock.clone()
        };
        // Built before waiting, so a request dropped while queued still signs out.
        let mut guard = UploadGuard {
            files: self.clone(),
            upload_id,
            cancel,
            held: None,
        };
        guard.held = Some(lock.lock_owned().await);
        guard
    }

    /// Like [`Files::lock_upload`] but only if nobody is writing `upload_id` (for the janitor).
    fn try_lock_idle(self: &Arc<Self>, upload_id: i64) -> Option<UploadGuard> {
        let mut writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
        if writers.contains_key(&upload_id) {
            return None;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let held = lock.clone().try_lock_owned().ok()?;
        let cancel = CancellationToken::new();
        writers.insert(
            upload_id,
            Writer {
                lock,
                cancel: cancel.clone(),
                users: 1,
            },
        );
        Some(UploadGuard {
            files: self.clone(),
            upload_id,
            cancel,
            held: Some(held),
        })
    }
}

/// The writers of one upload: the lock they queue on, the newest one's cancel signal, and
/// how many hold or wait (the entry goes when that reaches 0).
struct Writer {
    lock: Arc<tokio::sync::Mutex<()>>,
    cancel: CancellationToken,
    users: usize,
}

/// One upload's write lock (see [`Files::lock_upload`]); `cancel` fires when a newer
/// request for the same upload wants it.
struct UploadGuard {
    files: Arc<Files>,
    upload_id: i64,
    cancel: CancellationToken,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        self.held.take();
        let mut writers = self.files.writers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(writer) = writers.get_mut(&self.upload_id) {
            writer.users = writer.users.saturating_sub(1);
            if writer.users == 0 {
                writers.remove(&self.upload_id);
            }
        }
    }
}

/// The file endpoints, ready to merge into the HTTP router. Also starts the janitor that
/// removes uploads abandoned for a day (on the server's task tracker, so shutdown waits
/// for it). Generic over the outer router's state so it merges anywhere.
pub fn router<S: Clone + Send + Sync + 'static>(state: &HttpState) -> Router<S> {
    let files = Arc::new(Files::new(state.ctx.clone()));
    state
        .tracker
        .spawn(upload::janitor(files.clone(), state.shutdown.clone()));
    Router::new()
        .route("/v1/uploads", post(upload::create))
        .route("/v1/uploads/{id}", get(upload::status).patch(upload::append))
        .route("/v1/files/{id}", get(download::file))
        .route("/v1/files/{id}/thumbnail", get(download::thumbnail))
        .route("/v1/me/avatar", put(avatar::set).delete(avatar::clear))
        .route("/v1/users/{id}/avatar", get(avatar::get))
        .with_state(files)
}

/// A failed request: HTTP status plus the JSON error body the SDK matches on.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code (`"offset_mismatch"`, `"too_large"`, …).
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// For `offset_mismatch`: the bytes the server holds.
    pub received: Option<i64>,
    /// For `rate_limited`: seconds to wait (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            received: None,
            retry_after: None,
        }
    }

    /// 404 `not_found`: also what a caller without access sees, so existence never leaks.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
    }

    /// 400 with `code`.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 500 `internal` after logging `what` (details never reach the client).
    pub fn internal(what: &str, error: &dyn std::fmt::Display) -> Self {
        metrics::counter!("parley_file_errors_total").increment(1);
        tracing::error!(error = %error, "{what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        metrics::counter!("parley_db_errors_total").increment(1);
        Self::internal("storage error", &e)
    }
}

impl From<object_store::Error> for ApiError {
    fn from(e: object_store::Error) -> Self {
        Self::internal("blob store error", &e)
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        Self::internal("file I/O error", &e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            received: Option<i64>,
        }
        let body = Body {
            error: self.code,
            message: &self.message,
            received: self.received,
        };
        let mut resp = (self.status, json_body(&body)).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(received) = self.received {
            headers.insert("upload-offset", HeaderValue::from(received));
        }
        resp
    }
}

/// Serializes `value` (infallible for the plain structs used here; `{}` otherwise).
fn json_body<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
}

/// A JSON response with `status`.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let mut resp = (status, json_body(value)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A file as the SDK sees it. Ids are strings: an `i64` does not fit a JavaScript number.
#[derive(Debug, Clone, Serialize)]
pub struct FileJson {
    /// File id.
    pub file_id: String,
    /// Cleaned original name (display only).
    pub name: String,
    /// Size in bytes.
    pub size: i64,
    /// Media type (for images, the decoded format's).
    pub mime: String,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// Pixel width; 0 when not an image.
    pub width: i32,
    /// Pixel height; 0 when not an image.
    pub height: i32,
    /// Whether `GET /v1/files/{id}/thumbnail` has something to serve.
    pub has_thumbnail: bool,
}

impl From<&FileRow> for FileJson {
    fn from(f: &FileRow) -> Self {
        FileJson {
            file_id: f.id.to_string(),
            name: f.name.clone(),
            size: f.size,
            mime: f.mime.clone(),
            sha256: hex::encode(&f.sha256),
            width: f.width,
            height: f.height,
            has_thumbnail: f.thumb_sha256.is_some(),
        }
    }
}

/// Parses an id from a path segment; anything else is "not found".
pub fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found(what))
}

/// Reads a small JSON request body (at most `limit` bytes).
pub async fn read_json<T: serde::de::DeserializeOwned>(
    body: axum::body::Body,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "request body too large",
        )
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad("bad_request", format!("invalid JSON body: {e}")))
}

/// Runs blocking work on the blocking pool; a panicked task is an internal error.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("blocking task failed", &e))
}
