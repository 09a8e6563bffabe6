//! Calls: signalling over the client connection, media through the relay.
//!
//! Every rule of a call (who rings, who may answer, busy, glare, timeouts,
//! dropped devices, records) lives in the sans-IO [`Switchboard`] of
//! `parley-call`; this module only feeds it inputs, under one lock, and
//! carries out the actions it returns: events through the hub, call records
//! through the group-commit writer (so they get a seq like any message), and
//! media legs on the relay. [`run_timers`] is the tokio side of its clock.
//!
//! A device is identified by its session id (stable across reconnects) and
//! carried by a connection id, so a device that reconnects within the grace
//! stays in its call. The relay's SDP answer goes back only in the response to
//! the device's own StartCall/AnswerCall, never in a pushed event: holding it
//! is the per-call credential for that one media leg.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use parley_call::{
    Action, Answered, Call, CallConfig, CallError, CallId, CallRecord, CallState, ConvId, DeviceId, Endpoint,
    Invitation, LinkId, MediaKind, Outcome, Scope, Started, Switchboard, UserId,
};
use parley_proto::pb::{self, ErrorCode, event::Kind as Ev, server_frame::Body as Resp};
use parley_store::{ConvKind, Effect, NewMessage};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Auth, Conn, Ctx, Fail, Reply, fail, rate_limited};
use crate::limits::KeyedLimiter;

/// Largest SDP offer accepted. Real offers are a few KiB; the frame limit
/// alone would let one request pin a megabyte in the relay.
const MAX_SDP_BYTES: usize = 32 * 1024;

/// Why the relay could not take a media leg.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// No relay runs on this server.
    #[error("media relay not available")]
    Unavailable,
    /// The offer was unusable.
    #[error("unusable SDP offer: {0}")]
    BadOffer(String),
    /// Anything else the relay reports.
    #[error("media relay failed: {0}")]
    Failed(String),
}

/// A boxed future, so the relay can be a trait object.
pub type RelayFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The media relay (SFU) as signalling sees it: one room per call, one leg
/// per device. A trait so that signalling does not care how media is carried.
pub trait MediaRelay: Send + Sync {
    /// Adds `device`'s leg in room `call` and returns the SDP answer to `offer`.
    fn join(&self, call: i64, device: i64, offer: String) -> RelayFuture<'_, Result<String, RelayError>>;
    /// Checks the form of an offer (size, SDP grammar) before anyone rings, so a bad offer
    /// is refused without waking the callee's devices for a call that cannot connect.
    fn check_offer(&self, offer: &str) -> Result<(), RelayError>;
    /// Removes `device`'s leg.
    fn leave(&self, call: i64, device: i64) -> RelayFuture<'_, ()>;
    /// Closes the room and every leg in it.
    fn close(&self, call: i64) -> RelayFuture<'_, ()>;
}

/// The server's own relay, `parley-rtc`'s SFU.
pub struct SfuRelay(parley_rtc::sfu::SfuHandle);

impl SfuRelay {
    /// Signalling over the running relay `handle`.
    pub fn new(handle: parley_rtc::sfu::SfuHandle) -> SfuRelay {
        SfuRelay(handle)
    }
}

/// A relay refusal as signalling words it: the client's fault or the relay's.
fn relay_error(e: parley_rtc::sfu::SfuError) -> RelayError {
    use parley_rtc::sfu::SfuError as E;
    match e {
        E::MalformedSdp(_) | E::RejectedSdp(_) | E::OfferTooLarge { .. } | E::TooManyMediaLines { .. } => {
            RelayError::BadOffer(e.to_string())
        }
        e => RelayError::Failed(e.to_string()),
    }
}

impl MediaRelay for SfuRelay {
    fn join(&self, call: i64, device: i64, offer: String) -> RelayFuture<'_, Result<String, RelayError>> {
        Box::pin(async move {
            match self.0.join(call, device, &offer).await {
                Ok(joined) => Ok(joined.answer_sdp),
                Err(e) => Err(relay_error(e)),
            }
        })
    }
    fn check_offer(&self, offer: &str) -> Result<(), RelayError> {
        self.0.check_offer(offer).map_err(relay_error)
    }
    fn leave(&self, call: i64, device: i64) -> RelayFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.0.leave(call, device).await {
                tracing::debug!(call, error = %e, "media leg not removed");
            }
        })
    }
    fn close(&self, call: i64) -> RelayFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.0.close_call(call).await {
                tracing::debug!(call, error = %e, "media room not closed");
            }
        })
    }
}

