//! Resumable uploads: `POST /v1/uploads` announces size, hash, name and type;
//! `PATCH /v1/uploads/{id}` appends the next bytes at `Upload-Offset`; `GET` tells how far
//! the server got, so a client resumes after a lost connection.
//!
//! Why this shape: the offset must equal what the server durably holds, so a lost,
//! repeated, overlapping or truncated chunk can never corrupt the file — it is refused with
//! `409 offset_mismatch` and the client continues from `received`. Bytes are fsynced before
//! `received` advances (compare-and-set in the database), and one chunk at a time is written
//! per upload. When the last byte arrives the temp file is hashed, images are decoded, and
//! only then does the content enter content-addressed storage and become a file; a mismatch
//! leaves nothing behind. If the same bytes are already stored, `POST` answers with the file
//! at once and no bytes travel.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt as _;
use parley_store::{FileRow, UploadRow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use super::auth::Authed;
use super::blobs::{self, remove_quietly};
use super::images::{self, ImageFacts};
use super::{ApiError, FileJson, Files, blocking, json, parse_id, read_json};
use crate::service::now_ms;

/// Longest cleaned file name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest media type, in bytes.
pub const MAX_MIME_BYTES: usize = 127;
/// Largest `POST /v1/uploads` body.
const MAX_JSON_BYTES: usize = 16 * 1024;
/// A chunk body that sends nothing for this long is abandoned.
const BODY_IDLE: Duration = Duration::from_secs(60);
/// Uploads untouched for this long are deleted by the janitor.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Temp files without an upload row are deleted once this old.
const ORPHAN_AFTER: Duration = Duration::from_secs(3600);
/// How often the janitor sweeps.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// Read buffer for hashing a finished upload.
const HASH_BUFFER: usize = 1024 * 1024;

/// Body of `POST /v1/uploads`.
#[derive(Debug, Deserialize)]
struct NewUpload {
    size: u64,
    sha256: String,
    name: String,
    #[serde(default)]
    mime: Option<String>,
}

/// Where an upload stands (`GET`, and `PATCH` while incomplete).
#[derive(Debug, Serialize)]
struct Progress {
    upload_id: String,
    received: i64,
    size: i64,
}

/// Keeps only the last path component of `raw`, without control, bidi-override or path
/// separator characters, trimmed and cut to [`MAX_NAME_BYTES`]. `None` if nothing usable is
/// left. The result is display metadata only and never becomes a path.
pub fn clean_name(raw: &str) -> Option<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let kept: String = last
        .chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(c, '/' | '\\' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    let mut name = kept.trim();
    while name.len() > MAX_NAME_BYTES {
        let mut cut = MAX_NAME_BYTES;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name = name[..cut].trim_end();
    }
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
}

/// A media type reduced to a lowercase `type/subtype` token (parameters dropped);
/// `application/octet-stream` when absent.
pub fn clean_mime(raw: Option<&str>) -> Result<String, ApiError> {
    let raw = raw.unwrap_or("").split(';').next().unwrap_or("").trim();
    if raw.is_empty() {
        return Ok("application/octet-stream".into());
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match raw.split_once('/') {
        Some((ty, sub)) if raw.len() <= MAX_MIME_BYTES && token(ty) && token(sub) => {
            Ok(raw.to_ascii_lowercase())
        }
        _ => Err(ApiError::bad(
            "bad_mime",
            "mime must be a media type like image/png",
        )),
    }
}

/// A SHA-256 given as 64 hex characters.
fn parse_sha(raw: &str) -> Result<blobs::Sha256, ApiError> {
    let bad = || ApiError::bad("bad_sha256", "sha256 must be 64 hex characters");
    let bytes = hex::decode(raw.trim()).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

fn sha_of(row: &[u8]) -> Result<blobs::Sha256, ApiError> {
    row.try_into()
        .map_err(|_| ApiError::internal("stored sha256 is not 32 bytes", &row.len()))
}

fn invalid_image(reason: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_image",
        format!("not an acceptable PNG, JPEG, GIF or WebP image ({reason})"),
    )
}

/// `POST /v1/uploads`: starts an upload, or — when these exact bytes are stored already —
/// makes the file at once.
pub async fn create(State(files): State<Arc<Files>>, auth: Authed, body: Body) -> Result<Response, ApiError> {
    let req: NewUpload = read_json(body, MAX_JSON_BYTES).await?;
    let cfg = &files.ctx.cfg;
    if req.size == 0 {
        return Err(ApiError::bad("bad_size", "size must be at least 1 byte"));
    }
    let size = match i64::try_from(req.size) {
        Ok(size) if req.size <= cfg.max_file_bytes => size,
        _ => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("files are limited to {} bytes", cfg.max_file_bytes),
            ));
        }
    };
    let sha = parse_sha(&req.sha256)?;
    let name =
        clean_name(&req.name).ok_or_else(|| ApiError::bad("bad_name", "name is empty after cleaning"))?;
    let mime = clean_mime(req.mime.as_deref())?;
    if let Err(wait) = files.creations.take(&auth.user_id, Instant::now()) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many uploads; retry later",
        );
        e.retry_after = Some(wait.as_secs().max(1));
        return Err(e);
    }
    let now = now_ms();
    let store = &files.ctx.store;

    // Skipping the bytes is only for someone who can already read them; anyone else
    // uploads them (the blob is still stored once).
    if files.blobs.size(&sha).await? == Some(req.size)
        && store.can_read_content(auth.user_id, &sha, size).await?
    {
        let src = files.blobs.local_file(&sha).await?;
        let file = make_file(&files, auth.user_id, &sha, size, name, mime, src, now).await?;
        metrics::counter!("parley_uploads_deduplicated_total").increment(1);
        return Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "file": FileJson::from(&file) }),
        ));
    }

    let id = store.next_id();
    let tmp = files.blobs.tmp_file(id);
    files.blobs.store().await?;
    tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .await?;
    let row = UploadRow {
        id,
        user_id: auth.user_id,
        size,
        sha256: sha.to_vec(),
        name,
        mime,
        received: 0,
        created_at: now,
        updated_at: now,
    };
    if let Err(e) = store.create_upload(&row).await {
        remove_quietly(tmp).await;
        return Err(e.into());
    }
    metrics::counter!("parley_uploads_started_total").increment(1);
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({
            "upload_id": id.to_string(),
            "received": 0,
            "size": size,
            "chunk_max": cfg.max_chunk_bytes,
        }),
    ))
}

