//! Routing between nodes: how a push to a user reaches the user's devices on
//! every node of a cluster, and how presence and cache invalidations follow.
//!
//! There are two routes behind the one hub API (`push`, `push_encoded`,
//! `end_session`): in-process, the default, where the hub has no link and
//! nothing else happens; and NATS (`--cluster nats://…`), where the hub and
//! the membership cache also hand each push, session end, presence change and
//! invalidation to a [`Link`]. One publisher task batches whatever is queued
//! into one NATS message on this node's subject `<cluster>.node.<id>`; every
//! node subscribes to `<cluster>.node.*` and delivers to its own connections.
//!
//! Subjects are per node, not per user: a push is published once, whatever
//! the number of recipients, and a node needs two subscriptions, not one per
//! connected user (a per-user subscription would cost each node a channel per
//! user, and a user who just connected could miss an event published before
//! their subscription reached every server). The price is that every node
//! receives every push and filters by its local users, which is the same hash
//! lookup per recipient it does for its own pushes: cheap for the handful of
//! nodes one shared database can carry. See `docs/scale-out.md`.
//!
//! Presence: each node numbers its local changes and sends a heartbeat; the
//! view of other nodes ([`presence::RemoteNodes`]) resynchronises from a
//! snapshot when a change was lost and drops a node that stopped beating.
//! Every node derives "came online"/"went offline" from its own view and tells
//! only its *own* connected friends, so each device hears a transition once
//! whatever the number of nodes.

pub mod presence;
pub mod wire;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::service::{Ctx, now_ms};
use presence::{Change, Outcome, RemoteNodes};
use wire::{Record, SnapshotPage};

/// Users per snapshot page (8 bytes each: about 480 KB, under NATS's default 1 MB payload).
const SNAPSHOT_PAGE: usize = 60_000;
/// Records drained from the queue into one NATS message at most.
const BATCH_RECORDS: usize = 512;
/// Bytes of one batch before it is published and a new one started.
const BATCH_BYTES: usize = 256 * 1024;

/// The sending side of the cluster: the hub and the cache queue records here.
#[derive(Debug, Clone)]
pub struct Link {
    tx: mpsc::Sender<Record>,
}

impl Link {
    /// Queues a record for the other nodes without waiting. The queue is bounded: when NATS
    /// is unreachable long enough to fill it, records are dropped and counted; devices on
    /// other nodes then catch up by sync, and presence by snapshot.
    pub fn send(&self, record: Record) {
        if let Err(e) = self.tx.try_send(record) {
            metrics::counter!("parley_cluster_dropped_total").increment(1);
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                tracing::warn!("cluster queue full: record to other nodes dropped");
            }
        }
    }
}

#[cfg(test)]
impl Link {
    /// A link whose records land in the returned receiver, for unit tests.
    pub(crate) fn for_test(capacity: usize) -> (Link, mpsc::Receiver<Record>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Link { tx }, rx)
    }
}

/// This node's membership of a cluster; [`Node::leave`] ends it.
pub struct Node {
    link: Link,
    publisher: JoinHandle<()>,
    receiver: JoinHandle<()>,
    stop: CancellationToken,
}

impl Node {
    /// Tells the other nodes this one is leaving, publishes what is still queued, and stops.
    pub async fn leave(self) {
        // Sent with waiting, unlike pushes: it must not be lost to a full queue.
        let _ = self.link.tx.send(Record::Bye).await;
        drop(self.link);
        if tokio::time::timeout(Duration::from_secs(5), self.publisher)
            .await
            .is_err()
        {
            tracing::warn!("cluster publisher did not finish in time");
        }
        self.stop.cancel();
        let _ = self.receiver.await;
    }
}

/// Subject prefixes of one cluster.
#[derive(Clone)]
struct Subjects {
    name: String,
}

impl Subjects {
    fn node(&self, id: u16) -> String {
        format!("{}.node.{id}", self.name)
    }
    fn all_nodes(&self) -> String {
        format!("{}.node.*", self.name)
    }
    fn snapshot(&self, id: u16) -> String {
        format!("{}.snap.{id}", self.name)
    }
    fn inbox(&self, id: u16) -> String {
        format!("{}.inbox.{id}.{:016x}", self.name, rand::random::<u64>())
    }
}