/// Used while no relay is configured: calls still ring and end, but a
/// device that sends an SDP offer is told media is unavailable.
struct NoRelay;

impl MediaRelay for NoRelay {
    fn join(&self, _: i64, _: i64, _: String) -> RelayFuture<'_, Result<String, RelayError>> {
        Box::pin(async { Err(RelayError::Unavailable) })
    }
    fn check_offer(&self, _: &str) -> Result<(), RelayError> {
        Ok(())
    }
    fn leave(&self, _: i64, _: i64) -> RelayFuture<'_, ()> {
        Box::pin(async {})
    }
    fn close(&self, _: i64) -> RelayFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// The node's calls: the switchboard, its timer wake-up, the relay.
pub struct Calls {
    board: Mutex<Switchboard>,
    /// Wakes [`run_timers`] when an input may have moved the next deadline.
    rearm: Notify,
    relay: OnceLock<Arc<dyn MediaRelay>>,
    starts: KeyedLimiter<i64>,
}

impl Calls {
    /// Calls with these timings; `calls_per_minute` limits how many calls one user may start.
    pub fn new(cfg: CallConfig, calls_per_minute: u32) -> Calls {
        Calls {
            board: Mutex::new(Switchboard::new(cfg)),
            rearm: Notify::new(),
            relay: OnceLock::new(),
            starts: KeyedLimiter::new(calls_per_minute, Duration::from_secs(60)),
        }
    }

    /// Sets the media relay (once, at start-up).
    pub fn use_relay(&self, relay: Arc<dyn MediaRelay>) {
        if self.relay.set(relay).is_err() {
            tracing::warn!("media relay set twice; keeping the first");
        }
    }

    fn relay(&self) -> &dyn MediaRelay {
        match self.relay.get() {
            Some(r) => r.as_ref(),
            None => &NoRelay,
        }
    }

    /// The switchboard. Its methods never panic, so a poisoned lock is taken over.
    fn board(&self) -> MutexGuard<'_, Switchboard> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of active calls.
    pub fn active(&self) -> usize {
        self.board().len()
    }

    /// Forgets rate-limit state that no longer limits anything.
    pub fn prune(&self) {
        self.starts.prune(Instant::now());
    }
}

/// What is left to do once the switchboard lock is released.
enum Work {
    // Boxed: a frame is ten times the size of the other variants.
    Push(Vec<i64>, Box<pb::ServerFrame>),
    Leave(i64, i64),
    Close(i64),
    Record(CallRecord),
}

fn ids(users: &[UserId]) -> Vec<i64> {
    users.iter().map(|u| u.0).collect()
}

fn media_pb(m: MediaKind) -> pb::MediaKind {
    match m {
        MediaKind::Audio => pb::MediaKind::Audio,
        MediaKind::Video => pb::MediaKind::Video,
    }
}

