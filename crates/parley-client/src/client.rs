//! [`Client`]: the handle applications hold.
//!
//! A `Client` is a cheap clone of an `Arc`. It never touches the socket: it
//! hands requests to the connection task (see `driver.rs`) over a channel,
//! each with a oneshot for its answer, and reads the session state the task
//! keeps up to date. That split is what lets one client be shared by a UI,
//! background sync and tests at the same time.

use std::sync::{Arc, Mutex, MutexGuard};

use parley_proto::pb;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::ClientConfig;
use crate::driver::{self, Request};
use crate::error::ClientError;
use crate::event::ClientEvent;
use crate::link::{self, RequestIds};
use crate::tls::{ServerIdentity, TrustStore};

/// How many events a slow subscriber may fall behind before it misses some.
const EVENT_CAPACITY: usize = 1024;
/// Requests waiting for the connection task; callers wait when it is full.
const REQUEST_QUEUE: usize = 256;

/// A connection to a Parley server: typed requests, an event stream, and
/// automatic reconnect with session resume.
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
    requests: mpsc::Sender<Request>,
}

/// What the handles and the connection task share.
pub(crate) struct Shared {
    pub(crate) config: ClientConfig,
    pub(crate) trust: TrustStore,
    pub(crate) ids: RequestIds,
    pub(crate) events: broadcast::Sender<ClientEvent>,
    /// Cancelled by `close()`: the connection task ends and never reconnects.
    pub(crate) closing: CancellationToken,
    session: Mutex<Session>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// The connection and login state, as last seen by the connection task.
#[derive(Clone, Debug, Default)]
pub(crate) struct Session {
    pub(crate) welcome: pb::Welcome,
    pub(crate) identity: Option<ServerIdentity>,
    /// The secret used to resume; never logged.
    pub(crate) token: Option<String>,
    pub(crate) user: Option<pb::User>,
    pub(crate) session_id: i64,
    /// Set by an explicit logout: a lost connection is then not re-established.
    pub(crate) logged_out: bool,
}

impl Shared {
    /// The session state. A panic elsewhere while holding the lock cannot
    /// leave it half-updated (every update is a plain assignment), so a
    /// poisoned lock is simply taken over.
    pub(crate) fn session(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes an event; having no subscriber is fine.
    pub(crate) fn emit(&self, event: ClientEvent) {
        let _ = self.events.send(event);
    }
}

impl Client {
    /// Connects to the server (TCP, TLS with the configured trust, `Hello`)
    /// and starts the connection task. Fails if the first connection cannot
    /// be made; later losses are handled by reconnecting.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let trust = TrustStore::new(&config.trust, &config.address)?;
        let ids = RequestIds::new();
        let link = link::open(&config, &trust, &ids, None).await?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let shared = Arc::new(Shared {
            config,
            trust,
            ids,
            events,
            closing: CancellationToken::new(),
            session: Mutex::new(Session {
                welcome: link.welcome.clone(),
                identity: Some(link.identity.clone()),
                ..Session::default()
            }),
            task: Mutex::new(None),
        });
        let (requests, queue) = mpsc::channel(REQUEST_QUEUE);
        let task = tokio::spawn(driver::run(shared.clone(), link, queue));
        *shared.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(Client { shared, requests })
    }

    /// A new subscription to server events and connection state changes.
    /// Only events after this call are seen.
    pub fn events(&self) -> broadcast::Receiver<ClientEvent> {
        self.shared.events.subscribe()
    }

    /// The server's `Welcome` on the current (or last) connection.
    pub fn welcome(&self) -> pb::Welcome {
        self.shared.session().welcome.clone()
    }

    /// The certificate the server presented on the current (or last)
    /// connection, and whether it was just trusted for the first time.
    pub fn server_identity(&self) -> Option<ServerIdentity> {
        self.shared.session().identity.clone()
    }

    /// The token of the logged-in session, to keep for a later [`Client::resume`].
    pub fn session_token(&self) -> Option<String> {
        self.shared.session().token.clone()
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<pb::User> {
        self.shared.session().user.clone()
    }

    /// Sends any request and waits for its response. An `Error` response
    /// becomes [`ClientError::Server`]. While the client is reconnecting the
    /// request waits for the new connection, within the request timeout.
    pub async fn request(&self, body: pb::client_frame::Body) -> Result<pb::server_frame::Body, ClientError> {
        let (reply, answer) = oneshot::channel();
        let round_trip = async {
            self.requests
                .send(Request { body, reply })
                .await
                .map_err(|_| ClientError::Disconnected)?;
            answer.await.map_err(|_| ClientError::Disconnected)?
        };
        tokio::time::timeout(self.shared.config.request_timeout, round_trip)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Closes the connection for good: in-flight requests fail with
    /// [`ClientError::Disconnected`], no reconnect follows, and the event
    /// stream ends with [`crate::ConnectionState::Closed`].
    pub async fn close(&self) {
        self.shared.closing.cancel();
        let task = self.shared.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            // The task only flushes a TLS close_notify; do not wait forever.
            let wait = self.shared.config.request_timeout;
            if tokio::time::timeout(wait, task).await.is_err() {
                tracing::debug!("connection task did not finish in time");
            }
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let session = self.shared.session();
        f.debug_struct("Client")
            .field("address", &self.shared.config.address)
            .field("user", &session.user.as_ref().map(|u| u.username.as_str()))
            .field("session_id", &session.session_id)
            .finish_non_exhaustive()
    }
}
