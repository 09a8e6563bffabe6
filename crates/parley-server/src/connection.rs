//! One client connection, whatever carries it (TLS, plaintext TCP, WebSocket).
//!
//! The loop owns the connection's state and multiplexes four inputs: frames
//! from the client, frames other connections queued for it (events), the idle
//! deadline and server shutdown. Requests are handled in order, one at a time,
//! so responses leave in the order requests arrived. Every way out is a typed
//! error frame (when the peer can still read one) and a log line with a reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use parley_proto::pb::{self, ErrorCode, client_frame::Body as Req, server_frame::Body as Resp};
use parley_proto::{FrameError, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use crate::hub::Outbound;
use crate::service::{self, Conn, Ctx};

/// How long a write may block before the reader counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most queued frames written with one flush.
const MAX_COALESCED: usize = 64;
/// How long a new connection may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection ended, for the log and metrics.
#[derive(Debug, Clone, Copy)]
enum End {
    PeerClosed,
    Io,
    TooLarge,
    Malformed,
    Protocol,
    Idle,
    SlowReader,
    Shutdown,
    Closed,
}

struct Writer<W> {
    sink: W,
    max_frame_bytes: usize,
}

impl<W: Sink<Bytes, Error = std::io::Error> + Unpin> Writer<W> {
    async fn send_bytes(&mut self, bytes: Bytes) -> Result<(), End> {
        match timeout(WRITE_TIMEOUT, self.sink.send(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Io),
            Err(_) => Err(End::SlowReader),
        }
    }

    /// Writes `first` and whatever else is already queued with one flush, so a
    /// burst of events costs one write (and one TLS record) instead of one each.
    /// Returns true when a queued `Close` asks to end the connection.
    async fn send_queued(&mut self, first: Bytes, rx: &mut mpsc::Receiver<Outbound>) -> Result<bool, End> {
        let work = async {
            self.sink.feed(first).await?;
            let mut close = false;
            for _ in 0..MAX_COALESCED {
                match rx.try_recv() {
                    Ok(Outbound::Frame(bytes)) => self.sink.feed(bytes).await?,
                    Ok(Outbound::Close) => {
                        close = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.sink.flush().await?;
            Ok::<bool, std::io::Error>(close)
        };
        match timeout(WRITE_TIMEOUT, work).await {
            Ok(Ok(close)) => Ok(close),
            Ok(Err(_)) => Err(End::Io),
            Err(_) => Err(End::SlowReader),
        }
    }

    async fn send(&mut self, frame: &pb::ServerFrame) -> Result<(), End> {
        let mut buf = bytes::BytesMut::new();
        if let Err(e) = parley_proto::frame::encode_frame(frame, self.max_frame_bytes, &mut buf) {
            tracing::error!(error = %e, "response not encodable");
            let err = pb::ServerFrame::error(
                frame.request_id,
                pb::Error::new(ErrorCode::Internal, "response too large"),
            );
            buf.clear();
            parley_proto::frame::encode_frame(&err, self.max_frame_bytes, &mut buf).map_err(|_| End::Io)?;
        }
        self.send_bytes(buf.freeze()).await
    }

    /// A connection-level error, sent best-effort before closing.
    async fn fatal(&mut self, code: ErrorCode, msg: &str) {
        let _ = self
            .send(&pb::ServerFrame::error(0, pb::Error::new(code, msg)))
            .await;
        let _ = self.sink.close().await;
    }
}

/// Serves one connection until it ends.
pub async fn serve<R, W>(ctx: Arc<Ctx>, reader: R, sink: W, peer: SocketAddr, shutdown: CancellationToken)
where
    R: Stream<Item = Result<pb::ClientFrame, FrameError>> + Unpin,
    W: Sink<Bytes, Error = std::io::Error> + Unpin,
{
    metrics::gauge!("parley_connections").increment(1.0);
    metrics::counter!("parley_connections_total").increment(1);
    let end = run(&ctx, reader, sink, peer, shutdown).await;
    metrics::gauge!("parley_connections").decrement(1.0);
    let reason = format!("{end:?}");
    metrics::counter!("parley_disconnects_total", "reason" => reason.clone()).increment(1);
    tracing::debug!(%peer, reason, "connection ended");
}

async fn run<R, W>(ctx: &Ctx, mut reader: R, sink: W, peer: SocketAddr, shutdown: CancellationToken) -> End
where
    R: Stream<Item = Result<pb::ClientFrame, FrameError>> + Unpin,
    W: Sink<Bytes, Error = std::io::Error> + Unpin,
{
    let mut w = Writer {
        sink,
        max_frame_bytes: ctx.cfg.max_frame_bytes,
    };
    if let Err(end) = handshake(ctx, &mut reader, &mut w).await {
        return end;
    }
    let (tx, mut rx) = mpsc::channel(ctx.cfg.outbound_queue);
    let mut conn = Conn {
        conn_id: ctx.hub.next_conn_id(),
        peer: peer.ip(),
        auth: None,
        tx,
        kill: CancellationToken::new(),
    };
    let end = session_loop(ctx, &mut conn, &mut reader, &mut w, &mut rx, &shutdown).await;
    Box::pin(service::disconnected(ctx, &mut conn)).await;
    end
}

async fn handshake<R, W>(ctx: &Ctx, reader: &mut R, w: &mut Writer<W>) -> Result<(), End>
where
    R: Stream<Item = Result<pb::ClientFrame, FrameError>> + Unpin,
    W: Sink<Bytes, Error = std::io::Error> + Unpin,
{
    let first = match timeout(HELLO_TIMEOUT, reader.next()).await {
        Err(_) => {
            w.fatal(ErrorCode::IdleTimeout, "no Hello received").await;
            return Err(End::Idle);
        }
        Ok(None) => return Err(End::PeerClosed),
        Ok(Some(Err(e))) => return Err(frame_error(w, e).await),
        Ok(Some(Ok(f))) => f,
    };
    let Some(Req::Hello(hello)) = first.body else {
        w.fatal(ErrorCode::BadRequest, "the first frame must be Hello")
            .await;
        return Err(End::Protocol);
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        let msg = format!(
            "protocol version {} is not supported; this server speaks {PROTOCOL_VERSION}",
            hello.protocol_version
        );
        let err = pb::ServerFrame::error(
            first.request_id,
            pb::Error::new(ErrorCode::UnsupportedVersion, msg),
        );
        let _ = w.send(&err).await;
        let _ = w.sink.close().await;
        return Err(End::Protocol);
    }
    let millis = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    let welcome = pb::Welcome {
        protocol_version: PROTOCOL_VERSION,
        server_name: ctx.cfg.server_name.clone(),
        heartbeat_interval_ms: millis(ctx.cfg.heartbeat),
        idle_timeout_ms: millis(ctx.cfg.idle_timeout),
        max_frame_bytes: u32::try_from(ctx.cfg.max_frame_bytes).unwrap_or(u32::MAX),
        http_port: u32::from(ctx.http_port()),
    };
    w.send(&pb::ServerFrame::reply(first.request_id, Resp::Welcome(welcome)))
        .await
}

async fn frame_error<W: Sink<Bytes, Error = std::io::Error> + Unpin>(
    w: &mut Writer<W>,
    e: FrameError,
) -> End {
    match e {
        FrameError::TooLarge { len, max } => {
            tracing::info!(len, max, "closing connection: frame too large");
            w.fatal(
                ErrorCode::FrameTooLarge,
                &format!("frame of {len} bytes exceeds the {max}-byte limit"),
            )
            .await;
            End::TooLarge
        }
        err @ (FrameError::Malformed(_) | FrameError::NotAFrame(_)) => {
            tracing::info!(error = %err, "closing connection: malformed frame");
            w.fatal(ErrorCode::BadRequest, "malformed frame").await;
            End::Malformed
        }
        FrameError::Io(_) => End::Io,
    }
}

async fn session_loop<R, W>(
    ctx: &Ctx,
    conn: &mut Conn,
    reader: &mut R,
    w: &mut Writer<W>,
    rx: &mut mpsc::Receiver<Outbound>,
    shutdown: &CancellationToken,
) -> End
where
    R: Stream<Item = Result<pb::ClientFrame, FrameError>> + Unpin,
    W: Sink<Bytes, Error = std::io::Error> + Unpin,
{
    let mut deadline = Instant::now() + ctx.cfg.idle_timeout;
    // Requests are read only while at least half of the outbound queue is free:
    // every pipelined send holds a slot for its ack until it is written, so a
    // client cannot overflow its own queue, and the other half stays for events.
    let read_while_free = ctx.cfg.outbound_queue / 2;
    loop {
        tokio::select! {
            biased;
            _ = conn.kill.cancelled() => {
                let _ = w.sink.close().await;
                return End::SlowReader;
            }
            _ = shutdown.cancelled() => {
                w.fatal(ErrorCode::ShuttingDown, "server is shutting down").await;
                return End::Shutdown;
            }
            out = rx.recv() => match out {
                Some(Outbound::Frame(bytes)) => match w.send_queued(bytes, rx).await {
                    Ok(false) => {}
                    Ok(true) => {
                        let _ = w.sink.close().await;
                        return End::Closed;
                    }
                    Err(end) => return end,
                },
                Some(Outbound::Close) | None => {
                    let _ = w.sink.close().await;
                    return End::Closed;
                }
            },
            frame = reader.next(), if conn.tx.capacity() > read_while_free => match frame {
                None => return End::PeerClosed,
                Some(Err(e)) => return frame_error(w, e).await,
                Some(Ok(frame)) => {
                    deadline = Instant::now() + ctx.cfg.idle_timeout;
                    if let Err(end) = handle_frame(ctx, conn, w, frame).await {
                        return end;
                    }
                }
            },
            _ = sleep_until(deadline) => {
                w.fatal(ErrorCode::IdleTimeout, "no frames within the idle timeout").await;
                return End::Idle;
            }
        }
    }
}

async fn handle_frame<W>(
    ctx: &Ctx,
    conn: &mut Conn,
    w: &mut Writer<W>,
    frame: pb::ClientFrame,
) -> Result<(), End>
where
    W: Sink<Bytes, Error = std::io::Error> + Unpin,
{
    let id = frame.request_id;
    if id == 0 {
        w.fatal(ErrorCode::BadRequest, "request_id must be non-zero")
            .await;
        return Err(End::Protocol);
    }
    let reply = match frame.body {
        // A request type from a newer protocol revision: refuse it, keep the connection.
        None => pb::ServerFrame::error(id, pb::Error::new(ErrorCode::BadRequest, "unknown request type")),
        Some(Req::Ping(p)) => pb::ServerFrame::reply(id, Resp::Pong(pb::Pong { nonce: p.nonce })),
        // Acked by the group-commit writer once durable; keep reading meanwhile.
        // Boxed: the handlers' state machines are large, and inlined they would make
        // every idle connection's future as big as the largest request in flight.
        Some(Req::SendMessage(m)) => match Box::pin(service::send_message(ctx, conn, id, m)).await {
            Ok(()) => return Ok(()),
            Err(e) => pb::ServerFrame::error(id, e),
        },
        Some(body) => match Box::pin(service::dispatch(ctx, conn, body)).await {
            Ok(resp) => pb::ServerFrame::reply(id, resp),
            Err(e) => pb::ServerFrame::error(id, e),
        },
    };
    w.send(&reply).await
}