/// The caller's upload `raw_id`; anyone else's is "not found".
async fn own_upload(files: &Files, auth: Authed, raw_id: &str) -> Result<UploadRow, ApiError> {
    let id = parse_id(raw_id, "upload")?;
    match files.ctx.store.upload(id).await? {
        Some(u) if u.user_id == auth.user_id => Ok(u),
        _ => Err(ApiError::not_found("upload")),
    }
}

fn progress(u: &UploadRow) -> Progress {
    Progress {
        upload_id: u.id.to_string(),
        received: u.received,
        size: u.size,
    }
}

/// `GET /v1/uploads/{id}`: how many bytes the server holds.
pub async fn status(
    State(files): State<Arc<Files>>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let upload = own_upload(&files, auth, &id).await?;
    Ok(json(StatusCode::OK, &progress(&upload)))
}

fn offset_mismatch(received: i64) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::CONFLICT,
        "offset_mismatch",
        format!("Upload-Offset must equal the bytes received so far ({received})"),
    );
    e.received = Some(received);
    e
}

fn too_long() -> ApiError {
    ApiError::bad("too_long", "the chunk runs past the announced size")
}

/// `PATCH /v1/uploads/{id}`: appends the body at `Upload-Offset`; on the last byte,
/// verifies and stores the file.
pub async fn append(
    State(files): State<Arc<Files>>,
    auth: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let chunk_max = files.ctx.cfg.max_chunk_bytes as u64;
    let chunk_too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "chunk_too_large",
            format!("one chunk may carry at most {chunk_max} bytes"),
        )
    };
    let offset = headers
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|o| *o >= 0)
        .ok_or_else(|| {
            ApiError::bad(
                "bad_offset",
                "Upload-Offset header with a byte offset is required",
            )
        })?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > chunk_max) {
        return Err(chunk_too_large());
    }

    let upload = own_upload(&files, auth, &id).await?;
    let guard = files.lock_upload(upload.id).await;
    // Re-read under the lock: a chunk that just finished may have moved it.
    let upload = own_upload(&files, auth, &id).await?;
    if offset != upload.received {
        return Err(offset_mismatch(upload.received));
    }
    let room = u64::try_from(upload.size - upload.received).unwrap_or(0);
    if declared.is_some_and(|n| n > room) {
        return Err(too_long());
    }

    let received = if upload.received == upload.size {
        // Complete already (a finish was interrupted): nothing more may be sent.
        if body_has_bytes(body).await? {
            return Err(too_long());
        }
        upload.received
    } else {
        let tmp = files.blobs.tmp_file(upload.id);
        let Some(mut file) = open_tmp(&files, &upload, &tmp).await? else {
            let fresh = own_upload(&files, auth, &id).await?;
            return Err(offset_mismatch(fresh.received));
        };
        let mut written: u64 = 0;
        let mut stream = body.into_data_stream();
        loop {
            let next = tokio::select! {
                _ = guard.cancel.cancelled() => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "superseded",
                        "a newer request for this upload took over",
                    ));
                }
                next = tokio::time::timeout(BODY_IDLE, stream.next()) => next.map_err(|_| {
                    ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", "chunk body stalled")
                })?,
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|_| ApiError::bad("incomplete_body", "the chunk body was cut off"))?;
            written += chunk.len() as u64;
            if written > chunk_max {
                return Err(chunk_too_large());
            }
            if written > room {
                return Err(too_long());
            }
            file.write_all(&chunk).await?;
        }
        if written == 0 {
            return Ok(json(StatusCode::OK, &progress(&upload)));
        }
        file.flush().await?;
        file.sync_data().await?;
        drop(file);
        let new_received = upload.received + i64::try_from(written).unwrap_or(i64::MAX);
        if !files
            .ctx
            .store
            .advance_upload(upload.id, upload.received, new_received, now_ms())
            .await?
        {
            let fresh = own_upload(&files, auth, &id).await?;
            return Err(offset_mismatch(fresh.received));
        }
        metrics::counter!("parley_upload_bytes_total").increment(written);
        new_received
    };

    let upload = UploadRow { received, ..upload };
    if upload.received < upload.size {
        return Ok(json(StatusCode::OK, &progress(&upload)));
    }
    let file = finish(&files, &upload).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "upload_id": upload.id.to_string(),
            "received": upload.size,
            "size": upload.size,
            "file": FileJson::from(&file),
        }),
    ))
}

