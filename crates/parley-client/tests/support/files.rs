//! A fake of the server's HTTPS file API (uploads, downloads with Range,
//! thumbnails, avatars) over the test server's certificate, with switches
//! to break transfers on purpose: hang up after storing a chunk, cut a
//! download short, or serve bytes that do not match their ETag.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::Stats;

type Body = BoxBody<Bytes, std::io::Error>;

#[derive(Clone, Debug)]
pub struct StoredFile {
    pub name: String,
    pub mime: String,
    pub bytes: Bytes,
    pub sha256: String,
}

#[derive(Debug)]
pub struct Upload {
    pub file: StoredFile,
    pub size: u64,
    pub received: Vec<u8>,
}

/// The file server's state and failure switches.
#[derive(Debug)]
pub struct Store {
    pub files: HashMap<i64, StoredFile>,
    pub uploads: HashMap<i64, Upload>,
    next_id: i64,
    pub chunk_max: u64,
    /// Store the next this-many chunks, then hang up instead of answering.
    pub hang_up_after_chunk: u32,
    /// Cut the next download after this many bytes.
    pub cut_next_download: Option<usize>,
    /// Serve every download with one byte flipped.
    pub corrupt: bool,
    /// Every PATCH received, and the bytes in them.
    pub chunks: u32,
    pub bytes_received: u64,
    /// Range headers of file downloads, in order ("" for none).
    pub ranges: Vec<String>,
    pub avatar: Option<i64>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            files: HashMap::new(),
            uploads: HashMap::new(),
            next_id: 500,
            chunk_max: 4,
            hang_up_after_chunk: 0,
            cut_next_download: None,
            corrupt: false,
            chunks: 0,
            bytes_received: 0,
            ranges: Vec::new(),
            avatar: None,
        }
    }
}

impl Store {
    /// Stores a file directly; returns its id.
    pub fn add(&mut self, name: &str, mime: &str, bytes: &[u8]) -> i64 {
        self.next_id += 1;
        let file = StoredFile {
            name: name.into(),
            mime: mime.into(),
            bytes: Bytes::copy_from_slice(bytes),
            sha256: hex::encode(Sha256::digest(bytes)),
        };
        self.files.insert(self.next_id, file);
        self.next_id
    }
}

fn file_json(id: i64, f: &StoredFile) -> Value {
    json!({
        "file_id": id.to_string(), "name": f.name, "size": f.bytes.len(), "mime": f.mime,
        "sha256": f.sha256, "width": 2, "height": 1, "has_thumbnail": f.mime.starts_with("image/"),
    })
}

pub struct FileServer {
    pub addr: SocketAddr,
}

impl FileServer {
    pub async fn start(acceptor: TlsAcceptor, stats: Arc<Mutex<Stats>>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let stats = stats.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req| handle(stats.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        FileServer { addr }
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

fn reply(status: StatusCode, value: Value) -> Result<Response<Body>, std::io::Error> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(value.to_string()))
        .unwrap())
}

fn error(status: StatusCode, code: &str) -> Result<Response<Body>, std::io::Error> {
    reply(
        status,
        json!({ "error": code, "message": format!("test: {code}") }),
    )
}

