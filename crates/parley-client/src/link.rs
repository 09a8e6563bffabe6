//! Opening one connection: TCP, TLS, `Hello`/`Welcome`, and optionally
//! `Resume`.
//!
//! The handshake is a short conversation in lock step, so it runs on the
//! framed stream directly, before the connection task splits it into a reader
//! and a writer. The whole sequence is bounded by the request timeout: a
//! server that accepts TCP and then says nothing cannot hang a connect.

use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use parley_proto::{FrameCodec, FrameError, pb};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;

use crate::config::{ClientConfig, split_host_port};
use crate::error::ClientError;
use crate::tls::{ServerIdentity, TrustStore};

/// The framed TLS stream of one connection.
pub(crate) type Transport = Framed<TlsStream<TcpStream>, FrameCodec<pb::ServerFrame, pb::ClientFrame>>;

/// A connection that completed its handshake.
pub(crate) struct Link {
    pub(crate) transport: Transport,
    pub(crate) welcome: pb::Welcome,
    pub(crate) identity: ServerIdentity,
    /// The answer to `Resume`, when a token was given.
    pub(crate) resumed: Option<pb::LoggedIn>,
    /// Events the server pushed while the handshake was still going on.
    pub(crate) early_events: Vec<pb::event::Kind>,
}

/// Hands out request ids: unique per client, never zero.
#[derive(Debug)]
pub(crate) struct RequestIds(AtomicU64);

impl RequestIds {
    pub(crate) fn new() -> Self {
        RequestIds(AtomicU64::new(1))
    }

    pub(crate) fn next(&self) -> u64 {
        // 2^64 requests do not happen; `max(1)` keeps the promise regardless.
        self.0.fetch_add(1, Ordering::Relaxed).max(1)
    }
}

/// Connects, says hello and, with `resume_token`, resumes that session.
pub(crate) async fn open(
    config: &ClientConfig,
    trust: &TrustStore,
    ids: &RequestIds,
    resume_token: Option<&str>,
) -> Result<Link, ClientError> {
    tokio::time::timeout(
        config.request_timeout,
        open_unbounded(config, trust, ids, resume_token),
    )
    .await
    .map_err(|_| ClientError::Timeout)?
}

async fn open_unbounded(
    config: &ClientConfig,
    trust: &TrustStore,
    ids: &RequestIds,
    resume_token: Option<&str>,
) -> Result<Link, ClientError> {
    let (host, port) = split_host_port(&config.address);
    let tcp = TcpStream::connect((host, port)).await?;
    // Requests are small and latency matters more than packet count.
    tcp.set_nodelay(true)?;

    let server_name = ServerName::try_from(config.server_name.clone())
        .map_err(|e| ClientError::Tls(format!("invalid server name {:?}: {e}", config.server_name)))?;
    let handshake = trust.handshake()?;
    let stream = TlsConnector::from(handshake.config.clone())
        .connect(server_name, tcp)
        .await
        .map_err(|e| trust.failed(&handshake, e))?;
    let leaf = stream.get_ref().1.peer_certificates().and_then(|c| c.first());
    let identity = trust.completed(&handshake, leaf)?;

    let mut transport = Framed::new(stream, FrameCodec::new(config.max_frame_bytes));
    let mut early_events = Vec::new();
    let hello = pb::client_frame::Body::Hello(pb::Hello {
        protocol_version: parley_proto::PROTOCOL_VERSION,
        client_name: config.client_name.clone(),
    });
    let welcome = match exchange(&mut transport, ids.next(), hello, &mut early_events).await? {
        pb::server_frame::Body::Welcome(welcome) => welcome,
        other => return Err(unexpected("Welcome", &other)),
    };

    let resumed = match resume_token {
        None => None,
        Some(token) => {
            let resume = pb::client_frame::Body::Resume(pb::Resume {
                token: token.to_string(),
            });
            match exchange(&mut transport, ids.next(), resume, &mut early_events).await? {
                pb::server_frame::Body::LoggedIn(logged_in) => Some(logged_in),
                other => return Err(unexpected("LoggedIn", &other)),
            }
        }
    };

    Ok(Link {
        transport,
        welcome,
        identity,
        resumed,
        early_events,
    })
}

/// Sends one request and reads until its response, keeping pushed events.
async fn exchange(
    transport: &mut Transport,
    request_id: u64,
    body: pb::client_frame::Body,
    events: &mut Vec<pb::event::Kind>,
) -> Result<pb::server_frame::Body, ClientError> {
    transport
        .send(pb::ClientFrame {
            request_id,
            body: Some(body),
        })
        .await
        .map_err(frame_error)?;
    loop {
        let frame = transport
            .next()
            .await
            .ok_or(ClientError::Disconnected)?
            .map_err(frame_error)?;
        match (frame.request_id, frame.body) {
            (id, Some(pb::server_frame::Body::Error(e))) if id == request_id || id == 0 => {
                return Err(ClientError::Server(e));
            }
            (0, Some(pb::server_frame::Body::Event(pb::Event { kind: Some(kind) }))) => {
                events.push(kind);
            }
            (id, Some(body)) if id == request_id => return Ok(body),
            (id, None) if id == request_id => {
                return Err(ClientError::Protocol("response without a body".into()));
            }
            // Anything else (an event kind this build does not know, a stray
            // reply) is not for us.
            _ => {}
        }
    }
}

/// Maps a framing failure to the SDK's error.
pub(crate) fn frame_error(err: FrameError) -> ClientError {
    match err {
        FrameError::Io(e) => ClientError::Io(e),
        other => ClientError::Protocol(other.to_string()),
    }
}

/// The error for a response of the wrong kind.
pub(crate) fn unexpected(wanted: &str, got: &pb::server_frame::Body) -> ClientError {
    ClientError::Protocol(format!("expected {wanted}, got {}", response_name(got)))
}

/// Short name of a server response body (never its contents).
pub(crate) fn response_name(body: &pb::server_frame::Body) -> &'static str {
    use pb::server_frame::Body as B;
    match body {
        B::Welcome(_) => "Welcome",
        B::Pong(_) => "Pong",
        B::Error(_) => "Error",
        B::Event(_) => "Event",
        B::Ok(_) => "Ok",
        B::Registered(_) => "Registered",
        B::LoggedIn(_) => "LoggedIn",
        B::SessionList(_) => "SessionList",
        B::Profile(_) => "Profile",
        B::UserPage(_) => "UserPage",
        B::FriendRequestList(_) => "FriendRequestList",
        B::FriendList(_) => "FriendList",
        B::Conversation(_) => "Conversation",
        B::ConversationList(_) => "ConversationList",
        B::MemberList(_) => "MemberList",
        B::MessageAck(_) => "MessageAck",
        B::MessageBatch(_) => "MessageBatch",
        B::SearchResults(_) => "SearchResults",
        B::CallJoined(_) => "CallJoined",
        B::CallList(_) => "CallList",
    }
}
