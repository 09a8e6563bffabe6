//! Resumable, verified downloads.
//!
//! Bytes go to `DEST.part`; an interrupted download continues from that
//! file's length with `Range: bytes=N-` (in this call after a network error,
//! or in a later call). The server names the content's SHA-256 in the ETag;
//! the finished file is hashed and renamed to `DEST` only if it matches —
//! otherwise it is deleted and the download fails.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use parley_proto::pb;
use tokio::io::AsyncWriteExt;

use crate::error::ClientError;
use crate::files::server::{FileServer, network, read_error};
use crate::files::upload::hash_file;
use crate::files::{MAX_ATTEMPTS, pause_before_retry};

/// `DEST.part`: where the bytes collect until verified.
pub(crate) fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Downloads `path` (e.g. `/v1/files/7`) to `dest`, reporting `(received, total)`.
pub(crate) async fn download(
    server: &FileServer,
    path: &str,
    file_id: i64,
    dest: &Path,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<pb::FileRef, ClientError> {
    let part = part_path(dest);
    let mut failures = 0u32;
    let file = loop {
        match attempt(server, path, file_id, &part, progress).await {
            Ok(file) => break file,
            Err(Attempt::Restart) if failures + 1 < MAX_ATTEMPTS => {
                failures += 1;
                remove_if_exists(&part).await?;
            }
            Err(Attempt::Failed(err)) if err.is_transient() && failures + 1 < MAX_ATTEMPTS => {
                failures += 1;
                tracing::debug!(error = %err, failures, "download interrupted; resuming");
                pause_before_retry(failures).await;
            }
            Err(Attempt::Restart) => {
                return Err(ClientError::Protocol(
                    "the file server keeps refusing to resume the download".into(),
                ));
            }
            Err(Attempt::Failed(err)) => return Err(err),
        }
    };
    let (_, actual) = hash_file(&part).await?;
    if actual != file.sha256 {
        remove_if_exists(&part).await?;
        return Err(ClientError::Integrity {
            expected: file.sha256,
            actual,
        });
    }
    tokio::fs::rename(&part, dest).await?;
    Ok(file)
}

enum Attempt {
    /// The partial file is no use (416, or a range the server moved): start over.
    Restart,
    Failed(ClientError),
}

impl From<ClientError> for Attempt {
    fn from(err: ClientError) -> Self {
        Attempt::Failed(err)
    }
}

impl From<std::io::Error> for Attempt {
    fn from(err: std::io::Error) -> Self {
        Attempt::Failed(err.into())
    }
}

async fn attempt(
    server: &FileServer,
    path: &str,
    file_id: i64,
    part: &Path,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<pb::FileRef, Attempt> {
    let have = match tokio::fs::metadata(part).await {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e.into()),
    };
    let mut conn = server.connect().await?;
    let mut request = server.request(Method::GET, path, Bytes::new())?;
    if have > 0 {
        let range = HeaderValue::from_str(&format!("bytes={have}-"))
            .map_err(|_| ClientError::Protocol("bad range".into()))?;
        request.headers_mut().insert(header::RANGE, range);
    }
    let response = conn.send(request, server.timeout).await?;
    let status = response.status();
    let start = match status {
        StatusCode::OK => 0,
        StatusCode::PARTIAL_CONTENT => match content_range_start(response.headers()) {
            Some(start) if start == have => have,
            _ => return Err(Attempt::Restart),
        },
        StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => return Err(Attempt::Restart),
        _ => return Err(read_error(response, server.timeout).await.1.into()),
    };
    let mut file = describe(file_id, response.headers())?;
    let length = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let total = content_range_total(response.headers())
        .or(length.map(|l| start + l))
        .unwrap_or(0);
    file.size = total;

    let mut out = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(start > 0)
        .truncate(start == 0)
        .open(part)
        .await?;
    let mut received = start;
    progress(received, total);
    let mut body = response.into_body();
    loop {
        let frame = tokio::time::timeout(server.timeout, body.frame())
            .await
            .map_err(|_| ClientError::Timeout)?;
        let Some(frame) = frame else { break };
        if let Ok(data) = frame.map_err(network)?.into_data() {
            out.write_all(&data).await?;
            received += data.len() as u64;
            progress(received, total);
        }
    }
    out.flush().await?;
    out.sync_all().await?;
    if total > 0 && received != total {
        return Err(ClientError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the download ended at {received} of {total} bytes"),
        ))
        .into());
    }
    Ok(file)
}