/// Whether a body (that should be empty) carries any byte.
async fn body_has_bytes(body: Body) -> Result<bool, ApiError> {
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad("incomplete_body", "the chunk body was cut off"))?;
        if !chunk.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Opens the temp file positioned at `received`, dropping bytes past it that a failed chunk
/// may have left. `None` when fewer bytes than `received` survive (the upload was rewound to
/// what is there; the client must resume from the new `received`).
async fn open_tmp(
    files: &Files,
    upload: &UploadRow,
    tmp: &PathBuf,
) -> Result<Option<tokio::fs::File>, ApiError> {
    let received = u64::try_from(upload.received).unwrap_or(0);
    let mut file = match tokio::fs::OpenOptions::new().write(true).open(tmp).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            files.blobs.store().await?;
            tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(tmp)
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    let have = file.metadata().await?.len();
    if have < received {
        tracing::warn!(
            upload = upload.id,
            have,
            received,
            "upload temp file shorter than recorded; rewinding"
        );
        let have = i64::try_from(have).unwrap_or(0);
        files
            .ctx
            .store
            .advance_upload(upload.id, upload.received, have, now_ms())
            .await?;
        return Ok(None);
    }
    if have > received {
        file.set_len(received).await?;
    }
    file.seek(std::io::SeekFrom::Start(received)).await?;
    Ok(Some(file))
}

