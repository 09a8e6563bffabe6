//! A bare protocol connection (TCP from a chosen source address, pinned TLS,
//! `FrameCodec`, Hello/Resume), much lighter than an SDK `Client`: used where
//! the benchmark holds thousands of idle connections.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use parley_proto::{FrameCodec, pb};
use pb::client_frame::Body as Req;
use pb::server_frame::Body as Resp;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

/// The byte stream of one raw connection: TLS, or plain TCP against a server
/// started with `--insecure-plaintext` (to measure what TLS costs).
pub type Stream = Either<TlsStream<TcpStream>, TcpStream>;

/// The framed stream of one raw connection.
pub type Transport = Framed<Stream, FrameCodec<pb::ServerFrame, pb::ClientFrame>>;

/// How long any one step of opening a connection may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens TCP (bound to `local` if given) and, with a connector, TLS to `server`.
pub async fn connect(
    connector: Option<&TlsConnector>,
    server: SocketAddr,
    local: Option<IpAddr>,
) -> anyhow::Result<Transport> {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = local {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("binding {ip}"))?;
    }
    let tcp = tokio::time::timeout(STEP_TIMEOUT, socket.connect(server))
        .await
        .context("TCP connect timed out")?
        .context("TCP connect")?;
    tcp.set_nodelay(true)?;
    let stream = match connector {
        None => Either::Right(tcp),
        Some(connector) => Either::Left(
            tokio::time::timeout(STEP_TIMEOUT, connector.connect(crate::tls::server_name(), tcp))
                .await
                .context("TLS handshake timed out")?
                .context("TLS handshake")?,
        ),
    };
    Ok(Framed::new(
        stream,
        FrameCodec::new(parley_proto::DEFAULT_MAX_FRAME_BYTES),
    ))
}

/// Sends one request and reads until its response (events in between are dropped).
pub async fn request(t: &mut Transport, request_id: u64, body: Req) -> anyhow::Result<Resp> {
    t.send(pb::ClientFrame {
        request_id,
        body: Some(body),
    })
    .await
    .context("sending a request")?;
    let wait = async {
        loop {
            let frame = t.next().await.context("server closed the connection")??;
            match (frame.request_id, frame.body) {
                (id, Some(Resp::Error(e))) if id == request_id || id == 0 => {
                    anyhow::bail!("server error: {e}")
                }
                (id, Some(body)) if id == request_id => return Ok(body),
                _ => {}
            }
        }
    };
    tokio::time::timeout(STEP_TIMEOUT, wait)
        .await
        .context("no response in time")?
}

/// Says Hello on a new connection; returns the transport and the server's `Welcome`.
pub async fn open(
    connector: Option<&TlsConnector>,
    server: SocketAddr,
    local: Option<IpAddr>,
) -> anyhow::Result<(Transport, pb::Welcome)> {
    let mut t = connect(connector, server, local).await?;
    let hello = Req::Hello(pb::Hello {
        protocol_version: parley_proto::PROTOCOL_VERSION,
        client_name: "parley-bench".into(),
    });
    match request(&mut t, 1, hello).await? {
        Resp::Welcome(w) => Ok((t, w)),
        _ => anyhow::bail!("expected Welcome"),
    }
}

/// Connects, says Hello, and returns the `Welcome` (the connection is closed).
pub async fn hello(
    connector: Option<&TlsConnector>,
    server: SocketAddr,
    local: Option<IpAddr>,
) -> anyhow::Result<pb::Welcome> {
    Ok(open(connector, server, local).await?.1)
}

/// Opens a connection and resumes the session of `token` on it.
pub async fn resume(
    connector: Option<&TlsConnector>,
    server: SocketAddr,
    local: Option<IpAddr>,
    token: &str,
) -> anyhow::Result<(Transport, pb::Welcome)> {
    let (mut t, welcome) = open(connector, server, local).await?;
    let resume = Req::Resume(pb::Resume { token: token.into() });
    match request(&mut t, 2, resume).await? {
        Resp::LoggedIn(_) => Ok((t, welcome)),
        _ => anyhow::bail!("expected LoggedIn"),
    }
}

/// Registers `name` and logs in over a raw connection; returns the session token.
pub async fn register_and_login(
    connector: Option<&TlsConnector>,
    server: SocketAddr,
    name: &str,
    password: &str,
) -> anyhow::Result<String> {
    let (mut t, _) = open(connector, server, None).await?;
    let register = Req::Register(pb::Register {
        username: name.into(),
        display_name: name.into(),
        password: password.into(),
    });
    request(&mut t, 2, register).await?;
    let login = Req::Login(pb::Login {
        username: name.into(),
        password: password.into(),
        device_name: "parley-bench".into(),
    });
    match request(&mut t, 3, login).await? {
        Resp::LoggedIn(l) if !l.token.is_empty() => Ok(l.token),
        _ => anyhow::bail!("expected LoggedIn with a token"),
    }
}

/// Keeps an idle connection alive: pings every `heartbeat` (the first after
/// `first`), drops whatever the server pushes, and returns why it ended
/// (`Ok` when `stop` was cancelled).
pub async fn hold(
    mut t: Transport,
    first: Duration,
    heartbeat: Duration,
    stop: CancellationToken,
) -> Result<(), String> {
    let mut next_ping = tokio::time::Instant::now() + first;
    let mut request_id = 10u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(next_ping) => {
                request_id += 1;
                let ping = pb::ClientFrame { request_id, body: Some(Req::Ping(pb::Ping { nonce: request_id })) };
                if let Err(e) = t.send(ping).await {
                    return Err(format!("ping failed: {e}"));
                }
                next_ping += heartbeat;
            }
            frame = t.next() => match frame {
                None => return Err("server closed the connection".into()),
                Some(Err(e)) => return Err(format!("read failed: {e}")),
                Some(Ok(pb::ServerFrame { request_id: 0, body: Some(Resp::Error(e)) })) => {
                    return Err(format!("server error: {e}"));
                }
                Some(Ok(_)) => {}
            },
        }
    }
}
