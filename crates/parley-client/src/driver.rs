//! The connection task: owns the socket, matches responses to requests,
//! publishes events, keeps the link alive, and reconnects.
//!
//! One task per client. While a link is up it reads frames, forwards queued
//! requests to a small writer task (so a slow write never stops reading),
//! pings when idle and gives up on a silent server. When the link ends every
//! in-flight request fails with [`ClientError::Disconnected`], and
//! `reconnect.rs` decides whether to back off and try again. Requests made
//! while no link is up simply wait in the queue for the next one.
//!
//! Login state is tracked here, from the responses themselves, so a token is
//! remembered however the login was sent (typed method or raw `request`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use parley_proto::{FrameError, pb};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::client::Shared;
use crate::delivery::Inbound;
use crate::error::ClientError;
use crate::event::{ClientEvent, ConnectionState};
use crate::link::{self, Link, Transport};
use crate::reconnect::{self, Backoff, Heartbeat, LinkEnd, Next};

/// The answer a caller waits for.
pub(crate) type Reply = oneshot::Sender<Result<pb::server_frame::Body, ClientError>>;

/// One queued request.
pub(crate) struct Request {
    pub(crate) body: pb::client_frame::Body,
    pub(crate) reply: Reply,
}

/// What a request does to the login state once it succeeds.
enum Effect {
    None,
    /// `Login` or `Resume`: remember the session (the token comes from the
    /// response for a login, from the request for a resume).
    LogIn {
        token: Option<String>,
    },
    Logout,
    UpdateProfile,
}

struct InFlight {
    reply: Reply,
    effect: Effect,
}

/// Runs the client's connection until it is closed for good.
pub(crate) async fn run(shared: Arc<Shared>, first: Link, mut queue: mpsc::Receiver<Request>) {
    let backoff = Backoff {
        initial: shared.config.backoff_initial,
        max: shared.config.backoff_max,
    };
    let mut link = first;
    // Attempts it took to bring up the current link (0 for the first connect).
    let mut attempts_used = 0u32;
    loop {
        let started = Instant::now();
        let end = serve(&shared, link, &mut queue).await;
        let logged_out = shared.session().logged_out;
        if let Next::Stop(state) = reconnect::after_link(end, shared.config.reconnect, logged_out) {
            return finish(&shared, state);
        }
        let mut attempt = reconnect::first_attempt_after(started.elapsed(), attempts_used);
        link = loop {
            let delay = backoff.delay(attempt, rand::random());
            shared.emit(ClientEvent::State(ConnectionState::Reconnecting {
                attempt,
                delay,
            }));
            tracing::info!(attempt, ?delay, "connection lost; reconnecting");
            tokio::select! {
                _ = shared.closing.cancelled() => return finish(&shared, ConnectionState::Closed),
                _ = tokio::time::sleep(delay) => {}
            }
            if queue.is_closed() {
                // Every handle was dropped: nobody is left to use a connection.
                return finish(&shared, ConnectionState::Closed);
            }
            let token = shared.session().token.clone();
            let result = tokio::select! {
                _ = shared.closing.cancelled() => return finish(&shared, ConnectionState::Closed),
                r = link::open(&shared.config, &shared.trust, &shared.ids, token.as_deref()) => r,
            };
            match result {
                Ok(link) => break link,
                Err(err) => match reconnect::after_failed_attempt(&err) {
                    Next::Stop(state) => {
                        tracing::warn!(error = %err, "giving up reconnecting");
                        return finish(&shared, state);
                    }
                    Next::Reconnect => {
                        tracing::debug!(error = %err, attempt, "reconnect attempt failed");
                        attempt = attempt.saturating_add(1);
                    }
                },
            }
        };
        attempts_used = attempt;
        let resumed_user = {
            let mut session = shared.session();
            session.welcome = link.welcome.clone();
            session.identity = Some(link.identity.clone());
            if let Some(resumed) = &link.resumed {
                session.user = resumed.user.clone();
                session.session_id = resumed.session_id;
            }
            link.resumed.as_ref().and_then(|r| r.user.as_ref()).map(|u| u.id)
        };
        if let Some(user_id) = resumed_user {
            shared.to_delivery(Inbound::LoggedIn(user_id));
        }
        shared.emit(ClientEvent::State(ConnectionState::Connected));
    }
}