/// Connects to NATS, subscribes, links the hub and the cache, and starts the tasks.
/// Call before accepting clients, so no presence change happens unpublished.
pub async fn join(ctx: Arc<Ctx>, url: &str) -> anyhow::Result<Node> {
    let node_id = ctx.cfg.node_id;
    let subjects = Subjects {
        name: ctx.cfg.cluster_name.clone(),
    };
    let (events_tx, events_rx) = mpsc::channel::<async_nats::Event>(64);
    let client = async_nats::ConnectOptions::new()
        // Our own batches are delivered locally already; NATS need not echo them back.
        .no_echo()
        .name(format!("parley {} node {node_id}", subjects.name))
        .event_callback(move |event| {
            let tx = events_tx.clone();
            async move {
                let _ = tx.try_send(event);
            }
        })
        .connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))?;
    let nodes = client
        .subscribe(subjects.all_nodes())
        .await
        .context("subscribing to the cluster's node subjects")?;
    let snapshots = client
        .subscribe(subjects.snapshot(node_id))
        .await
        .context("subscribing to snapshot requests")?;
    client.flush().await.context("flushing NATS subscriptions")?;

    let instance = rand::random::<u64>();
    let (tx, rx) = mpsc::channel(ctx.cfg.cluster_queue);
    let link = Link { tx };
    ctx.hub.set_link(link.clone());
    ctx.convs.set_link(link.clone());
    let stop = CancellationToken::new();
    let max_payload = client.server_info().max_payload;
    let publisher = tokio::spawn(publish(
        client.clone(),
        rx,
        instance,
        subjects.node(node_id),
        max_payload,
    ));
    let receiver = tokio::spawn(
        Receiver {
            view: RemoteNodes::new(ctx.cfg.cluster_heartbeat * 2),
            ctx,
            client,
            subjects,
            node_id,
            instance,
            duplicate_warned: HashSet::new(),
        }
        .run(nodes, snapshots, events_rx, stop.clone()),
    );
    tracing::info!(node_id, instance, "joined the cluster");
    Ok(Node {
        link,
        publisher,
        receiver,
        stop,
    })
}

/// Drains the queue into batches and publishes them, in queue order, until a `Bye` is sent.
async fn publish(
    client: async_nats::Client,
    mut rx: mpsc::Receiver<Record>,
    instance: u64,
    subject: String,
    max_payload: usize,
) {
    let limit = BATCH_BYTES.min(max_payload.saturating_sub(1024)).max(1024);
    let subject = async_nats::Subject::from(subject);
    let mut records = Vec::with_capacity(BATCH_RECORDS);
    let mut buf = BytesMut::new();
    let mut leaving = false;
    while !leaving && rx.recv_many(&mut records, BATCH_RECORDS).await > 0 {
        wire::begin_batch(instance, &mut buf);
        for record in records.drain(..) {
            leaving |= record == Record::Bye;
            let start = buf.len();
            wire::put_record(&record, &mut buf);
            if buf.len() > limit && start > wire::BATCH_HEADER {
                // Publish what came before this record; it starts the next batch.
                let rest = buf.split_off(start);
                send(&client, &subject, buf.split().freeze()).await;
                wire::begin_batch(instance, &mut buf);
                buf.extend_from_slice(&rest);
            }
        }
        send(&client, &subject, buf.split().freeze()).await;
    }
    if let Err(e) = client.flush().await {
        tracing::warn!(error = %e, "could not flush NATS on leaving");
    }
}

async fn send(client: &async_nats::Client, subject: &async_nats::Subject, payload: Bytes) {
    metrics::counter!("parley_cluster_batches_published_total").increment(1);
    if let Err(e) = client.publish(subject.clone(), payload).await {
        metrics::counter!("parley_cluster_publish_errors_total").increment(1);
        tracing::warn!(error = %e, "publishing to the cluster failed");
    }
}