/// What the response headers say about the file: SHA-256 from the ETag
/// (required), type, and the name from `Content-Disposition`.
fn describe(file_id: i64, headers: &HeaderMap) -> Result<pb::FileRef, ClientError> {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let sha256 = text(header::ETAG).and_then(etag_sha256).ok_or_else(|| {
        ClientError::Protocol("the file server sent no SHA-256 ETag to verify against".into())
    })?;
    Ok(pb::FileRef {
        file_id,
        name: text(header::CONTENT_DISPOSITION)
            .and_then(disposition_filename)
            .unwrap_or_default(),
        mime: text(header::CONTENT_TYPE).unwrap_or_default().to_string(),
        sha256,
        ..Default::default()
    })
}

/// The SHA-256 in an ETag such as `"ab12…"` or `W/"ab12…"`.
pub(crate) fn etag_sha256(etag: &str) -> Option<String> {
    let tag = etag.trim().trim_start_matches("W/").trim_matches('"');
    let tag = tag.strip_prefix("sha256:").unwrap_or(tag);
    (tag.len() == 64 && tag.bytes().all(|b| b.is_ascii_hexdigit())).then(|| tag.to_ascii_lowercase())
}

/// `a` of `Content-Range: bytes a-b/total`.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes ")?;
    range.split(['-', '/']).next()?.trim().parse().ok()
}

/// `total` of `Content-Range: bytes a-b/total` (not `*`).
fn content_range_total(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    value.rsplit_once('/')?.1.trim().parse().ok()
}

/// The file name in a `Content-Disposition` header (`filename*=UTF-8''…`
/// preferred). It comes from another user: never use it as a path as is.
pub(crate) fn disposition_filename(value: &str) -> Option<String> {
    let mut plain = None;
    for part in value.split(';').map(str::trim) {
        if let Some(encoded) = part.strip_prefix("filename*=") {
            let encoded = encoded.split_once("''").map_or(encoded, |(_, rest)| rest);
            if let Some(name) = percent_decode(encoded.trim_matches('"')) {
                return Some(name);
            }
        } else if let Some(name) = part.strip_prefix("filename=") {
            plain = Some(name.trim_matches('"').replace("\\\"", "\""));
        }
    }
    plain
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn remove_if_exists(path: &Path) -> Result<(), ClientError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_carry_the_sha256() {
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(etag_sha256(&format!("\"{sha}\"")).as_deref(), Some(sha));
        assert_eq!(
            etag_sha256(&format!("W/\"{}\"", sha.to_uppercase())).as_deref(),
            Some(sha)
        );
        assert_eq!(etag_sha256(&format!("\"sha256:{sha}\"")).as_deref(), Some(sha));
        assert_eq!(etag_sha256("\"abc\""), None);
    }

    #[test]
    fn content_ranges_parse() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/200"),
        );
        assert_eq!(content_range_start(&headers), Some(100));
        assert_eq!(content_range_total(&headers), Some(200));
        headers.insert(header::CONTENT_RANGE, HeaderValue::from_static("bytes */200"));
        assert_eq!(content_range_start(&headers), None);
    }

    #[test]
    fn file_names_come_from_content_disposition() {
        assert_eq!(
            disposition_filename("attachment; filename=\"a b.png\"").as_deref(),
            Some("a b.png")
        );
        assert_eq!(
            disposition_filename("attachment; filename=\"x\"; filename*=UTF-8''%E2%82%AC.txt").as_deref(),
            Some("€.txt")
        );
        assert_eq!(disposition_filename("inline"), None);
    }

    #[test]
    fn part_files_sit_beside_the_destination() {
        assert_eq!(
            part_path(Path::new("/tmp/a.png")),
            PathBuf::from("/tmp/a.png.part")
        );
    }
}