/// Publishes the final state; a lost session also forgets its token.
fn finish(shared: &Shared, state: ConnectionState) {
    if state == ConnectionState::LoggedOut {
        let mut session = shared.session();
        session.token = None;
        session.user = None;
        session.session_id = 0;
    }
    tracing::debug!(?state, "connection task finished");
    shared.emit(ClientEvent::State(state));
    shared.end();
}

/// Serves one link until it ends, then fails whatever was still in flight.
async fn serve(shared: &Shared, link: Link, queue: &mut mpsc::Receiver<Request>) -> LinkEnd {
    for kind in link.early_events {
        shared.emit(ClientEvent::Server(kind));
    }
    let heartbeat = Heartbeat::from_welcome(&link.welcome);
    let max_out = match link.welcome.max_frame_bytes {
        0 => shared.config.max_frame_bytes,
        server => shared.config.max_frame_bytes.min(server as usize),
    };
    let (sink, mut stream) = link.transport.split();
    let (outgoing, to_write) = mpsc::channel(64);
    let mut writer = tokio::spawn(write_frames(sink, to_write));
    let mut pending: HashMap<u64, InFlight> = HashMap::new();
    let mut last_sent = Instant::now();
    let mut last_received = Instant::now();
    // Set once the server revoked this session: answers already on their way
    // are still delivered until the server closes, or this deadline passes.
    let mut revoked_until: Option<Instant> = None;
    let lost = |revoked_until: Option<Instant>| match revoked_until {
        Some(_) => LinkEnd::SessionRevoked,
        None => LinkEnd::Lost,
    };

    let end = loop {
        tokio::select! {
            biased;
            _ = shared.closing.cancelled() => break LinkEnd::ClosedByUser,
            frame = stream.next() => match frame {
                Some(Ok(frame)) => {
                    last_received = Instant::now();
                    if on_frame(shared, frame, &mut pending) == Some(LinkEnd::SessionRevoked)
                        && revoked_until.is_none()
                    {
                        revoked_until = Some(Instant::now() + REVOKED_GRACE);
                    }
                }
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "connection failed");
                    break lost(revoked_until);
                }
                None => break lost(revoked_until),
            },
            _ = tokio::time::sleep_until(revoked_until.unwrap_or(last_received)),
                if revoked_until.is_some() => break LinkEnd::SessionRevoked,
            request = queue.recv(), if revoked_until.is_none() => {
                let Some(Request { body, reply }) = request else {
                    break LinkEnd::ClosedByUser;
                };
                if reply.is_closed() {
                    continue; // the caller timed out while it was queued
                }
                let request_id = shared.ids.next();
                let effect = effect_of(&body);
                let frame = pb::ClientFrame { request_id, body: Some(body) };
                let size = frame.encoded_len();
                if size > max_out {
                    let _ = reply.send(Err(ClientError::Protocol(format!(
                        "request of {size} bytes exceeds the frame limit of {max_out} bytes"
                    ))));
                    continue;
                }
                pending.insert(request_id, InFlight { reply, effect });
                if outgoing.send(frame).await.is_err() {
                    break LinkEnd::Lost;
                }
                last_sent = Instant::now();
            }
            _ = tokio::time::sleep_until(last_sent + heartbeat.interval) => {
                let nonce = shared.ids.next();
                let ping = pb::ClientFrame {
                    request_id: nonce,
                    body: Some(pb::client_frame::Body::Ping(pb::Ping { nonce })),
                };
                if outgoing.send(ping).await.is_err() {
                    break LinkEnd::Lost;
                }
                last_sent = Instant::now();
                // Forget requests whose callers gave up waiting.
                pending.retain(|_, p| !p.reply.is_closed());
            }
            _ = tokio::time::sleep_until(last_received + heartbeat.dead_after) => {
                tracing::warn!(silent_for = ?heartbeat.dead_after, "server stopped answering");
                break lost(revoked_until);
            }
            _ = &mut writer => break lost(revoked_until),
        }
    };

    for (_, in_flight) in pending.drain() {
        let _ = in_flight.reply.send(Err(ClientError::Disconnected));
    }
    drop(outgoing);
    if end == LinkEnd::ClosedByUser {
        // Let the writer send the TLS close_notify, briefly.
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
    }
    writer.abort();
    end
}