/// Deletes an upload and its temp file (hash mismatch, invalid image, abandoned).
async fn discard(files: &Files, upload_id: i64) -> Result<(), ApiError> {
    files.ctx.store.delete_upload(upload_id).await?;
    remove_quietly(files.blobs.tmp_file(upload_id)).await;
    Ok(())
}

/// Hashes the first `size` bytes of `path`; also returns how many there were.
fn hash_file(path: &std::path::Path, size: u64) -> std::io::Result<(blobs::Sha256, u64)> {
    let mut file = std::fs::File::open(path)?.take(size);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BUFFER];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hasher.finalize().into(), total))
}

/// Turns a fully received upload into a file: verify the hash, check images, move the bytes
/// into blob storage, create the file row, forget the upload.
async fn finish(files: &Arc<Files>, upload: &UploadRow) -> Result<FileRow, ApiError> {
    let sha = sha_of(&upload.sha256)?;
    let size = u64::try_from(upload.size).unwrap_or(0);
    let tmp = files.blobs.tmp_file(upload.id);
    let now = now_ms();
    let name = upload.name.clone();
    let mime = upload.mime.clone();

    if tokio::fs::try_exists(&tmp).await? {
        let path = tmp.clone();
        let (digest, len) = blocking(move || hash_file(&path, size)).await??;
        if len < size {
            // Bytes recorded as durable are gone: rewind so the client resends them.
            tracing::warn!(
                upload = upload.id,
                len,
                size,
                "upload temp file shorter than recorded; rewinding"
            );
            let have = i64::try_from(len).unwrap_or(0);
            files
                .ctx
                .store
                .advance_upload(upload.id, upload.received, have, now)
                .await?;
            return Err(offset_mismatch(have));
        }
        if digest != sha {
            discard(files, upload.id).await?;
            metrics::counter!("parley_uploads_refused_total", "why" => "hash_mismatch").increment(1);
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "hash_mismatch",
                "the received bytes do not match the announced sha256; the upload was discarded",
            ));
        }
        if images::looks_like_image(&mime, &name)
            && let Err(e) = image_facts(files, &sha, tmp.clone()).await
        {
            if e.code == "invalid_image" {
                discard(files, upload.id).await?;
                metrics::counter!("parley_uploads_refused_total", "why" => "invalid_image").increment(1);
            }
            return Err(e);
        }
        files.blobs.adopt(upload.id, &sha).await?;
    } else if files.blobs.size(&sha).await? != Some(size) {
        // Neither temp file nor blob: the bytes are lost; start over.
        tracing::warn!(upload = upload.id, "upload temp file missing; rewinding to 0");
        files
            .ctx
            .store
            .advance_upload(upload.id, upload.received, 0, now)
            .await?;
        return Err(offset_mismatch(0));
    }
    // Else: an earlier finish stored the blob and was interrupted before the file row.

    let src = files.blobs.local_file(&sha).await?;
    let file = make_file(files, upload.user_id, &sha, upload.size, name, mime, src, now).await?;
    files.ctx.store.delete_upload(upload.id).await?;
    metrics::counter!("parley_uploads_completed_total").increment(1);
    Ok(file)
}

/// The image facts of the content `sha` (whose bytes are at `src`), from the cache beside
/// the blob or by decoding once (then cached, with the thumbnail stored as a blob).
/// `invalid_image` when the bytes are not an acceptable image.
async fn image_facts(files: &Arc<Files>, sha: &blobs::Sha256, src: PathBuf) -> Result<ImageFacts, ApiError> {
    if let Some(cached) = files.blobs.image_info(sha).await? {
        return cached.ok_or_else(|| invalid_image("not decodable"));
    }
    let _slot = files
        .decode_slots
        .acquire()
        .await
        .map_err(|e| ApiError::internal("decode slots closed", &e))?;
    match blocking(move || images::probe(&src)).await?? {
        Ok(probed) => {
            let thumb_sha = parse_sha(&probed.facts.thumb_sha256)?;
            files
                .blobs
                .put_if_absent(&thumb_sha, probed.thumbnail.into())
                .await?;
            files.blobs.set_image_info(sha, &probed.facts).await?;
            Ok(probed.facts)
        }
        // Not cached: refused content is not stored, so it leaves nothing behind.
        Err(reason) => Err(invalid_image(&reason)),
    }
}

