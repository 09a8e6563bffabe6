//! Who is connected: the registry of live, logged-in connections per user.
//!
//! Fan-out encodes a frame once and hands the same `Bytes` to every
//! connection's bounded queue with `try_send`. A full queue means the reader is
//! too slow: that connection is closed instead of letting it hold memory or
//! slow anyone else down.
//!
//! The push API addresses *users*, wherever they are connected. On a single
//! node that is this registry and nothing more. When the node has joined a
//! cluster ([`Hub::set_link`]), every push, session end and presence change is
//! also handed to the cluster link, which publishes it to the other nodes;
//! they deliver it to their own connections with [`Hub::push_local`] and
//! [`Hub::end_session_local`]. The hub also keeps which users are connected to
//! other nodes, so "online" means online anywhere.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use bytes::{Bytes, BytesMut};
use parley_proto::pb;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Link, wire::Record};

/// What a connection's writer receives.
#[derive(Debug)]
pub enum Outbound {
    /// An encoded frame, length prefix included.
    Frame(Bytes),
    /// Flush what is queued before this, then close.
    Close,
}

/// The hub's handle on one connection.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub conn_id: u64,
    pub session_id: i64,
    pub tx: mpsc::Sender<Outbound>,
    pub kill: CancellationToken,
}

impl ConnHandle {
    /// Queues `bytes`; closes the connection if its queue is full.
    fn offer(&self, out: Outbound) -> bool {
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("parley_slow_reader_disconnects_total").increment(1);
                tracing::info!(conn = self.conn_id, "outbound queue full: closing slow reader");
                self.kill.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// What the hub guards with one lock, so presence transitions are decided atomically.
#[derive(Debug, Default)]
struct Registry {
    /// This node's logged-in connections.
    local: HashMap<i64, Vec<ConnHandle>>,
    /// Users connected to other nodes, with how many nodes each (cluster mode only).
    remote: HashMap<i64, u32>,
    /// Local presence changes so far; each published change carries its number.
    version: u64,
}

/// Live connections, keyed by user.
#[derive(Debug)]
pub struct Hub {
    state: Mutex<Registry>,
    max_frame_bytes: usize,
    next_conn_id: AtomicU64,
    /// Set once when the node joins a cluster; unset, everything stays in this process.
    link: OnceLock<Link>,
}

impl Hub {
    /// An empty hub encoding frames up to `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Hub {
            state: Mutex::new(Registry::default()),
            max_frame_bytes,
            next_conn_id: AtomicU64::new(1),
            link: OnceLock::new(),
        }
    }

    /// Routes pushes, session ends and presence changes through `link` from now on.
    pub fn set_link(&self, link: Link) {
        if self.link.set(link).is_err() {
            tracing::warn!("cluster link set twice; keeping the first");
        }
    }

    /// A process-unique connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers a local presence change and queues it for the other nodes, under the lock so
    /// the numbers reach the link in order.
    fn announce(&self, reg: &mut Registry, user_id: i64, online: bool) {
        if let Some(link) = self.link.get() {
            reg.version += 1;
            link.send(Record::Presence {
                user_id,
                online,
                version: reg.version,
            });
        }
    }

    /// Registers a logged-in connection; true when the user came online (first connection
    /// here, and none on any other node).
    pub fn attach(&self, user_id: i64, handle: ConnHandle) -> bool {
        let mut reg = self.lock();
        let conns = reg.local.entry(user_id).or_default();
        conns.push(handle);
        if conns.len() != 1 {
            return false;
        }
        self.announce(&mut reg, user_id, true);
        !reg.remote.contains_key(&user_id)
    }

    /// Removes a connection; true when the user went offline (it was their last one here,
    /// and they have none on any other node).
    pub fn detach(&self, user_id: i64, conn_id: u64) -> bool {
        let mut reg = self.lock();
        let Some(conns) = reg.local.get_mut(&user_id) else {
            return false;
        };
        let before = conns.len();
        conns.retain(|c| c.conn_id != conn_id);
        let removed = conns.len() < before;
        if conns.is_empty() {
            reg.local.remove(&user_id);
            if removed {
                self.announce(&mut reg, user_id, false);
            }
            return removed && !reg.remote.contains_key(&user_id);
        }
        false
    }

