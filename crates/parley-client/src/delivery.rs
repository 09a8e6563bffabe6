//! The delivery task: publishes what the connection task reports, with the
//! message stream kept gap-free and duplicate-free.
//!
//! The connection task never waits on anything but the socket, so it cannot
//! fetch a missing range itself. It hands every event and state change to
//! this task instead, which applies the rules of `ordering.rs` and does the
//! fetching (`SyncMessages`, through the ordinary request queue). Items are
//! handled one at a time, in arrival order: while a gap is being filled,
//! later events wait behind it, so every subscriber sees one order.
//!
//! Catch-ups (every conversation synced up to its `max_seq`) run when
//! `login`/`resume` ask for one and after each reconnect. One that fails is
//! retried with backoff; a gap fetch that fails drops the held message, which
//! the retry then brings back because the cursor stayed put.

use std::sync::Arc;
use std::time::Duration;

use parley_proto::pb;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::client::{Client, Shared};
use crate::driver::Request;
use crate::error::ClientError;
use crate::event::{ClientEvent, ConnectionState};
use crate::ordering::Live;

/// Messages per `SyncMessages` page.
pub(crate) const SYNC_PAGE: u32 = 200;
/// First and largest delay before retrying a failed catch-up.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What the delivery task is handed.
// Nearly every item is an `Event`; boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Inbound {
    /// Publish this, in order (messages go through the ordering rules).
    Event(ClientEvent),
    /// A login or resume as this user succeeded.
    LoggedIn(i64),
    /// Catch up on every conversation, then answer.
    CatchUp(oneshot::Sender<()>),
}

struct Delivery {
    shared: Arc<Shared>,
    requests: mpsc::WeakSender<Request>,
    /// When to retry a failed catch-up, and the delay after that one.
    retry_at: Option<Instant>,
    retry_delay: Duration,
}

/// Runs until the connection task has ended and everything queued is published.
pub(crate) async fn run(
    shared: Arc<Shared>,
    requests: mpsc::WeakSender<Request>,
    mut inbox: mpsc::UnboundedReceiver<Inbound>,
) {
    let mut delivery = Delivery {
        shared,
        requests,
        retry_at: None,
        retry_delay: RETRY_FIRST,
    };
    loop {
        let retry_at = delivery.retry_at;
        tokio::select! {
            item = inbox.recv() => match item {
                Some(item) => delivery.handle(item).await,
                None => break,
            },
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                delivery.retry_at = None;
                delivery.catch_up().await;
            }
        }
    }
    tracing::debug!("delivery task finished");
}

impl Delivery {
    async fn handle(&mut self, item: Inbound) {
        let sync = self.shared.config.message_sync;
        match item {
            Inbound::Event(ClientEvent::Server(pb::event::Kind::Message(message))) if sync => {
                self.on_live(message).await;
            }
            Inbound::Event(event) => {
                let reconnected = matches!(event, ClientEvent::State(ConnectionState::Connected));
                self.shared.publish(event);
                if reconnected && sync && self.logged_in() {
                    self.catch_up().await;
                }
            }
            Inbound::LoggedIn(user_id) => self.shared.order().logged_in(user_id),
            Inbound::CatchUp(done) => {
                if sync {
                    self.catch_up().await;
                }
                let _ = done.send(());
            }
        }
    }

    fn logged_in(&self) -> bool {
        self.shared.session().user.is_some()
    }

    /// A client handle for requests, unless every application handle is gone.
    fn client(&self) -> Option<Client> {
        let requests = self.requests.upgrade()?;
        Some(Client::from_parts(self.shared.clone(), requests))
    }

    fn deliver(&self, message: pb::Message) {
        self.shared
            .publish(ClientEvent::Server(pb::event::Kind::Message(message)));
    }

    async fn on_live(&mut self, message: pb::Message) {
        let (conv_id, seq) = (message.conv_id, message.seq);
        let decision = self.shared.order().live(conv_id, seq);
        match decision {
            Live::Deliver => self.deliver(message),
            Live::Drop => tracing::trace!(conv_id, seq, "dropping a message delivered already"),
            Live::Fetch { after, through } => {
                tracing::debug!(conv_id, after, through, "filling a gap in the message stream");
                let Some(client) = self.client() else { return };
                match self.sync_up_to(&client, conv_id, through).await {
                    Ok(()) => {
                        let cursor_before = self.shared.order().cursor(conv_id).unwrap_or(0);
                        if self.shared.order().held(conv_id, seq) {
                            if seq > cursor_before + 1 {
                                tracing::warn!(
                                    conv_id,
                                    seq,
                                    cursor_before,
                                    "the server could not fill a gap"
                                );
                            }
                            self.deliver(message);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(conv_id, error = %err, "could not fill a gap; retrying later");
                        self.schedule_retry();
                    }
                }
            }
        }
    }

    /// Syncs every conversation up to its `max_seq`, delivering what was missed.
    async fn catch_up(&mut self) {
        let Some(client) = self.client() else { return };
        let list = match client.conversations().await {
            Ok(list) => list,
            Err(err) => {
                tracing::warn!(error = %err, "catch-up failed to list conversations");
                self.schedule_retry();
                return;
            }
        };
        let plan = self
            .shared
            .order()
            .plan_catch_up(list.iter().map(|c| (c.id, c.max_seq)));
        for (conv_id, max_seq) in plan {
            match self.sync_up_to(&client, conv_id, max_seq).await {
                Ok(()) => {}
                // Left or removed meanwhile: nothing to catch up on.
                Err(err)
                    if matches!(
                        err.code(),
                        Some(pb::ErrorCode::NotFound | pb::ErrorCode::Forbidden)
                    ) => {}
                Err(err) => {
                    tracing::warn!(conv_id, error = %err, "catch-up failed");
                    self.schedule_retry();
                    return;
                }
            }
        }
        self.retry_at = None;
        self.retry_delay = RETRY_FIRST;
    }

    /// Pages `SyncMessages` from the cursor until it reaches `target` or the
    /// server has nothing more, delivering what is new.
    async fn sync_up_to(&self, client: &Client, conv_id: i64, target: i64) -> Result<(), ClientError> {
        loop {
            let after = self.shared.order().cursor(conv_id).unwrap_or(0);
            if after >= target {
                return Ok(());
            }
            let batch = client.sync(conv_id, after, SYNC_PAGE).await?;
            let has_more = batch.has_more;
            let fresh =
                self.shared
                    .order()
                    .batch(conv_id, after, batch.messages, |m| m.seq, batch.through_seq);
            for message in fresh {
                self.deliver(message);
            }
            let progressed = self.shared.order().cursor(conv_id).unwrap_or(0) > after;
            if !has_more || !progressed {
                return Ok(());
            }
        }
    }

    fn schedule_retry(&mut self) {
        if self.shared.ended.is_cancelled() || !self.logged_in() {
            return;
        }
        if self.retry_at.is_none() {
            self.retry_at = Some(Instant::now() + self.retry_delay);
            self.retry_delay = (self.retry_delay * 2).min(RETRY_MAX);
        }
    }
}
