//! Request handling: one function per request kind, grouped by concern.
//!
//! [`dispatch`] is the single entry point the connection loop calls. Handlers
//! are plain async functions of `(ctx, conn, request)` returning the response
//! body or a typed error; they never touch sockets, so the transport (TLS,
//! plaintext, WebSocket) is irrelevant here.

mod accounts;
pub mod calls;
mod contacts;
mod conversations;
mod messages;

use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parley_proto::pb::{self, ErrorCode, client_frame::Body as Req, server_frame::Body as Resp};
use parley_store::{Store, StoreError, UserRow};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::committer::{CommitQueue, Committer};
use crate::config::Config;
use crate::convcache::ConvCache;
use crate::hub::{ConnHandle, Hub, Outbound};
use crate::limits::KeyedLimiter;

pub use accounts::PasswordHasher;
pub(crate) use contacts::broadcast_presence;
pub use messages::message_pb;

/// Everything handlers share: storage, the live-connection hub, config, limits.
pub struct Ctx {
    pub store: Store,
    pub hub: Hub,
    pub cfg: Config,
    pub login_by_account: KeyedLimiter<String>,
    pub login_by_address: KeyedLimiter<IpAddr>,
    pub registrations: KeyedLimiter<IpAddr>,
    pub friend_requests: KeyedLimiter<i64>,
    pub messages: KeyedLimiter<i64>,
    pub typing: KeyedLimiter<(i64, i64)>,
    pub hasher: PasswordHasher,
    pub convs: ConvCache,
    pub committer: Committer,
    pub calls: calls::Calls,
    /// Port of the HTTP listener, announced in `Welcome`.
    pub http_port: u16,
}

impl Ctx {
    /// Builds the shared context over an opened store; the queue feeds [`crate::committer::run`].
    pub fn new(store: Store, cfg: Config, http_port: u16) -> (Self, CommitQueue) {
        let hour = Duration::from_secs(3600);
        let (committer, queue) = Committer::new(cfg.commit_batch * 4);
        let ctx = Ctx {
            messages: KeyedLimiter::new(cfg.messages_per_minute, Duration::from_secs(60)),
            typing: KeyedLimiter::new(cfg.typing_per_3s, Duration::from_secs(3)),
            convs: ConvCache::default(),
            committer,
            calls: calls::Calls::new(
                parley_call::CallConfig {
                    ring_timeout: cfg.call_ring_timeout,
                    reconnect_grace: cfg.call_reconnect_grace,
                    max_participants: cfg.call_max_participants,
                },
                cfg.calls_per_minute,
            ),
            http_port,
            hub: Hub::new(cfg.max_frame_bytes),
            login_by_account: KeyedLimiter::new(cfg.login_failures_per_account, cfg.login_window),
            login_by_address: KeyedLimiter::new(cfg.login_failures_per_address, cfg.login_window),
            registrations: KeyedLimiter::new(cfg.registrations_per_hour, hour),
            friend_requests: KeyedLimiter::new(cfg.friend_requests_per_hour, hour),
            hasher: PasswordHasher::new(),
            store,
            cfg,
        };
        (ctx, queue)
    }

    /// Port of the HTTP listener.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Forgets rate-limit state that no longer limits anything.
    pub fn prune_limits(&self) {
        let now = Instant::now();
        self.login_by_account.prune(now);
        self.login_by_address.prune(now);
        self.registrations.prune(now);
        self.friend_requests.prune(now);
        self.messages.prune(now);
        self.typing.prune(now);
        self.calls.prune();
    }
}

/// The logged-in identity of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auth {
    pub user_id: i64,
    pub session_id: i64,
}

/// Per-connection state handlers may read and change.
pub struct Conn {
    pub conn_id: u64,
    pub peer: IpAddr,
    pub auth: Option<Auth>,
    pub tx: mpsc::Sender<Outbound>,
    pub kill: CancellationToken,
}

impl Conn {
    fn handle(&self, session_id: i64) -> ConnHandle {
        ConnHandle {
            conn_id: self.conn_id,
            session_id,
            tx: self.tx.clone(),
            kill: self.kill.clone(),
        }
    }

    fn require_auth(&self) -> Result<Auth, Fail> {
        self.auth
            .ok_or_else(|| fail(ErrorCode::Unauthenticated, "log in first"))
    }
}

/// A handler failure: a typed error for the client. Storage errors are logged
/// here and reach the client only as INTERNAL, never with their details.
#[derive(Debug)]
pub struct Fail(pub pb::Error);

