//! Start-up, accept loops and graceful shutdown.
//!
//! [`start`] opens storage, loads the TLS identity, binds both listeners and
//! returns a [`ServerHandle`] at once; the binary and the integration tests
//! start the server the same way. Connections over the limit are closed right
//! after accept, so existing connections never feel the pressure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use parley_proto::pb;
use parley_store::{Store, StoreOptions};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::service::Ctx;
use crate::stream::{FrameReader, FrameWriter};
use crate::{connection, http, tls};

/// How long the TLS handshake of a new connection may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A running server.
pub struct ServerHandle {
    /// Where the client protocol listens.
    pub client_addr: SocketAddr,
    /// Where HTTP (health, metrics, WebSocket) listens.
    pub http_addr: SocketAddr,
    /// SHA-256 of the TLS certificate (lowercase hex); `None` in plaintext mode.
    pub fingerprint: Option<String>,
    /// Where the media relay receives UDP.
    pub media_addr: SocketAddr,
    media: parley_rtc::sfu::SfuHandle,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Membership of a cluster (`--cluster`), left after the connections are closed.
    cluster: Option<crate::cluster::Node>,
}

impl ServerHandle {
    /// The shared server state (for tests and embedding).
    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    /// A token that is cancelled when shutdown begins.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, tells every client, waits for connections to close, closes storage.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the shutdown grace period");
        }
        if let Some(cluster) = self.cluster {
            cluster.leave().await;
        }
        self.media.shutdown().await;
        self.ctx.store.close().await;
        tracing::info!("server stopped");
    }
}

/// Raises the soft open-file limit to the hard limit: every connection is a
/// descriptor, and the soft default (often 1024) would cap the server long
/// before memory does. Logs both.
#[cfg(unix)]
pub fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if got != 0 {
        tracing::warn!("cannot read the open-file limit");
        return;
    }
    let (soft, hard) = (lim.rlim_cur, lim.rlim_max);
    if soft < hard {
        lim.rlim_cur = hard;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            tracing::warn!(soft, hard, "cannot raise the open-file limit");
            return;
        }
    }
    tracing::info!(
        soft_before = soft,
        soft_now = lim.rlim_cur,
        hard,
        "open-file limit"
    );
}

/// Open-file limits are not a per-process soft/hard pair here.
#[cfg(not(unix))]
pub fn raise_open_file_limit() {}

/// Opens storage, binds the listeners and starts serving.
pub async fn start(cfg: Config) -> anyhow::Result<ServerHandle> {
    let metrics = crate::metrics::install();
    raise_open_file_limit();
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let store = Store::connect(
        &cfg.database,
        StoreOptions {
            node_id: cfg.node_id,
            ..StoreOptions::default()
        },
    )
    .await
    .with_context(|| format!("opening database {}", redact(&cfg.database)))?;
    let identity = tls::load(&cfg.tls, &cfg.data_dir)?;
    let fingerprint = identity.as_ref().map(|i| i.fingerprint.clone());
    let acceptor = identity.map(|i| i.acceptor);

    let client_listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding client listener {}", cfg.listen))?;
    let http_listener = TcpListener::bind(cfg.http_listen)
        .await
        .with_context(|| format!("binding HTTP listener {}", cfg.http_listen))?;
    let client_addr = client_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let (ctx, commit_queue) = Ctx::new(store, cfg, http_addr.port());
    let ctx = Arc::new(ctx);
    let media = start_media(&ctx.cfg)?;
    let media_addr = media.local_addr();
    ctx.calls
        .use_relay(Arc::new(crate::service::calls::SfuRelay::new(media.clone())));
    // Joined before accepting anyone, so every presence change is published.
    let cluster = match ctx.cfg.cluster.clone() {
        Some(url) => Some(crate::cluster::join(ctx.clone(), &url).await?),
        None => None,
    };
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(ctx.cfg.max_connections));

    tracker.spawn(accept_clients(
        client_listener,
        acceptor.clone(),
        ctx.clone(),
        slots.clone(),
        shutdown.clone(),
        tracker.clone(),
    ));
    let http_state = http::HttpState {
        ctx: ctx.clone(),
        metrics,
        slots,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
    };
    tracker.spawn(http::serve(http_listener, acceptor, http_state));
    tracker.spawn(housekeeping(ctx.clone(), shutdown.clone()));
    tracker.spawn(crate::committer::run(ctx.clone(), commit_queue, shutdown.clone()));
    tracker.spawn(crate::service::calls::run_timers(ctx.clone(), shutdown.clone()));

    match &fingerprint {
        Some(fp) => tracing::info!(%client_addr, %http_addr, "listening with TLS; certificate sha256 {fp}"),
        None => tracing::warn!(%client_addr, %http_addr, "listening WITHOUT TLS (--insecure-plaintext)"),
    }
    Ok(ServerHandle {
        media_addr,
        media,
        client_addr,
        http_addr,
        fingerprint,
        ctx,
        shutdown,
        tracker,
        cluster,
    })
}

/// Starts the media relay (SFU) on its UDP socket.
fn start_media(cfg: &Config) -> anyhow::Result<parley_rtc::sfu::SfuHandle> {
    let bind = cfg.media_bind();
    let sfu = parley_rtc::sfu::SfuConfig {
        bind,
        public_ips: cfg.media_public_ip.into_iter().collect(),
        max_participants: cfg.call_max_participants,
        ..parley_rtc::sfu::SfuConfig::default()
    };
    let handle =
        parley_rtc::sfu::Sfu::start(sfu).with_context(|| format!("starting the media relay on {bind}"))?;
    tracing::info!(media_addr = %handle.local_addr(), "media relay listening");
    Ok(handle)
}

/// The database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

async fn housekeeping(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                ctx.prune_limits();
                metrics::gauge!("parley_online_users").set(ctx.hub.online_users() as f64);
            }
        }
    }
}

async fn accept_clients(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    ctx: Arc<Ctx>,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; existing connections go on.
                    metrics::counter!("parley_accept_errors_total").increment(1);
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!("parley_connections_refused_total").increment(1);
            tracing::warn!(%peer, "connection limit reached; refusing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (ctx, acceptor, shutdown) = (ctx.clone(), acceptor.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _permit = permit;
            match acceptor {
                None => serve_stream(ctx, stream, peer, shutdown).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_stream(ctx, tls, peer, shutdown).await,
                        Ok(Err(e)) => {
                            metrics::counter!("parley_tls_handshake_failures_total").increment(1);
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_stream<S>(ctx: Arc<Ctx>, stream: S, peer: SocketAddr, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let reader = FrameReader::<_, pb::ClientFrame>::new(read, ctx.cfg.max_frame_bytes);
    let writer = FrameWriter::new(write);
    connection::serve(ctx, reader, writer, peer, shutdown).await;
}

/// Resolves when the process receives SIGINT or SIGTERM (Ctrl-C on Windows).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            },
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_password() {
        assert_eq!(
            super::redact("mysql://root:pw@host/db"),
            "mysql://root:***@host/db"
        );
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
