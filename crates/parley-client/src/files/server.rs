//! A small HTTPS client for the file server: hyper's HTTP/1.1 client over
//! the same TLS trust as the client connection.
//!
//! The file server runs on the same host as the client port (unless
//! [`crate::ClientConfig::http_address`] says otherwise) and shows the same
//! certificate, so a pinned or first-used fingerprint applies unchanged.
//! Every request carries the session token as a bearer token. One
//! [`Connection`] is kept per transfer (keep-alive across the chunks of an
//! upload) and simply reopened after a network error.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::client::Client;
use crate::config::split_host_port;
use crate::error::ClientError;
use crate::tls::Handshake;

/// The body type of every request (uploads send one chunk at a time).
pub(crate) type Body = Full<Bytes>;

/// The largest JSON answer read from the file server.
const MAX_JSON_BYTES: usize = 1 << 20;

/// Where the file server is and how to talk to it, for one transfer.
pub(crate) struct FileServer {
    client: Client,
    host: String,
    port: u16,
    /// The `Host` header: `host:port`, IPv6 in brackets.
    authority: String,
    token: String,
    /// Bounds connecting and waiting for response headers.
    pub(crate) timeout: Duration,
}

/// One open HTTP/1.1 connection.
pub(crate) struct Connection {
    sender: http1::SendRequest<Body>,
    task: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FileServer {
    /// The file server of `client`'s server, for its logged-in session.
    pub(crate) fn of(client: &Client) -> Result<FileServer, ClientError> {
        let shared = &client.shared;
        let (token, http_port) = {
            let session = shared.session();
            let token = session.token.clone().ok_or(ClientError::NotLoggedIn)?;
            (token, session.welcome.http_port)
        };
        let (host, port) = match &shared.config.http_address {
            Some(address) => {
                let (host, port) = split_host_port(address);
                (host.to_string(), port)
            }
            None => {
                let (host, _) = split_host_port(&shared.config.address);
                let port = u16::try_from(http_port).ok().filter(|p| *p != 0).ok_or_else(|| {
                    ClientError::Protocol(
                        "the server announced no file port; set ClientConfig::http_address".into(),
                    )
                })?;
                (host.to_string(), port)
            }
        };
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(FileServer {
            client: client.clone(),
            host,
            port,
            authority,
            token,
            timeout: shared.config.request_timeout,
        })
    }

    /// Opens a connection: TCP, TLS verified like the client connection, HTTP/1.1.
    pub(crate) async fn connect(&self) -> Result<Connection, ClientError> {
        tokio::time::timeout(self.timeout, self.connect_unbounded())
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    async fn connect_unbounded(&self) -> Result<Connection, ClientError> {
        let shared = &self.client.shared;
        let seen = shared.session().identity.as_ref().map(|i| i.fingerprint.clone());
        let handshake: Handshake = shared.trust.file_handshake(seen.as_deref())?;
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        tcp.set_nodelay(true)?;
        let name = shared.config.server_name.clone();
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| ClientError::Tls(format!("invalid server name {name:?}: {e}")))?;
        let tls = TlsConnector::from(handshake.config.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| shared.trust.failed(&handshake, e))?;
        let (sender, connection) = http1::handshake(TokioIo::new(tls)).await.map_err(network)?;
        let task = tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "file server connection ended");
            }
        });
        Ok(Connection { sender, task })
    }

    /// A request to `path` with the bearer token and `Host` set.
    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Request<Body>, ClientError> {
        let bearer = HeaderValue::from_str(&format!("Bearer {}", self.token))
            .map_err(|_| ClientError::Protocol("the session token is not a valid header value".into()))?;
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::AUTHORIZATION, bearer)
            .header(header::USER_AGENT, &self.client.shared.config.client_name)
            .body(Full::new(body))
            .map_err(|e| ClientError::Protocol(format!("cannot build a request for {path}: {e}")))
    }

    /// A request whose body is `value` as JSON.
    pub(crate) fn json_request(
        &self,
        method: Method,
        path: &str,
        value: &serde_json::Value,
    ) -> Result<Request<Body>, ClientError> {
        let mut request = self.request(method, path, Bytes::from(value.to_string()))?;
        request
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(request)
    }
}

impl Connection {
    /// Sends `request` and waits (at most `timeout`) for the response head.
    pub(crate) async fn send(
        &mut self,
        request: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, ClientError> {
        let round_trip = async {
            self.sender.ready().await.map_err(network)?;
            self.sender.send_request(request).await.map_err(network)
        };
        tokio::time::timeout(timeout, round_trip)
            .await
            .map_err(|_| ClientError::Timeout)?
    }
}

/// A hyper failure is a network failure: worth retrying on a new connection.
pub(crate) fn network(err: hyper::Error) -> ClientError {
    ClientError::Io(std::io::Error::other(err))
}

/// The whole body, refusing more than `limit` bytes; each read is bounded
/// by `timeout`.
pub(crate) async fn read_body(
    response: Response<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ClientError> {
    let mut body = response.into_body();
    let mut out = Vec::new();
    loop {
        let frame = tokio::time::timeout(timeout, body.frame())
            .await
            .map_err(|_| ClientError::Timeout)?;
        let Some(frame) = frame else { break };
        if let Ok(data) = frame.map_err(network)?.into_data() {
            if out.len() + data.len() > limit {
                return Err(ClientError::Protocol(format!(
                    "the file server sent more than {limit} bytes"
                )));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(out))
}

/// A successful JSON answer, parsed.
pub(crate) async fn read_json<T: DeserializeOwned>(
    response: Response<Incoming>,
    timeout: Duration,
) -> Result<T, ClientError> {
    let bytes = read_body(response, MAX_JSON_BYTES, timeout).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Protocol(format!("unreadable answer from the file server: {e}")))
}

/// The body of an error answer: `{"error": code, "message": …}` plus, for
/// an offset mismatch, where the upload stands.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub(crate) error: String,
    #[serde(default)]
    pub(crate) message: String,
    #[serde(default, deserialize_with = "crate::files::json::opt_u64")]
    pub(crate) received: Option<u64>,
}

/// Reads an error answer: the parsed body (empty if it was not JSON) and
/// the matching [`ClientError::Http`].
pub(crate) async fn read_error(response: Response<Incoming>, timeout: Duration) -> (ErrorBody, ClientError) {
    let status = response.status();
    let body = read_body(response, MAX_JSON_BYTES, timeout)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice::<ErrorBody>(&bytes).ok())
        .unwrap_or_default();
    let err = http_error(status, &body);
    (body, err)
}

/// The error for a refused request.
pub(crate) fn http_error(status: StatusCode, body: &ErrorBody) -> ClientError {
    let code = if body.error.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
            .replace(' ', "_")
    } else {
        body.error.clone()
    };
    ClientError::Http {
        status: status.as_u16(),
        code,
        message: if body.message.is_empty() {
            status.to_string()
        } else {
            body.message.clone()
        },
    }
}
