//! Resumable uploads: hash first, then send chunks the server acknowledges.
//!
//! The protocol (`POST /v1/uploads`, `PATCH /v1/uploads/{id}` with
//! `Upload-Offset`, `GET /v1/uploads/{id}`) is driven by the server's
//! `received` count: every answer says how far the upload stands and the
//! next chunk starts there. After a network error the client reconnects,
//! asks where the upload stands and continues; a 409 offset mismatch carries
//! the position directly. The server knows the SHA-256 up front, so bytes it
//! already has are not sent at all (`200 {"file"}` to the `POST`).

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use parley_proto::pb;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::client::Client;
use crate::error::ClientError;
use crate::files::json::UploadState;
use crate::files::server::{Connection, FileServer, read_error, read_json};
use crate::files::{MAX_ATTEMPTS, pause_before_retry};

/// Chunk size when the server names none, and the most sent in one request.
const DEFAULT_CHUNK: u64 = 1 << 20;
const LARGEST_CHUNK: u64 = 8 << 20;
/// Extra time a chunk request gets per byte: 64 KiB/s is assumed at worst.
const SLOWEST_BYTES_PER_SEC: u64 = 64 * 1024;
/// Read size when hashing a file.
const HASH_BLOCK: usize = 1 << 20;

/// Where the bytes of an upload come from.
pub(crate) enum Source {
    Path(PathBuf),
    Memory(Bytes),
}

/// What the server is told before the first byte.
pub(crate) struct Announcement {
    pub(crate) name: String,
    pub(crate) mime: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
}

/// Size and lowercase hex SHA-256 of the file at `path`.
pub(crate) async fn hash_file(path: &Path) -> Result<(u64, String), ClientError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; HASH_BLOCK];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok((size, hex::encode(hasher.finalize())))
    })
    .await
    .map_err(|e| ClientError::Io(std::io::Error::other(e)))?
}

/// Lowercase hex SHA-256 of `bytes`.
pub(crate) fn hash_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads chunks of the source at any offset.
struct Reader {
    source: Source,
    file: Option<tokio::fs::File>,
}

impl Reader {
    async fn chunk(&mut self, offset: u64, len: u64) -> Result<Bytes, ClientError> {
        match &self.source {
            Source::Memory(bytes) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                let end = start
                    .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
                    .min(bytes.len());
                Ok(bytes.slice(start..end))
            }
            Source::Path(path) => {
                if self.file.is_none() {
                    self.file = Some(tokio::fs::File::open(path).await?);
                }
                let Some(file) = self.file.as_mut() else {
                    return Err(ClientError::Io(std::io::Error::other("file not open")));
                };
                file.seek(SeekFrom::Start(offset)).await?;
                let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
                file.take(len).read_to_end(&mut buf).await?;
                if (buf.len() as u64) < len {
                    return Err(ClientError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file became shorter while it was being uploaded",
                    )));
                }
                Ok(Bytes::from(buf))
            }
        }
    }
}

/// Where an upload stands between requests.
enum Stage {
    /// Not created on the server yet.
    Create,
    /// Created: send from `offset`; `resync` first asks the server.
    Send {
        id: i64,
        offset: u64,
        chunk: u64,
        resync: bool,
    },
}

