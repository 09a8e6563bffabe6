//! A tiny HTTPS client for the server's HTTP API: hyper's HTTP/1.1 client over a TLS stream
//! that trusts only the test server's pinned certificate. One connection per request keeps
//! it simple and lets a test cut a request off mid-body.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;

use super::{TestServer, raw_tls};

/// A complete response.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// Sends one request to the server's HTTP port and reads the whole response.
pub async fn request(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> HttpResponse {
    let tls = raw_tls(server.handle.http_addr, &server.fingerprint())
        .await
        .expect("TLS connect to HTTP port");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).expect("request");
    let resp = sender.send_request(req).await.expect("send request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("read body")
        .to_bytes()
        .to_vec();
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// A client bound to one user's session token.
#[derive(Clone)]
pub struct Api<'a> {
    /// The server.
    pub server: &'a TestServer,
    /// Bearer token (session token hex).
    pub token: String,
}

impl<'a> Api<'a> {
    /// An API client with `token`.
    pub fn new(server: &'a TestServer, token: impl Into<String>) -> Self {
        Api {
            server,
            token: token.into(),
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        request(self.server, "GET", path, Some(&self.token), headers, Bytes::new()).await
    }

    /// A request with a JSON body.
    pub async fn json(&self, method: &str, path: &str, body: serde_json::Value) -> HttpResponse {
        request(
            self.server,
            method,
            path,
            Some(&self.token),
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    /// `POST /v1/uploads`.
    pub async fn start_upload(&self, data: &[u8], name: &str, mime: &str) -> HttpResponse {
        self.json(
            "POST",
            "/v1/uploads",
            serde_json::json!({
                "size": data.len(),
                "sha256": sha256_hex(data),
                "name": name,
                "mime": mime,
            }),
        )
        .await
    }

    /// `PATCH /v1/uploads/{id}` with `chunk` at `offset`.
    pub async fn patch(&self, upload_id: &str, offset: usize, chunk: &[u8]) -> HttpResponse {
        let offset = offset.to_string();
        request(
            self.server,
            "PATCH",
            &format!("/v1/uploads/{upload_id}"),
            Some(&self.token),
            &[
                ("upload-offset", &offset),
                ("content-type", "application/offset+octet-stream"),
            ],
            Bytes::copy_from_slice(chunk),
        )
        .await
    }

    /// Uploads `data` in chunks of `chunk` bytes; returns the last response (the file).
    pub async fn upload(&self, data: &[u8], name: &str, mime: &str, chunk: usize) -> HttpResponse {
        let start = self.start_upload(data, name, mime).await;
        if start.status == 200 {
            return start;
        }
        assert_eq!(
            start.status,
            201,
            "start upload: {}",
            String::from_utf8_lossy(&start.body)
        );
        let id = start.json()["upload_id"].as_str().expect("upload_id").to_string();
        let mut last = start;
        for (i, part) in data.chunks(chunk).enumerate() {
            last = self.patch(&id, i * chunk, part).await;
            if last.status != 200 {
                return last;
            }
        }
        last
    }
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}