impl From<pb::Error> for Fail {
    fn from(e: pb::Error) -> Self {
        Fail(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        metrics::counter!("parley_db_errors_total").increment(1);
        tracing::error!(error = %e, "storage error");
        Fail(pb::Error::new(ErrorCode::Internal, "internal server error"))
    }
}

pub(crate) fn fail(code: ErrorCode, msg: impl Into<String>) -> Fail {
    Fail(pb::Error::new(code, msg))
}

pub(crate) fn rate_limited(what: &str, retry_after: Duration) -> Fail {
    let mut e = pb::Error::new(
        ErrorCode::RateLimited,
        format!("too many {what}; retry in {} s", retry_after.as_secs().max(1)),
    );
    e.retry_after_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
    Fail(e)
}

type Reply = Result<Resp, Fail>;

/// Runs a storage call (which records its own latency), mapping failures to typed errors.
/// `op` names the call in traces.
pub(crate) async fn db<T>(
    op: &'static str,
    f: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, Fail> {
    f.await.map_err(|e| {
        tracing::debug!(op, "storage call failed");
        Fail::from(e)
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn user_pb(u: &UserRow) -> pb::User {
    pb::User {
        id: u.id,
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        status_line: u.status_line.clone(),
        avatar_file_id: u.avatar_file_id.unwrap_or(0),
    }
}

/// Handles one request body (everything but Hello and Ping, which the
/// connection loop answers itself).
pub async fn dispatch(ctx: &Ctx, conn: &mut Conn, req: Req) -> Result<Resp, pb::Error> {
    let name = parley_proto::request_name(&req);
    let start = Instant::now();
    let out = route(ctx, conn, req).await.map_err(|Fail(e)| e);
    metrics::histogram!("parley_request_seconds", "kind" => name).record(start.elapsed().as_secs_f64());
    metrics::counter!("parley_requests_total", "kind" => name).increment(1);
    if let Err(e) = &out {
        metrics::counter!("parley_request_errors_total", "kind" => name, "code" => e.kind().as_str_name())
            .increment(1);
    }
    out
}

async fn route(ctx: &Ctx, conn: &mut Conn, req: Req) -> Reply {
    match req {
        Req::Hello(_) => Err(fail(ErrorCode::BadRequest, "Hello was already sent")),
        Req::Ping(p) => Ok(Resp::Pong(pb::Pong { nonce: p.nonce })),
        Req::Register(r) => accounts::register(ctx, conn, r).await,
        Req::Login(r) => accounts::login(ctx, conn, r).await,
        Req::Resume(r) => accounts::resume(ctx, conn, r).await,
        Req::Logout(_) => accounts::logout(ctx, conn).await,
        Req::ListSessions(_) => accounts::list_sessions(ctx, conn).await,
        Req::RevokeSession(r) => accounts::revoke_session(ctx, conn, r).await,
        Req::ChangePassword(r) => accounts::change_password(ctx, conn, r).await,
        Req::GetProfile(r) => accounts::get_profile(ctx, conn, r).await,
        Req::UpdateProfile(r) => accounts::update_profile(ctx, conn, r).await,
        Req::SearchUsers(r) => accounts::search_users(ctx, conn, r).await,
        Req::SendFriendRequest(r) => contacts::send_request(ctx, conn, r).await,
        Req::ListFriendRequests(_) => contacts::list_requests(ctx, conn).await,
        Req::AnswerFriendRequest(r) => contacts::answer_request(ctx, conn, r).await,
        Req::CancelFriendRequest(r) => contacts::cancel_request(ctx, conn, r).await,
        Req::RemoveFriend(r) => contacts::remove_friend(ctx, conn, r).await,
        Req::BlockUser(r) => contacts::block(ctx, conn, r).await,
        Req::UnblockUser(r) => contacts::unblock(ctx, conn, r).await,
        Req::SetRemark(r) => contacts::set_remark(ctx, conn, r).await,
        Req::ListFriends(_) => contacts::list_friends(ctx, conn).await,
        Req::ListBlocked(_) => contacts::list_blocked(ctx, conn).await,
        Req::OpenDirect(r) => conversations::open_direct(ctx, conn, r).await,
        Req::CreateGroup(r) => conversations::create_group(ctx, conn, r).await,
        Req::InviteMembers(r) => conversations::invite(ctx, conn, r).await,
        Req::LeaveGroup(r) => conversations::leave(ctx, conn, r).await,
        Req::KickMember(r) => conversations::kick(ctx, conn, r).await,
        Req::RenameGroup(r) => conversations::rename(ctx, conn, r).await,
        Req::SetMemberRole(r) => conversations::set_role(ctx, conn, r).await,
        Req::ListConversations(_) => conversations::list(ctx, conn).await,
        Req::ListMembers(r) => conversations::list_members(ctx, conn, r).await,
        Req::SendMessage(_) => Err(fail(ErrorCode::Internal, "send is handled by the connection")),
        Req::SyncMessages(r) => messages::sync(ctx, conn, r).await,
        Req::FetchHistory(r) => messages::history(ctx, conn, r).await,
        Req::MarkRead(r) => messages::mark_read(ctx, conn, r).await,
        Req::SetTyping(r) => messages::typing(ctx, conn, r).await,
        Req::RecallMessage(r) => messages::recall(ctx, conn, r).await,
        Req::EditMessage(r) => messages::edit(ctx, conn, r).await,
        Req::DeleteForMe(r) => messages::delete_for_me(ctx, conn, r).await,
        Req::SearchMessages(r) => messages::search(ctx, conn, r).await,
        Req::StartCall(r) => calls::start(ctx, conn, r).await,
        Req::AnswerCall(r) => calls::answer(ctx, conn, r).await,
        Req::HangUp(r) => calls::hang_up(ctx, conn, r).await,
        Req::ListCalls(_) => calls::list(ctx, conn).await,
    }
}

/// Queues a message for the group-commit writer; its ack reaches the connection
/// after the commit, so the connection goes on reading meanwhile (pipelining).
/// `Err` is an immediate refusal to send back for `request_id`.
pub async fn send_message(
    ctx: &Ctx,
    conn: &mut Conn,
    request_id: u64,
    r: pb::SendMessage,
) -> Result<(), pb::Error> {
    let name = "send_message";
    metrics::counter!("parley_requests_total", "kind" => name).increment(1);
    let out = messages::send(ctx, conn, request_id, r)
        .await
        .map_err(|Fail(e)| e);
    if let Err(e) = &out {
        metrics::counter!("parley_request_errors_total", "kind" => name, "code" => e.kind().as_str_name())
            .increment(1);
    }
    out
}

/// Called when a connection ends: unregisters it and, if it was the user's
/// last, records last-seen and tells friends.
pub async fn disconnected(ctx: &Ctx, conn: &mut Conn) {
    if let Some(auth) = conn.auth.take() {
        accounts::detach(ctx, conn, auth).await;
    }
}