fn outcome_pb(o: Outcome) -> pb::CallOutcome {
    match o {
        Outcome::Completed => pb::CallOutcome::Completed,
        Outcome::Missed => pb::CallOutcome::Missed,
        Outcome::Declined => pb::CallOutcome::Declined,
        Outcome::Cancelled => pb::CallOutcome::Cancelled,
        Outcome::Busy => pb::CallOutcome::CallBusy,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn info_pb(call: &Call) -> pb::CallInfo {
    pb::CallInfo {
        call_id: call.id().0,
        conv_id: call.conv().0,
        kind: media_pb(call.media()) as i32,
        caller_id: call.caller().0,
        state: match call.state() {
            CallState::Ringing => pb::CallState::Ringing,
            CallState::Connected => pb::CallState::Connected,
        } as i32,
        participant_ids: call.participants().map(|(u, _)| u.0).collect(),
        group: call.scope() == Scope::Group,
    }
}

/// Turns the switchboard's queued actions into work, reading call details
/// while the lock is still held.
fn drain(board: &mut Switchboard) -> Vec<Work> {
    let actions: Vec<Action> = board.drain_actions().collect();
    let mut work = Vec::with_capacity(actions.len());
    let event = |kind: Ev| Box::new(pb::ServerFrame::event(kind));
    for action in actions {
        match action {
            Action::Ring { call, users } => {
                if let Some(c) = board.call(call) {
                    work.push(Work::Push(ids(&users), event(Ev::CallIncoming(info_pb(c)))));
                }
            }
            Action::Ringing { call, caller } => {
                if let Some(c) = board.call(call) {
                    work.push(Work::Push(vec![caller.0], event(Ev::CallRinging(info_pb(c)))));
                }
            }
            Action::StopRinging {
                call,
                user,
                device,
                accepted,
            } => {
                let ev = Ev::CallAnsweredElsewhere(pb::CallAnsweredElsewhere {
                    call_id: call.0,
                    session_id: device.map_or(0, |d| d.0),
                    accepted,
                });
                work.push(Work::Push(vec![user.0], event(ev)));
            }
            Action::Joined {
                call,
                user,
                device,
                notify,
            } => {
                let ev = Ev::CallAccepted(pb::CallAccepted {
                    call_id: call.0,
                    user_id: user.0,
                    session_id: device.0,
                });
                work.push(Work::Push(ids(&notify), event(ev)));
            }
            Action::Left {
                call,
                user,
                device,
                connection_lost,
                notify,
            } => {
                work.push(Work::Leave(call.0, device.0));
                let ev = Ev::CallLeft(pb::CallLeft {
                    call_id: call.0,
                    user_id: user.0,
                    connection_lost,
                });
                work.push(Work::Push(ids(&notify), event(ev)));
            }
            Action::Ended {
                call,
                outcome,
                duration,
                connection_lost,
                notify,
            } => {
                work.push(Work::Close(call.0));
                let ev = Ev::CallEnded(pb::CallEnded {
                    call_id: call.0,
                    outcome: outcome_pb(outcome) as i32,
                    duration_ms: millis(duration),
                    connection_lost,
                });
                work.push(Work::Push(ids(&notify), event(ev)));
            }
            Action::Record(r) => work.push(Work::Record(r)),
        }
    }
    work
}

/// Runs `f` on the switchboard, then carries out what it asked for.
async fn with_board<T>(ctx: &Ctx, f: impl FnOnce(&mut Switchboard) -> T) -> T {
    let (out, work) = {
        let mut board = ctx.calls.board();
        let out = f(&mut board);
        (out, drain(&mut board))
    };
    ctx.calls.rearm.notify_one();
    perform(ctx, work).await;
    out
}

async fn perform(ctx: &Ctx, work: Vec<Work>) {
    for w in work {
        match w {
            Work::Push(users, frame) => {
                if let Some(bytes) = ctx.hub.encode(&frame) {
                    ctx.hub.push_encoded(&users, &bytes);
                }
            }
            Work::Leave(call, device) => ctx.calls.relay().leave(call, device).await,
            Work::Close(call) => ctx.calls.relay().close(call).await,
            Work::Record(r) => write_record(ctx, r).await,
        }
    }
}

/// The stored form of a call record (JSON in the message body).
#[derive(Serialize, Deserialize, Default)]
struct StoredRecord {
    call: i64,
    media: i32,
    outcome: i32,
    duration_ms: u64,
}

/// Writes the record of a finished call into its conversation, as the caller.
/// Its client id is derived from the call, so it is stored once whatever happens.
async fn write_record(ctx: &Ctx, r: CallRecord) {
    let stored = StoredRecord {
        call: r.call.0,
        media: media_pb(r.media) as i32,
        outcome: outcome_pb(r.outcome) as i32,
        duration_ms: millis(r.duration),
    };
    let Ok(body) = serde_json::to_string(&stored) else {
        return;
    };
    let msg = NewMessage {
        conv_id: r.conv.0,
        sender_id: r.caller.0,
        client_msg_id: format!("call-{}", r.call.0),
        kind: pb::MessageKind::CallRecord as i32,
        body,
        file_id: None,
        effect: Effect::None,
    };
    metrics::counter!("parley_calls_ended_total", "outcome" => outcome_pb(r.outcome).as_str_name())
        .increment(1);
    if let Err(e) = ctx.committer.append(msg).await {
        tracing::warn!(call = r.call.0, error = %e, "call record not stored");
    }
}

/// The structured record and a plain summary ("voice call 03:12") of a
/// stored CALL_RECORD body, for `message_pb`.
pub(crate) fn record_pb(body: &str) -> (pb::CallRecord, String) {
    let s: StoredRecord = serde_json::from_str(body).unwrap_or_default();
    let kind = pb::MediaKind::try_from(s.media).unwrap_or(pb::MediaKind::Audio);
    let outcome = pb::CallOutcome::try_from(s.outcome).unwrap_or(pb::CallOutcome::Unspecified);
    let what = if kind == pb::MediaKind::Video {
        "video call"
    } else {
        "voice call"
    };
    let secs = s.duration_ms / 1000;
    let summary = match outcome {
        pb::CallOutcome::Completed => format!("{what} {:02}:{:02}", secs / 60, secs % 60),
        pb::CallOutcome::Missed => format!("missed {what}"),
        pb::CallOutcome::Declined => format!("declined {what}"),
        pb::CallOutcome::Cancelled => format!("cancelled {what}"),
        pb::CallOutcome::CallBusy => format!("{what}: busy"),
        pb::CallOutcome::Unspecified => what.to_string(),
    };
    let record = pb::CallRecord {
        call_id: s.call,
        kind: kind as i32,
        outcome: outcome as i32,
        duration_ms: s.duration_ms,
    };
    (record, summary)
}

fn refusal(e: CallError) -> Fail {
    let code = match e {
        CallError::Busy | CallError::AlreadyInCall => ErrorCode::Busy,
        // Not revealing calls one is not part of.
        CallError::NoSuchCall | CallError::NotInvited => return fail(ErrorCode::NotFound, "no such call"),
        CallError::AnsweredElsewhere => ErrorCode::AlreadyExists,
        CallError::Full => ErrorCode::Forbidden,
        CallError::NobodyToCall => ErrorCode::InvalidArgument,
        CallError::DuplicateId => ErrorCode::Internal,
    };
    fail(code, e.to_string())
}

fn endpoint(auth: Auth, conn: &Conn) -> Endpoint {
    Endpoint {
        user: UserId(auth.user_id),
        device: DeviceId(auth.session_id),
        link: LinkId(conn.conn_id),
    }
}

/// The offer of a start or answer request, checked before the call is touched: `None` for a
/// device that joins without media.
fn offer(ctx: &Ctx, sdp: String) -> Result<Option<String>, Fail> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(fail(
            ErrorCode::InvalidArgument,
            format!("SDP offers are limited to {MAX_SDP_BYTES} bytes"),
        ));
    }
    if sdp.trim().is_empty() {
        return Ok(None);
    }
    ctx.calls.relay().check_offer(&sdp).map_err(|e| match e {
        RelayError::BadOffer(_) => fail(ErrorCode::InvalidArgument, e.to_string()),
        _ => fail(ErrorCode::Unavailable, e.to_string()),
    })?;
    Ok(Some(sdp))
}