    /// A remote node now has `user_id`; true when the user came online cluster-wide.
    pub fn remote_joined(&self, user_id: i64) -> bool {
        let mut reg = self.lock();
        let nodes = reg.remote.entry(user_id).or_insert(0);
        *nodes += 1;
        *nodes == 1 && !reg.local.contains_key(&user_id)
    }

    /// A remote node no longer has `user_id`; true when the user went offline cluster-wide.
    pub fn remote_left(&self, user_id: i64) -> bool {
        let mut reg = self.lock();
        let Some(nodes) = reg.remote.get_mut(&user_id) else {
            return false;
        };
        *nodes = nodes.saturating_sub(1);
        if *nodes > 0 {
            return false;
        }
        reg.remote.remove(&user_id);
        !reg.local.contains_key(&user_id)
    }

    /// Queues a heartbeat carrying the current presence number.
    pub fn heartbeat(&self) {
        let reg = self.lock();
        if let Some(link) = self.link.get() {
            link.send(Record::Heartbeat { version: reg.version });
        }
    }

    /// The users connected here and the presence number they correspond to.
    pub fn local_snapshot(&self) -> (u64, Vec<i64>) {
        let reg = self.lock();
        (reg.version, reg.local.keys().copied().collect())
    }

    /// True while the user has at least one logged-in connection on any node.
    pub fn is_online(&self, user_id: i64) -> bool {
        let reg = self.lock();
        reg.local.contains_key(&user_id) || reg.remote.contains_key(&user_id)
    }

    /// True while the user has a logged-in connection on this node.
    pub fn is_local(&self, user_id: i64) -> bool {
        self.lock().local.contains_key(&user_id)
    }

    /// Number of users online on this node.
    pub fn online_users(&self) -> usize {
        self.lock().local.len()
    }

    /// Encodes `frame` once; `None` (and a log line) if it exceeds the frame limit.
    pub fn encode(&self, frame: &pb::ServerFrame) -> Option<Bytes> {
        let mut buf = BytesMut::new();
        match parley_proto::frame::encode_frame(frame, self.max_frame_bytes, &mut buf) {
            Ok(()) => Some(buf.freeze()),
            Err(e) => {
                tracing::error!(error = %e, "outgoing frame not encodable");
                None
            }
        }
    }

    /// Pushes `frame` to every connection of `user_id`, on every node.
    pub fn push(&self, user_id: i64, frame: &pb::ServerFrame) {
        if let Some(bytes) = self.encode(frame) {
            self.push_encoded(&[user_id], &bytes);
        }
    }

    /// Pushes an encoded frame to every connection of each user in `user_ids`, on every node.
    pub fn push_encoded(&self, user_ids: &[i64], bytes: &Bytes) {
        self.push_local(user_ids, bytes);
        if let Some(link) = self.link.get() {
            link.send(Record::Push {
                users: user_ids.to_vec(),
                frame: bytes.clone(),
            });
        }
    }

    /// Pushes an encoded frame to this node's connections of each user in `user_ids`.
    pub fn push_local(&self, user_ids: &[i64], bytes: &Bytes) {
        let reg = self.lock();
        for uid in user_ids {
            for c in reg.local.get(uid).into_iter().flatten() {
                c.offer(Outbound::Frame(bytes.clone()));
            }
        }
    }

    /// Sends `frame` to the connections of `session_id` and closes them, on every node.
    pub fn end_session(&self, user_id: i64, session_id: i64, frame: &pb::ServerFrame) {
        let Some(bytes) = self.encode(frame) else { return };
        self.end_session_local(user_id, session_id, &bytes);
        if let Some(link) = self.link.get() {
            link.send(Record::EndSession {
                user_id,
                session_id,
                frame: bytes,
            });
        }
    }