/// Creates the file row for `user` over the stored content `sha` (bytes at `src`). Images
/// get their size, decoded media type and thumbnail.
#[allow(clippy::too_many_arguments)]
async fn make_file(
    files: &Arc<Files>,
    user: i64,
    sha: &blobs::Sha256,
    size: i64,
    name: String,
    mime: String,
    src: PathBuf,
    now: i64,
) -> Result<FileRow, ApiError> {
    let image = if images::looks_like_image(&mime, &name) {
        Some(image_facts(files, sha, src).await?)
    } else {
        None
    };
    let dim = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    let row = FileRow {
        id: files.ctx.store.next_id(),
        sha256: sha.to_vec(),
        size,
        mime: image.as_ref().map_or(mime, |i| i.mime.clone()),
        name,
        uploader_id: user,
        width: image.as_ref().map_or(0, |i| dim(i.width)),
        height: image.as_ref().map_or(0, |i| dim(i.height)),
        thumb_sha256: match &image {
            Some(i) => Some(parse_sha(&i.thumb_sha256)?.to_vec()),
            None => None,
        },
        created_at: now,
    };
    files.ctx.store.create_file(&row).await?;
    Ok(row)
}

/// Deletes uploads untouched for [`ABANDONED_AFTER`] and stray temp files, at start and
/// then every hour, until shutdown.
pub async fn janitor(files: Arc<Files>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                files.creations.prune(Instant::now());
                if let Err(e) = sweep(&files).await {
                    tracing::warn!(code = e.code, "upload sweep stopped early");
                }
            }
        }
    }
}

async fn sweep(files: &Arc<Files>) -> Result<(), ApiError> {
    let mut dir = match tokio::fs::read_dir(files.blobs.tmp_dir()).await {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let now = now_ms();
    let abandoned_ms = i64::try_from(ABANDONED_AFTER.as_millis()).unwrap_or(i64::MAX);
    while let Some(entry) = dir.next_entry().await? {
        let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<i64>().ok()) else {
            continue;
        };
        let Some(_guard) = files.try_lock_idle(id) else {
            continue;
        };
        match files.ctx.store.upload(id).await? {
            Some(u) if now.saturating_sub(u.updated_at) > abandoned_ms => {
                discard(files, id).await?;
                metrics::counter!("parley_uploads_abandoned_total").increment(1);
            }
            Some(_) => {}
            None => {
                let age = entry
                    .metadata()
                    .await
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok());
                if age.is_some_and(|a| a > ORPHAN_AFTER) {
                    remove_quietly(entry.path()).await;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_never_carry_paths() {
        assert_eq!(clean_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(
            clean_name("C:\\Users\\me\\photo.png").as_deref(),
            Some("photo.png")
        );
        assert_eq!(clean_name("a\u{0}b\nc.txt").as_deref(), Some("abc.txt"));
        assert_eq!(clean_name("evil\u{202e}gpj.exe").as_deref(), Some("evilgpj.exe"));
        assert_eq!(clean_name("dir/"), None);
        assert_eq!(clean_name(".."), None);
        assert_eq!(clean_name("  \t "), None);
        let long = "é".repeat(300);
        let cut = clean_name(&long).unwrap();
        assert!(cut.len() <= MAX_NAME_BYTES && cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn mime_types_are_tokens() {
        assert_eq!(clean_mime(None).unwrap(), "application/octet-stream");
        assert_eq!(clean_mime(Some("")).unwrap(), "application/octet-stream");
        assert_eq!(clean_mime(Some("Image/PNG; charset=x")).unwrap(), "image/png");
        assert!(clean_mime(Some("text/html\r\nX-Evil: 1")).is_err());
        assert!(clean_mime(Some("nonsense")).is_err());
        assert!(clean_mime(Some(&format!("a/{}", "b".repeat(200)))).is_err());
    }

    #[test]
    fn hashes_a_file_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello world").unwrap();
        let (digest, len) = hash_file(&path, 5).unwrap();
        assert_eq!(len, 5);
        assert_eq!(digest.to_vec(), Sha256::digest(b"hello").to_vec());
    }
}