/// The caller's device joins the relay for `call`; a failure takes it back out of the call.
async fn join_media(
    ctx: &Ctx,
    call: CallId,
    auth: Auth,
    offer: Option<String>,
) -> Result<pb::CallJoined, Fail> {
    let sdp_answer = match offer {
        None => String::new(),
        Some(offer) => match ctx.calls.relay().join(call.0, auth.session_id, offer).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::info!(call = call.0, error = %e, "media leg refused");
                let _ = with_board(ctx, |b| b.hang_up(Instant::now(), call, UserId(auth.user_id))).await;
                return Err(match e {
                    RelayError::BadOffer(_) => fail(ErrorCode::InvalidArgument, e.to_string()),
                    _ => fail(ErrorCode::Unavailable, e.to_string()),
                });
            }
        },
    };
    let call = ctx.calls.board().call(call).map(info_pb);
    let call = call.ok_or_else(|| fail(ErrorCode::NotFound, "the call ended"))?;
    Ok(pb::CallJoined {
        call: Some(call),
        sdp_answer,
    })
}

/// The call's conversation, if `me` is a member of it (else NOT_FOUND).
async fn member_of(ctx: &Ctx, conv_id: i64, me: i64) -> Result<Arc<crate::convcache::ConvInfo>, Fail> {
    match ctx.convs.get(&ctx.store, conv_id).await? {
        Some(info) if info.has(me) => Ok(info),
        _ => Err(fail(ErrorCode::NotFound, "no such conversation")),
    }
}