/// Uploads `source` as announced, reporting `(sent, total)` to `progress`.
pub(crate) async fn upload(
    client: &Client,
    announced: Announcement,
    source: Source,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<pb::FileRef, ClientError> {
    let server = FileServer::of(client)?;
    let mut reader = Reader { source, file: None };
    let mut connection: Option<Connection> = None;
    let mut stage = Stage::Create;
    let mut failures = 0u32;
    let total = announced.size;
    progress(0, total);
    loop {
        let step = async {
            let conn = match connection.as_mut() {
                Some(conn) => conn,
                None => connection.insert(server.connect().await?),
            };
            advance(&server, conn, &mut stage, &announced, &mut reader).await
        };
        match step.await {
            Ok(Some(file)) => {
                progress(total, total);
                return Ok(file);
            }
            Ok(None) => {
                failures = 0;
                if let Stage::Send { offset, .. } = stage {
                    progress(offset.min(total), total);
                }
            }
            Err(err) if err.is_transient() && failures + 1 < MAX_ATTEMPTS => {
                failures += 1;
                tracing::debug!(error = %err, failures, "upload interrupted; resuming");
                connection = None;
                if let Stage::Send { resync, .. } = &mut stage {
                    *resync = true;
                }
                pause_before_retry(failures).await;
            }
            Err(ClientError::Http { status: 404, .. })
                if matches!(stage, Stage::Send { .. }) && failures + 1 < MAX_ATTEMPTS =>
            {
                // The server forgot the upload (expired): start over.
                failures += 1;
                stage = Stage::Create;
            }
            Err(err) => return Err(err),
        }
    }
}

/// One request of the upload; `Some` when the file is complete.
async fn advance(
    server: &FileServer,
    conn: &mut Connection,
    stage: &mut Stage,
    announced: &Announcement,
    reader: &mut Reader,
) -> Result<Option<pb::FileRef>, ClientError> {
    let timeout = server.timeout;
    match stage {
        Stage::Create => {
            let body = json!({
                "size": announced.size,
                "sha256": announced.sha256,
                "name": announced.name,
                "mime": announced.mime,
            });
            let response = conn
                .send(server.json_request(Method::POST, "/v1/uploads", &body)?, timeout)
                .await?;
            if !response.status().is_success() {
                return Err(read_error(response, timeout).await.1);
            }
            let state: UploadState = read_json(response, timeout).await?;
            if let Some(file) = state.file {
                return Ok(Some(file.into()));
            }
            let id = state
                .upload_id
                .ok_or_else(|| ClientError::Protocol("the file server created no upload".into()))?;
            let chunk = match state.chunk_max {
                Some(0) | None => DEFAULT_CHUNK,
                Some(max) => max.min(LARGEST_CHUNK),
            };
            *stage = Stage::Send {
                id,
                offset: state.received.unwrap_or(0),
                chunk,
                resync: false,
            };
            Ok(None)
        }
        Stage::Send {
            id,
            offset,
            resync: resync @ true,
            ..
        } => {
            let response = conn
                .send(
                    server.request(Method::GET, &format!("/v1/uploads/{id}"), Bytes::new())?,
                    timeout,
                )
                .await?;
            if !response.status().is_success() {
                return Err(read_error(response, timeout).await.1);
            }
            let state: UploadState = read_json(response, timeout).await?;
            *offset = state.received.unwrap_or(0);
            *resync = false;
            Ok(None)
        }
        Stage::Send {
            id, offset, chunk, ..
        } => {
            let len = (*chunk).min(announced.size.saturating_sub(*offset));
            let bytes = reader.chunk(*offset, len).await?;
            let mut request = server.request(Method::PATCH, &format!("/v1/uploads/{id}"), bytes)?;
            request
                .headers_mut()
                .insert("upload-offset", HeaderValue::from(*offset));
            request.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/offset+octet-stream"),
            );
            let slack = Duration::from_secs(len / SLOWEST_BYTES_PER_SEC);
            let response = conn.send(request, timeout + slack).await?;
            let status = response.status();
            if status == StatusCode::CONFLICT {
                let (body, err) = read_error(response, timeout).await;
                return match body.received {
                    Some(received) if body.error == "offset_mismatch" => {
                        tracing::debug!(
                            offset = *offset,
                            received,
                            "upload offset corrected by the server"
                        );
                        *offset = received;
                        Ok(None)
                    }
                    _ => Err(err),
                };
            }
            if !status.is_success() {
                return Err(read_error(response, timeout).await.1);
            }
            let state: UploadState = read_json(response, timeout).await?;
            if let Some(file) = state.file {
                return Ok(Some(file.into()));
            }
            if len == 0 {
                return Err(ClientError::Protocol(
                    "the file server has every byte but did not finish the upload".into(),
                ));
            }
            let received = state.received.unwrap_or(*offset + len);
            if received <= *offset {
                return Err(ClientError::Protocol(format!(
                    "the file server accepted no bytes at offset {offset}"
                )));
            }
            *offset = received;
            Ok(None)
        }
    }
}

/// A MIME type from a file name's extension; `application/octet-stream`
/// for anything not listed.
pub(crate) fn guess_mime(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "txt" | "log" | "md" => "text/plain",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "opus" | "ogg" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_types_follow_extensions() {
        assert_eq!(guess_mime("a.PNG"), "image/png");
        assert_eq!(guess_mime("photo.jpeg"), "image/jpeg");
        assert_eq!(guess_mime("noext"), "application/octet-stream");
        assert_eq!(guess_mime("archive.tar.gz"), "application/octet-stream");
    }

    #[tokio::test]
    async fn files_hash_like_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let (size, sha) = hash_file(&path).await.unwrap();
        assert_eq!(size, 3);
        assert_eq!(sha, hash_bytes(b"abc"));
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn chunks_are_read_at_any_offset() {
        let mut memory = Reader {
            source: Source::Memory(Bytes::from_static(b"0123456789")),
            file: None,
        };
        assert_eq!(&memory.chunk(3, 4).await.unwrap()[..], b"3456");
        assert_eq!(&memory.chunk(8, 4).await.unwrap()[..], b"89");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let mut file = Reader {
            source: Source::Path(path),
            file: None,
        };
        assert_eq!(&file.chunk(6, 3).await.unwrap()[..], b"678");
        assert_eq!(&file.chunk(0, 2).await.unwrap()[..], b"01");
        assert!(file.chunk(9, 5).await.is_err(), "shorter than announced");
    }
}
