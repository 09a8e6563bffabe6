//! The HTTP side: `/healthz`, Prometheus `/metrics`, and `/ws`, the client
//! protocol over WebSocket (one binary message per frame, no length prefix).
//!
//! Served over the same TLS identity as the client port. WebSocket connections
//! take a slot from the same connection limit as TCP ones.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use parley_proto::{FrameError, pb};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection;
use crate::service::Ctx;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    pub ctx: Arc<Ctx>,
    pub metrics: PrometheusHandle,
    pub slots: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

#[derive(Clone, Copy)]
struct Peer(SocketAddr);

fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/ws", get(websocket))
        .merge(crate::files::router(&state))
        .with_state(state)
}

async fn healthz(State(s): State<HttpState>) -> Response {
    match s.ctx.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

async fn metrics_text(State(s): State<HttpState>) -> String {
    s.metrics.run_upkeep();
    s.metrics.render()
}

async fn websocket(
    State(s): State<HttpState>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    ws: WebSocketUpgrade,
) -> Response {
    let Ok(permit) = s.slots.clone().try_acquire_owned() else {
        metrics::counter!("parley_connections_refused_total").increment(1);
        return (StatusCode::SERVICE_UNAVAILABLE, "connection limit reached\n").into_response();
    };
    let max = s.ctx.cfg.max_frame_bytes;
    ws.max_message_size(max).on_upgrade(move |socket| async move {
        let task = s.tracker.spawn(async move {
            let _permit = permit;
            serve_websocket(s.ctx, socket, peer, s.shutdown).await;
        });
        let _ = task.await;
    })
}

async fn serve_websocket(ctx: Arc<Ctx>, socket: WebSocket, peer: SocketAddr, shutdown: CancellationToken) {
    let max = ctx.cfg.max_frame_bytes;
    let (sink, stream) = socket.split();
    let reader = futures_util::stream::unfold(stream, move |mut stream| async move {
        loop {
            let item = match stream.next().await? {
                Ok(Message::Binary(data)) => {
                    parley_proto::frame::decode_payload::<pb::ClientFrame>(&data, max)
                }
                Ok(Message::Text(_)) => Err(FrameError::NotAFrame("text message")),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(Message::Close(_)) | Err(_) => return None,
            };
            return Some((item, stream));
        }
    });
    let writer = sink
        .with(|frame: Bytes| {
            // The hub and writer deal in length-prefixed frames; WebSocket messages carry their own length.
            let payload = frame.slice(parley_proto::frame::HEADER_BYTES.min(frame.len())..);
            std::future::ready(Ok::<_, axum::Error>(Message::Binary(payload)))
        })
        .sink_map_err(std::io::Error::other);
    connection::serve(ctx, Box::pin(reader), Box::pin(writer), peer, shutdown).await;
}

/// Accepts HTTP connections (over TLS unless `acceptor` is `None`) until shutdown.
pub async fn serve(listener: TcpListener, acceptor: Option<tokio_rustls::TlsAcceptor>, state: HttpState) {
    let app = router(state.clone());
    loop {
        let (stream, peer) = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let app = app.clone().layer(axum::Extension(Peer(peer)));
        let (acceptor, shutdown) = (acceptor.clone(), state.shutdown.clone());
        state.tracker.spawn(async move {
            let service = TowerToHyperService::new(app);
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let result = match acceptor {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    tokio::select! { r = conn => r, _ = shutdown.cancelled() => Ok(()) }
                }
                Some(acceptor) => {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream))
                            .await
                    else {
                        return;
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                    tokio::select! { r = conn => r, _ = shutdown.cancelled() => Ok(()) }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "HTTP connection error");
            }
        });
    }
}
