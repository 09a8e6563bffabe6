//! [`Client`]: the handle applications hold.
//!
//! A `Client` is a cheap clone of an `Arc`. It never touches the socket: it
//! hands requests to the connection task (see `driver.rs`) over a channel,
//! each with a oneshot for its answer, and reads the session state the task
//! keeps up to date. That split is what lets one client be shared by a UI,
//! background sync and tests at the same time.
//!
//! Everything the connection task wants to tell the application goes through
//! the delivery task (see `delivery.rs`) first, which keeps the message
//! stream in order and complete before publishing it on the broadcast.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use parley_proto::pb;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::ClientConfig;
use crate::delivery::{self, Inbound};
use crate::driver::{self, Request};
use crate::error::ClientError;
use crate::event::ClientEvent;
use crate::link::{self, RequestIds};
use crate::ordering::MessageOrder;
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
    /// Cancelled when the connection task has ended for good.
    pub(crate) ended: CancellationToken,
    session: Mutex<Session>,
    /// The delivery cursors of the message stream.
    order: Mutex<MessageOrder>,
    /// Into the delivery task; taken (closing the channel) when the
    /// connection task ends.
    inbox: Mutex<Option<mpsc::UnboundedSender<Inbound>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
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

    /// The delivery cursors; poisoning is taken over like the session's
    /// (every method leaves the state consistent between statements).
    pub(crate) fn order(&self) -> MutexGuard<'_, MessageOrder> {
        self.order.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands an event to the delivery task, which publishes it in order.
    pub(crate) fn emit(&self, event: ClientEvent) {
        self.to_delivery(Inbound::Event(event));
    }

    /// Queues something for the delivery task; `false` once it is gone.
    pub(crate) fn to_delivery(&self, item: Inbound) -> bool {
        let inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        inbox.as_ref().is_some_and(|tx| tx.send(item).is_ok())
    }

    /// Publishes an event to subscribers; having none is fine.
    pub(crate) fn publish(&self, event: ClientEvent) {
        let _ = self.events.send(event);
    }

    /// Called by the connection task as it ends: the delivery task finishes
    /// what is queued, then stops.
    pub(crate) fn end(&self) {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.ended.cancel();
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
        let (inbox, delivery_queue) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            config,
            trust,
            ids,
            events,
            closing: CancellationToken::new(),
            ended: CancellationToken::new(),
            session: Mutex::new(Session {
                welcome: link.welcome.clone(),
                identity: Some(link.identity.clone()),
                ..Session::default()
            }),
            order: Mutex::new(MessageOrder::default()),
            inbox: Mutex::new(Some(inbox)),
            tasks: Mutex::new(Vec::new()),
        });
        let (requests, queue) = mpsc::channel(REQUEST_QUEUE);
        let connection = tokio::spawn(driver::run(shared.clone(), link, queue));
        let delivery = tokio::spawn(delivery::run(
            shared.clone(),
            requests.downgrade(),
            delivery_queue,
        ));
        *shared.tasks.lock().unwrap_or_else(|e| e.into_inner()) = vec![connection, delivery];
        Ok(Client { shared, requests })
    }

    /// A handle sharing `shared`, for the SDK's own tasks.
    pub(crate) fn from_parts(shared: Arc<Shared>, requests: mpsc::Sender<Request>) -> Client {
        Client { shared, requests }
    }

    /// A new subscription to server events and connection state changes.
    /// Only events after this call are seen.
    ///
    /// `Message` events form a gap-free stream (unless
    /// [`ClientConfig::message_sync`] is off): per conversation each message
    /// arrives exactly once and in seq order. Duplicates are dropped; a
    /// message that reveals a gap is held until the gap was fetched with
    /// `SyncMessages`; after every reconnect the messages missed meanwhile
    /// are fetched and delivered. Conversations the SDK has no cursor for
    /// follow the rule in [`Client::set_sync_cursor`]. A subscriber that
    /// falls more than 1024 events behind misses events (`Lagged`) and
    /// should re-sync with [`Client::catch_up`].
    pub fn events(&self) -> broadcast::Receiver<ClientEvent> {
        self.shared.events.subscribe()
    }

    /// Sets the seq up to which messages of `conv_id` count as delivered,
    /// e.g. restored from disk. Call it before `login`/`resume` so the
    /// catch-up that follows delivers everything after it.
    ///
    /// Conversations without a cursor: until the first catch-up after a
    /// login, the first message seen starts the conversation; that catch-up
    /// then gives every remaining conversation the cursor `max_seq` (older
    /// messages are history, see [`Client::history`]). A conversation that
    /// turns up after it (new, or the user was just added) starts at 0, so
    /// all of it is delivered.
    pub fn set_sync_cursor(&self, conv_id: i64, seq: i64) {
        self.shared.order().set_cursor(conv_id, seq);
    }

    /// The seq delivered so far per conversation, to persist.
    pub fn sync_cursors(&self) -> HashMap<i64, i64> {
        self.shared.order().cursors()
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
    /// (A raw `Login` or `Resume` does not start the message stream's
    /// catch-up; [`Client::login`] and [`Client::resume`] do.)
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
        let tasks = std::mem::take(&mut *self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            // The connection task only flushes a TLS close_notify and the
            // delivery task publishes what is queued; do not wait forever.
            let wait = self.shared.config.request_timeout;
            if tokio::time::timeout(wait, task).await.is_err() {
                tracing::debug!("a client task did not finish in time");
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