/// A finished (or failed) snapshot fetch.
struct Fetched {
    node: u16,
    snapshot: Option<(u64, u64, HashSet<i64>)>,
}

/// The receiving side: other nodes' batches, snapshot requests, heartbeats, node expiry.
struct Receiver {
    ctx: Arc<Ctx>,
    client: async_nats::Client,
    subjects: Subjects,
    node_id: u16,
    instance: u64,
    view: RemoteNodes,
    /// Instances already reported as using our node id.
    duplicate_warned: HashSet<u64>,
}

impl Receiver {
    async fn run(
        mut self,
        mut nodes: async_nats::Subscriber,
        mut snapshots: async_nats::Subscriber,
        mut events: mpsc::Receiver<async_nats::Event>,
        stop: CancellationToken,
    ) {
        let (fetched_tx, mut fetched) = mpsc::channel::<Fetched>(16);
        let mut tick = tokio::time::interval(self.ctx.cfg.cluster_heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                msg = nodes.next() => match msg {
                    Some(msg) => self.on_batch(msg, &fetched_tx),
                    None => return,
                },
                req = snapshots.next() => match req {
                    Some(req) => self.answer_snapshot(req).await,
                    None => return,
                },
                Some(done) = fetched.recv() => {
                    if let Some((instance, version, users)) = done.snapshot {
                        let out = self.view.snapshot(done.node, instance, version, users, Instant::now());
                        self.apply(out, done.node, &fetched_tx);
                    }
                }
                Some(event) = events.recv() => self.on_event(event),
                _ = tick.tick() => {
                    self.ctx.hub.heartbeat();
                    let (dead, changes) = self.view.expire(Instant::now(), self.ctx.cfg.cluster_node_timeout);
                    for node in dead {
                        tracing::warn!(node, "node stopped sending heartbeats: taking it as gone");
                        metrics::counter!("parley_cluster_nodes_expired_total").increment(1);
                    }
                    self.transitions(changes, true);
                }
            }
        }
    }

    fn on_event(&mut self, event: async_nats::Event) {
        match event {
            async_nats::Event::Connected => {
                // Anything published while we were away is lost: drop what it may have
                // invalidated and resynchronise presence at the next heartbeats.
                tracing::info!("connected to NATS");
                self.ctx.convs.clear();
                self.view.resync_all();
            }
            async_nats::Event::SlowConsumer(_) => {
                metrics::counter!("parley_cluster_slow_consumer_total").increment(1);
                tracing::warn!("NATS dropped messages for this node (slow consumer): resynchronising");
                self.ctx.convs.clear();
                self.view.resync_all();
            }
            other => tracing::info!(event = %other, "NATS connection event"),
        }
    }

    fn on_batch(&mut self, msg: async_nats::Message, fetched: &mpsc::Sender<Fetched>) {
        let Some(node) = msg
            .subject
            .rsplit('.')
            .next()
            .and_then(|id| id.parse::<u16>().ok())
        else {
            return;
        };
        let (instance, records) = match wire::decode_batch(msg.payload) {
            Ok(batch) => batch,
            Err(e) => {
                metrics::counter!("parley_cluster_bad_batches_total").increment(1);
                tracing::warn!(node, error = %e, "undecodable batch from the cluster");
                return;
            }
        };
        let same_id = node == self.node_id;
        if same_id && self.duplicate_warned.insert(instance) {
            tracing::error!(
                node,
                "another node uses this node's id: generated ids may collide; give every node its own --node-id"
            );
        }
        let now = Instant::now();
        for record in records {
            match record {
                Record::Push { users, frame } => self.ctx.hub.push_local(&users, &frame),
                Record::EndSession {
                    user_id,
                    session_id,
                    frame,
                } => self.ctx.hub.end_session_local(user_id, session_id, &frame),
                Record::InvalidateConv(conv_id) => self.ctx.convs.invalidate_local(conv_id),
                Record::InvalidatePair(a, b) => self.ctx.convs.invalidate_pair_local(a, b),
                // Presence from a node with our own id would corrupt the view; skip it.
                _ if same_id => {}
                Record::Presence {
                    user_id,
                    online,
                    version,
                } => {
                    let out = self.view.change(node, instance, version, user_id, online, now);
                    self.apply(out, node, fetched);
                }
                Record::Heartbeat { version } => {
                    let out = self.view.heartbeat(node, instance, version, now);
                    self.apply(out, node, fetched);
                }
                Record::Bye => {
                    tracing::info!(node, "node left the cluster");
                    let changes = self.view.remove(node);
                    self.transitions(changes, false);
                }
            }
        }
    }

    fn apply(&mut self, out: Outcome, node: u16, fetched: &mpsc::Sender<Fetched>) {
        if out.request_snapshot {
            tokio::spawn(fetch_snapshot(
                self.client.clone(),
                self.subjects.clone(),
                self.node_id,
                node,
                self.ctx.cfg.cluster_heartbeat * 2,
                fetched.clone(),
            ));
        }
        self.transitions(out.changes, false);
    }

    /// Turns per-node changes into cluster-wide transitions and tells local friends.
    /// `node_gone`: the node could not record last-seen itself, so the surviving node with
    /// the lowest id does.
    fn transitions(&self, changes: Vec<Change>, node_gone: bool) {
        if changes.is_empty() {
            return;
        }
        let record_last_seen = node_gone && self.view.live_nodes().all(|n| n > self.node_id);
        let at = now_ms();
        for change in changes {
            let (user_id, went_online, transition) = match change {
                Change::Joined(u) => (u, true, self.ctx.hub.remote_joined(u)),
                Change::Left(u) => (u, false, self.ctx.hub.remote_left(u)),
            };
            if !transition {
                continue;
            }
            let ctx = self.ctx.clone();
            tokio::spawn(async move {
                if !went_online
                    && record_last_seen
                    && let Err(e) = ctx.store.set_last_seen(user_id, at).await
                {
                    tracing::warn!(error = %e, "could not record last seen");
                }
                crate::service::broadcast_presence(&ctx, user_id, went_online, at).await;
            });
        }
    }

    async fn answer_snapshot(&self, req: async_nats::Message) {
        let Some(reply) = req.reply else { return };
        let (version, users) = self.ctx.hub.local_snapshot();
        let pages = users.len().div_ceil(SNAPSHOT_PAGE).max(1);
        let mut chunks: Vec<&[i64]> = users.chunks(SNAPSHOT_PAGE).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for (page, chunk) in chunks.into_iter().enumerate() {
            let page = SnapshotPage {
                instance: self.instance,
                version,
                page: u32::try_from(page).unwrap_or(u32::MAX),
                pages: u32::try_from(pages).unwrap_or(u32::MAX),
                users: chunk.to_vec(),
            };
            if let Err(e) = self.client.publish(reply.clone(), page.encode()).await {
                tracing::warn!(error = %e, "could not answer a snapshot request");
                return;
            }
        }
    }
}

/// Asks `node` for its presence snapshot and reports the result (or its absence).
async fn fetch_snapshot(
    client: async_nats::Client,
    subjects: Subjects,
    me: u16,
    node: u16,
    wait: Duration,
    done: mpsc::Sender<Fetched>,
) {
    let snapshot = tokio::time::timeout(wait, async {
        let inbox = subjects.inbox(me);
        let mut sub = client.subscribe(inbox.clone()).await.ok()?;
        client
            .publish_with_reply(subjects.snapshot(node), inbox, Bytes::new())
            .await
            .ok()?;
        let mut users = HashSet::new();
        let mut seen = 0u32;
        let mut head: Option<(u64, u64, u32)> = None;
        while let Some(msg) = sub.next().await {
            let page = SnapshotPage::decode(msg.payload).ok()?;
            let key = (page.instance, page.version, page.pages);
            if *head.get_or_insert(key) != key {
                return None; // pages of two different snapshots: ask again later
            }
            users.extend(page.users);
            seen += 1;
            if seen >= page.pages {
                return Some((page.instance, page.version, users));
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    if snapshot.is_none() {
        tracing::debug!(node, "presence snapshot not received; will ask again");
    }
    let _ = done.send(Fetched { node, snapshot }).await;
}