async fn handle(stats: Arc<Mutex<Stats>>, req: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| stats.lock().unwrap().tokens.contains_key(token));
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    let method = req.method().clone();
    let path: Vec<String> = req.uri().path().split('/').skip(1).map(str::to_string).collect();
    let offset = req
        .headers()
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let id = |i: usize| path.get(i).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let mut stats = stats.lock().unwrap();
    let store = &mut stats.store;
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match (method, p.as_slice()) {
        (Method::POST, ["v1", "uploads"]) => {
            let v: Value = serde_json::from_slice(&body).map_err(std::io::Error::other)?;
            let sha = v["sha256"].as_str().unwrap_or_default().to_string();
            if let Some((id, f)) = store.files.iter().find(|(_, f)| f.sha256 == sha) {
                return reply(StatusCode::OK, json!({ "file": file_json(*id, f) }));
            }
            store.next_id += 1;
            let upload = Upload {
                file: StoredFile {
                    name: v["name"].as_str().unwrap_or_default().into(),
                    mime: v["mime"].as_str().unwrap_or_default().into(),
                    bytes: Bytes::new(),
                    sha256: sha,
                },
                size: v["size"].as_u64().unwrap_or(0),
                received: Vec::new(),
            };
            store.uploads.insert(store.next_id, upload);
            reply(
                StatusCode::CREATED,
                json!({ "upload_id": store.next_id.to_string(), "received": 0, "chunk_max": store.chunk_max }),
            )
        }
        (Method::GET, ["v1", "uploads", _]) => match store.uploads.get(&id(2)) {
            Some(u) => reply(
                StatusCode::OK,
                json!({ "upload_id": id(2).to_string(), "received": u.received.len(), "size": u.size }),
            ),
            None => error(StatusCode::NOT_FOUND, "not_found"),
        },
        (Method::PATCH, ["v1", "uploads", _]) => {
            let upload_id = id(2);
            let chunk_max = store.chunk_max;
            store.chunks += 1;
            store.bytes_received += body.len() as u64;
            let hang_up = store.hang_up_after_chunk > 0;
            store.hang_up_after_chunk = store.hang_up_after_chunk.saturating_sub(1);
            let Some(upload) = store.uploads.get_mut(&upload_id) else {
                return error(StatusCode::NOT_FOUND, "not_found");
            };
            let received = upload.received.len() as u64;
            if offset != Some(received) {
                return reply(
                    StatusCode::CONFLICT,
                    json!({ "error": "offset_mismatch", "message": "test", "received": received }),
                );
            }
            if body.len() as u64 > chunk_max || received + body.len() as u64 > upload.size {
                return error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
            }
            upload.received.extend_from_slice(&body);
            if hang_up {
                return Err(std::io::Error::other("hanging up on purpose"));
            }
            let received = upload.received.len() as u64;
            if received < upload.size {
                return reply(StatusCode::OK, json!({ "received": received }));
            }
            let Some(mut upload) = store.uploads.remove(&upload_id) else {
                return error(StatusCode::NOT_FOUND, "not_found");
            };
            let bytes = std::mem::take(&mut upload.received);
            if hex::encode(Sha256::digest(&bytes)) != upload.file.sha256 {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch");
            }
            let file_id = store.add(&upload.file.name, &upload.file.mime, &bytes);
            let json = file_json(file_id, &store.files[&file_id]);
            reply(StatusCode::OK, json!({ "received": received, "file": json }))
        }
        (Method::GET, ["v1", "files", _]) => {
            store.ranges.push(range.clone().unwrap_or_default());
            let Some(file) = store.files.get(&id(2)).cloned() else {
                return error(StatusCode::NOT_FOUND, "not_found");
            };
            let mut bytes = file.bytes.to_vec();
            if store.corrupt
                && let Some(b) = bytes.first_mut()
            {
                *b ^= 0xff;
            }
            let total = bytes.len();
            let start = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|r| r.parse::<usize>().ok());
            let mut response = Response::builder()
                .header("etag", format!("\"{}\"", file.sha256))
                .header("content-type", file.mime.clone())
                .header(
                    "content-disposition",
                    format!("attachment; filename=\"{}\"", file.name),
                );
            let body_bytes = match start {
                Some(start) if start >= total => {
                    return Ok(Response::builder()
                        .status(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header("content-range", format!("bytes */{total}"))
                        .body(full(Bytes::new()))
                        .unwrap());
                }
                Some(start) => {
                    response = response
                        .status(StatusCode::PARTIAL_CONTENT)
                        .header("content-range", format!("bytes {start}-{}/{total}", total - 1));
                    bytes[start..].to_vec()
                }
                None => bytes,
            };
            let response = response.header("content-length", body_bytes.len());
            let body = match store.cut_next_download.take() {
                Some(cut) => {
                    use futures_util::StreamExt as _;
                    let first = Bytes::copy_from_slice(&body_bytes[..cut.min(body_bytes.len())]);
                    // The pause lets the first bytes reach the client before the cut.
                    let data = futures_util::stream::once(async move { Ok(Frame::data(first)) });
                    let cut = futures_util::stream::once(async {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        Err(std::io::Error::other("cut on purpose"))
                    });
                    BodyExt::boxed(StreamBody::new(data.chain(cut)))
                }
                None => full(body_bytes),
            };
            Ok(response.body(body).unwrap())
        }
        (Method::GET, ["v1", "files", _, "thumbnail"]) => match store.files.get(&id(2)) {
            Some(f) if f.mime.starts_with("image/") => Ok(Response::new(full(Bytes::from_static(b"THUMB")))),
            Some(_) => error(StatusCode::NOT_FOUND, "no_thumbnail"),
            None => error(StatusCode::NOT_FOUND, "not_found"),
        },
        (Method::PUT, ["v1", "me", "avatar"]) => {
            let v: Value = serde_json::from_slice(&body).map_err(std::io::Error::other)?;
            let file_id = v["file_id"].as_str().and_then(|s| s.parse::<i64>().ok());
            match file_id {
                Some(file_id) if store.files.contains_key(&file_id) => {
                    store.avatar = Some(file_id);
                    Ok(Response::builder()
                        .status(StatusCode::NO_CONTENT)
                        .body(full(Bytes::new()))
                        .unwrap())
                }
                _ => error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_image"),
            }
        }
        (Method::GET, ["v1", "users", _, "avatar"]) => match store.avatar.and_then(|id| store.files.get(&id))
        {
            Some(f) => Ok(Response::new(full(f.bytes.clone()))),
            None => error(StatusCode::NOT_FOUND, "not_found"),
        },
        _ => error(StatusCode::NOT_FOUND, "no_route"),
    }
}