pub(super) async fn start(ctx: &Ctx, conn: &mut Conn, r: pb::StartCall) -> Reply {
    let auth = conn.require_auth()?;
    let me = auth.user_id;
    let media = match pb::MediaKind::try_from(r.kind) {
        Ok(pb::MediaKind::Audio | pb::MediaKind::Unspecified) => MediaKind::Audio,
        Ok(pb::MediaKind::Video) => MediaKind::Video,
        Err(_) => return Err(fail(ErrorCode::InvalidArgument, "unknown media kind")),
    };
    let offer = offer(ctx, r.sdp_offer)?;
    let info = member_of(ctx, r.conv_id, me).await?;
    let (scope, callees) = match info.kind {
        ConvKind::Direct => {
            let peer = info.peer_of(me).unwrap_or(me);
            // Blocked either way looks the same as "not friends", as for messages.
            if peer == me || !ctx.convs.direct_allowed(&ctx.store, me, peer).await? {
                return Err(fail(ErrorCode::Forbidden, "you can only call your friends"));
            }
            (Scope::Direct, vec![UserId(peer)])
        }
        ConvKind::Group => {
            let others = info.members.iter().filter(|m| **m != me).map(|m| UserId(*m));
            (Scope::Group, others.collect())
        }
    };
    if let Err(wait) = ctx.calls.starts.take(&me, Instant::now()) {
        return Err(rate_limited("calls", wait));
    }
    let invitation = Invitation {
        call: CallId(ctx.store.next_id()),
        conv: ConvId(r.conv_id),
        scope,
        media,
        caller: endpoint(auth, conn),
        callees,
    };
    let started = with_board(ctx, |b| b.start(Instant::now(), invitation)).await;
    let call = match started.map_err(refusal)? {
        Started::Ringing(id) | Started::Joined(id) => id,
    };
    Ok(Resp::CallJoined(join_media(ctx, call, auth, offer).await?))
}

pub(super) async fn answer(ctx: &Ctx, conn: &mut Conn, r: pb::AnswerCall) -> Reply {
    let auth = conn.require_auth()?;
    let offer = offer(ctx, r.sdp_offer)?;
    let call = CallId(r.call_id);
    let found = ctx.calls.board().call(call).map(|c| (c.conv(), c.scope()));
    let Some((conv, scope)) = found else {
        return Err(fail(ErrorCode::NotFound, "no such call"));
    };
    if scope == Scope::Group {
        // Anyone may join a group call while it lasts, if they are (still) a member.
        member_of(ctx, conv.0, auth.user_id).await?;
    }
    let ep = endpoint(auth, conn);
    let answered = with_board(ctx, |b| b.answer(Instant::now(), call, ep, r.accept)).await;
    match answered.map_err(refusal)? {
        Answered::Declined => Ok(Resp::Ok(pb::Ok {})),
        Answered::Joined => Ok(Resp::CallJoined(join_media(ctx, call, auth, offer).await?)),
        Answered::Rejoined => {
            // A renewed leg replaces the old one, which died with the old connection.
            if offer.is_some() {
                ctx.calls.relay().leave(call.0, auth.session_id).await;
            }
            Ok(Resp::CallJoined(join_media(ctx, call, auth, offer).await?))
        }
    }
}

pub(super) async fn hang_up(ctx: &Ctx, conn: &mut Conn, r: pb::HangUp) -> Reply {
    let me = conn.require_auth()?.user_id;
    let done = with_board(ctx, |b| b.hang_up(Instant::now(), CallId(r.call_id), UserId(me))).await;
    done.map_err(refusal)?;
    Ok(Resp::Ok(pb::Ok {}))
}

pub(super) async fn list(ctx: &Ctx, conn: &mut Conn) -> Reply {
    let me = conn.require_auth()?.user_id;
    let calls = ctx.calls.board().calls_of(UserId(me)).map(info_pb).collect();
    Ok(Resp::CallList(pb::CallList { calls }))
}

/// A device logged in on a connection: back in its call, or rung for calls still ringing.
pub(super) async fn link_up(ctx: &Ctx, conn: &Conn, auth: Auth) {
    let ep = endpoint(auth, conn);
    with_board(ctx, |b| b.link_up(ep)).await;
}

/// A device's connection ended (or logged out): its calls give it the reconnect grace.
pub(super) async fn link_down(ctx: &Ctx, conn: &Conn, auth: Auth) {
    let ep = endpoint(auth, conn);
    with_board(ctx, |b| b.link_down(Instant::now(), ep)).await;
}

/// Drives the switchboard's timers (ring timeouts, reconnect grace) until shutdown.
pub async fn run_timers(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    loop {
        let next = ctx.calls.board().poll_timeout();
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ctx.calls.rearm.notified() => continue,
            _ = sleep => {}
        }
        with_board(&ctx, |b| b.handle_timeout(Instant::now())).await;
    }
}