    /// Sends an encoded frame to this node's connections of `session_id` and closes them.
    pub fn end_session_local(&self, user_id: i64, session_id: i64, bytes: &Bytes) {
        let reg = self.lock();
        for c in reg.local.get(&user_id).into_iter().flatten() {
            if c.session_id == session_id && c.offer(Outbound::Frame(bytes.clone())) {
                c.offer(Outbound::Close);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(hub: &Hub, session_id: i64, cap: usize) -> (ConnHandle, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(cap);
        let h = ConnHandle {
            conn_id: hub.next_conn_id(),
            session_id,
            tx,
            kill: CancellationToken::new(),
        };
        (h, rx)
    }

    #[test]
    fn online_while_any_device_is() {
        let hub = Hub::new(1024);
        let (a, _ra) = handle(&hub, 1, 4);
        let (b, _rb) = handle(&hub, 2, 4);
        assert!(hub.attach(7, a.clone()));
        assert!(!hub.attach(7, b.clone()));
        assert!(!hub.detach(7, a.conn_id));
        assert!(hub.is_online(7));
        assert!(hub.detach(7, b.conn_id));
        assert!(!hub.is_online(7));
        assert!(!hub.detach(7, b.conn_id), "second detach is a no-op");
    }

    #[test]
    fn online_means_online_on_any_node() {
        let hub = Hub::new(1024);
        let (a, _ra) = handle(&hub, 1, 4);
        assert!(hub.remote_joined(7), "first seen on another node");
        assert!(!hub.attach(7, a.clone()), "already online elsewhere");
        assert!(!hub.remote_left(7), "still connected here");
        assert!(hub.detach(7, a.conn_id), "gone everywhere");
        assert!(!hub.is_online(7));
        assert!(hub.remote_joined(8));
        assert!(!hub.remote_joined(8), "a second node");
        assert!(!hub.remote_left(8));
        assert!(hub.remote_left(8));
        assert!(!hub.remote_left(8), "unknown user: no transition");
    }

    #[test]
    fn with_a_link_changes_and_pushes_go_to_the_cluster_in_order() {
        let hub = Hub::new(1024);
        let (link, mut records) = Link::for_test(16);
        hub.set_link(link);
        let (a, mut ra) = handle(&hub, 1, 4);
        let (b, _rb) = handle(&hub, 2, 4);
        hub.attach(7, a.clone());
        hub.attach(7, b.clone());
        let frame = pb::ServerFrame::event(pb::event::Kind::FriendRemoved(pb::FriendRemoved { user_id: 3 }));
        hub.push(7, &frame);
        hub.detach(7, a.conn_id);
        hub.detach(7, b.conn_id);
        hub.heartbeat();
        assert!(ra.try_recv().is_ok(), "local delivery is direct");
        let mut got = Vec::new();
        while let Ok(r) = records.try_recv() {
            got.push(r);
        }
        assert_eq!(got.len(), 4);
        assert_eq!(
            got[0],
            Record::Presence {
                user_id: 7,
                online: true,
                version: 1
            }
        );
        assert!(matches!(&got[1], Record::Push { users, .. } if users == &[7]));
        assert_eq!(
            got[2],
            Record::Presence {
                user_id: 7,
                online: false,
                version: 2
            }
        );
        assert_eq!(got[3], Record::Heartbeat { version: 2 });
        assert_eq!(hub.local_snapshot(), (2, vec![]));
    }

    #[test]
    fn slow_reader_is_cut_off_others_unaffected() {
        let hub = Hub::new(1024);
        let (slow, _slow_rx) = handle(&hub, 1, 2);
        let (fast, mut fast_rx) = handle(&hub, 2, 64);
        hub.attach(1, slow.clone());
        hub.attach(2, fast.clone());
        let frame = pb::ServerFrame::event(pb::event::Kind::FriendRemoved(pb::FriendRemoved { user_id: 3 }));
        for _ in 0..10 {
            hub.push(1, &frame);
            hub.push(2, &frame);
        }
        assert!(slow.kill.is_cancelled());
        assert!(!fast.kill.is_cancelled());
        let mut n = 0;
        while fast_rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 10);
    }
}
