//! Downloads: `GET /v1/files/{id}` (with single `Range` requests, so an interrupted download
//! resumes) and `GET /v1/files/{id}/thumbnail`.
//!
//! Access is `store.can_read_file` (the uploader, or a member of a conversation the file was
//! sent to); anyone else gets the same 404 as for a file that does not exist. Only decoded
//! raster images are served inline under their type; everything else is an
//! `application/octet-stream` attachment with `nosniff`, so uploaded HTML or SVG can never
//! run in a browser under the server's origin. Bodies stream from the blob store.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use parley_store::FileRow;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::auth::Authed;
use super::blobs::{self, stream_body};
use super::images::{is_inline_image_mime, thumbnail_mime};
use super::{ApiError, Files, parse_id};

/// Characters left as they are in an RFC 8187 `filename*` value (its `attr-char`).
const ATTR_CHAR_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// What a `Range` header asks of a body of some size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// The whole body (no header, or one this server ignores).
    Full,
    /// Bytes `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// Nothing of the body can satisfy it (416).
    Unsatisfiable,
}

/// Parses a single-range `bytes=` header against a body of `size` bytes (RFC 9110 §14).
/// Malformed headers, other units and multiple ranges are ignored (whole body), as the RFC
/// allows.
pub fn parse_range(value: Option<&str>, size: u64) -> RangeRequest {
    let Some(value) = value else {
        return RangeRequest::Full;
    };
    let Some((unit, spec)) = value.trim().split_once('=') else {
        return RangeRequest::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.is_empty(), last.is_empty()) {
        (true, true) => RangeRequest::Full,
        (true, false) => match num(last) {
            None => RangeRequest::Full,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if size == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Partial {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        (false, open) => {
            let Some(start) = num(first) else {
                return RangeRequest::Full;
            };
            let end = if open {
                u64::MAX
            } else {
                match num(last) {
                    Some(end) if end >= start => end,
                    _ => return RangeRequest::Full,
                }
            };
            if start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial {
                    start,
                    end: end.min(size - 1),
                }
            }
        }
    }
}

/// `Content-Disposition` with the name as RFC 8187 UTF-8.
fn disposition(kind: &str, name: &str) -> HeaderValue {
    let encoded = utf8_percent_encode(name, ATTR_CHAR_ESCAPES);
    HeaderValue::from_str(&format!("{kind}; filename*=UTF-8''{encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

fn etag_of(sha: &[u8]) -> String {
    format!("\"{}\"", hex::encode(sha))
}

/// Whether `If-None-Match` already names `etag`.
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t == etag)
        })
}

fn response(status: StatusCode, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp
}

/// The headers every file body carries.
fn common_headers(resp: &mut Response, etag: &str) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
}

/// `GET /v1/files/{id}`: the content, whole or one range.
pub async fn file(
    State(files): State<Arc<Files>>,
    auth: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let row = readable_file(&files, auth, &id).await?;
    let sha = row_sha(&row)?;
    let size = u64::try_from(row.size).unwrap_or(0);
    let etag = etag_of(&row.sha256);
    if not_modified(&headers, &etag) {
        let mut resp = response(StatusCode::NOT_MODIFIED, Body::empty());
        common_headers(&mut resp, &etag);
        return Ok(resp);
    }
    let range = parse_range(headers.get(header::RANGE).and_then(|v| v.to_str().ok()), size);
    let (status, start, end) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, size.saturating_sub(1)),
        RangeRequest::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeRequest::Unsatisfiable => {
            let mut resp = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the file has {size} bytes"),
            )
            .into_response_with(|h| {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
            });
            resp.headers_mut()
                .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            return Ok(resp);
        }
    };
    let result = files.blobs.get(&sha, start..end + 1).await?;
    let len = result.range.end - result.range.start;
    let mut resp = response(status, stream_body(result).await?);
    common_headers(&mut resp, &etag);
    let inline = row.width > 0 && is_inline_image_mime(&row.mime);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len.saturating_sub(1)))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    if inline {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&row.mime)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
        );
        h.insert(header::CONTENT_DISPOSITION, disposition("inline", &row.name));
    } else {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::CONTENT_DISPOSITION, disposition("attachment", &row.name));
    }
    metrics::counter!("parley_file_downloads_total").increment(1);
    Ok(resp)
}