/// How long to wait for the server to close after revoking this session.
const REVOKED_GRACE: Duration = Duration::from_secs(1);

/// Handles one frame from the server; `Some` when it ends the link.
fn on_frame(
    shared: &Shared,
    frame: pb::ServerFrame,
    pending: &mut HashMap<u64, InFlight>,
) -> Option<LinkEnd> {
    use pb::server_frame::Body;
    match (frame.request_id, frame.body) {
        (0, Some(Body::Event(pb::Event { kind: Some(kind) }))) => {
            let revoked = matches!(&kind, pb::event::Kind::SessionRevoked(r)
                if r.session_id == 0 || r.session_id == shared.session().session_id);
            shared.emit(ClientEvent::Server(kind));
            if revoked {
                tracing::info!("this session was revoked by the server");
                return Some(LinkEnd::SessionRevoked);
            }
        }
        (0, Some(Body::Error(error))) => {
            // The server is about to close; the close itself ends the link.
            tracing::warn!(code = ?error.kind(), message = %error.message, "server closing the connection");
            if error.kind() == pb::ErrorCode::SessionInvalid {
                return Some(LinkEnd::SessionRevoked);
            }
        }
        (0, _) => tracing::debug!("ignoring an unknown pushed frame"),
        (id, body) => {
            let Some(in_flight) = pending.remove(&id) else {
                // A pong, or the answer to a request whose caller gave up.
                return None;
            };
            let result = match body {
                Some(Body::Error(error)) => Err(ClientError::Server(error)),
                Some(body) => {
                    apply(shared, in_flight.effect, &body);
                    Ok(body)
                }
                None => Err(ClientError::Protocol("response without a body".into())),
            };
            let _ = in_flight.reply.send(result);
        }
    }
    None
}

fn effect_of(body: &pb::client_frame::Body) -> Effect {
    use pb::client_frame::Body;
    match body {
        Body::Login(_) => Effect::LogIn { token: None },
        Body::Resume(r) => Effect::LogIn {
            token: Some(r.token.clone()),
        },
        Body::Logout(_) => Effect::Logout,
        Body::UpdateProfile(_) => Effect::UpdateProfile,
        _ => Effect::None,
    }
}

/// Updates the session state after a successful response.
fn apply(shared: &Shared, effect: Effect, body: &pb::server_frame::Body) {
    use pb::server_frame::Body;
    let mut session = shared.session();
    match (effect, body) {
        (Effect::LogIn { token }, Body::LoggedIn(logged_in)) => {
            let token = token.unwrap_or_else(|| logged_in.token.clone());
            session.token = (!token.is_empty()).then_some(token);
            session.user = logged_in.user.clone();
            session.session_id = logged_in.session_id;
            session.logged_out = false;
            drop(session);
            // In stream order: the delivery task learns whose cursors it
            // keeps before any event of the new session.
            if let Some(user) = &logged_in.user {
                shared.to_delivery(Inbound::LoggedIn(user.id));
            }
        }
        (Effect::Logout, Body::Ok(_)) => {
            session.token = None;
            session.user = None;
            session.session_id = 0;
            session.logged_out = true;
        }
        (Effect::UpdateProfile, Body::Profile(profile)) if profile.user.is_some() => {
            session.user = profile.user.clone();
        }
        _ => {}
    }
}

/// Writes queued frames, batching whatever is ready into one flush, and
/// closes the TLS stream politely when the queue ends.
async fn write_frames(
    mut sink: SplitSink<Transport, pb::ClientFrame>,
    mut frames: mpsc::Receiver<pb::ClientFrame>,
) -> Result<(), FrameError> {
    while let Some(frame) = frames.recv().await {
        sink.feed(frame).await?;
        while let Ok(frame) = frames.try_recv() {
            sink.feed(frame).await?;
        }
        sink.flush().await?;
    }
    sink.close().await
}