/// `GET /v1/files/{id}/thumbnail`.
pub async fn thumbnail(
    State(files): State<Arc<Files>>,
    auth: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let row = readable_file(&files, auth, &id).await?;
    serve_thumbnail(&files, &row, &headers).await
}

/// The thumbnail of `row` (404 when it has none).
pub async fn serve_thumbnail(
    files: &Files,
    row: &FileRow,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let thumb = row
        .thumb_sha256
        .as_deref()
        .ok_or_else(|| ApiError::not_found("thumbnail"))?;
    let sha: blobs::Sha256 = thumb
        .try_into()
        .map_err(|_| ApiError::internal("stored thumbnail sha256 is not 32 bytes", &thumb.len()))?;
    let etag = etag_of(thumb);
    if not_modified(headers, &etag) {
        let mut resp = response(StatusCode::NOT_MODIFIED, Body::empty());
        common_headers(&mut resp, &etag);
        return Ok(resp);
    }
    let bytes = files.blobs.read_small(&sha).await?;
    let mime = thumbnail_mime(&bytes);
    let len = bytes.len();
    let mut resp = response(StatusCode::OK, Body::from(bytes));
    common_headers(&mut resp, &etag);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(resp)
}

/// The file `raw_id` if the caller may read it; otherwise (or if it does not exist) 404.
async fn readable_file(files: &Files, auth: Authed, raw_id: &str) -> Result<FileRow, ApiError> {
    let id = parse_id(raw_id, "file")?;
    if !files.ctx.store.can_read_file(auth.user_id, id).await? {
        return Err(ApiError::not_found("file"));
    }
    files
        .ctx
        .store
        .file(id)
        .await?
        .ok_or_else(|| ApiError::not_found("file"))
}

fn row_sha(row: &FileRow) -> Result<blobs::Sha256, ApiError> {
    row.sha256
        .as_slice()
        .try_into()
        .map_err(|_| ApiError::internal("stored sha256 is not 32 bytes", &row.sha256.len()))
}

impl ApiError {
    /// The error response with extra headers set by `f`.
    fn into_response_with(self, f: impl FnOnce(&mut HeaderMap)) -> Response {
        let mut resp = axum::response::IntoResponse::into_response(self);
        f(resp.headers_mut());
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::{Full, Partial, Unsatisfiable};
    use super::*;

    #[test]
    fn ranges() {
        let p = |v: &str| parse_range(Some(v), 100);
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(p("bytes=10-19"), Partial { start: 10, end: 19 });
        assert_eq!(p("bytes=90-"), Partial { start: 90, end: 99 });
        assert_eq!(p("bytes=-10"), Partial { start: 90, end: 99 });
        assert_eq!(p("bytes=-1000"), Partial { start: 0, end: 99 });
        assert_eq!(p("bytes=50-5000"), Partial { start: 50, end: 99 });
        assert_eq!(p("bytes=100-"), Unsatisfiable);
        assert_eq!(p("bytes=100-200"), Unsatisfiable);
        assert_eq!(p("bytes=-0"), Unsatisfiable);
        assert_eq!(p("bytes=20-10"), Full);
        assert_eq!(p("bytes=0-1,5-6"), Full);
        assert_eq!(p("items=0-1"), Full);
        assert_eq!(p("bytes=a-b"), Full);
        assert_eq!(p("bytes=+1-2"), Full);
        assert_eq!(p("bytes=-"), Full);
    }

    #[test]
    fn content_disposition_is_encoded() {
        let v = disposition("attachment", "naïve \"q\";.txt");
        assert_eq!(
            v.to_str().unwrap(),
            "attachment; filename*=UTF-8''na%C3%AFve%20%22q%22%3B.txt"
        );
    }

    #[test]
    fn if_none_match() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(not_modified(&h, "\"abc\""));
        assert!(!not_modified(&h, "\"abd\""));
    }
}
