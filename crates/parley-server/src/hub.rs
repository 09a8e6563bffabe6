//! Who is connected: the registry of live, logged-in connections per user.
//!
//! Fan-out encodes a frame once and hands the same `Bytes` to every
//! connection's bounded queue with `try_send`. A full queue means the reader is
//! too slow: that connection is closed instead of letting it hold memory or
//! slow anyone else down.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use parley_proto::pb;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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

/// Live connections, keyed by user.
#[derive(Debug)]
pub struct Hub {
    users: Mutex<HashMap<i64, Vec<ConnHandle>>>,
    max_frame_bytes: usize,
    next_conn_id: AtomicU64,
}

impl Hub {
    /// An empty hub encoding frames up to `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Hub {
            users: Mutex::new(HashMap::new()),
            max_frame_bytes,
            next_conn_id: AtomicU64::new(1),
        }
    }

    /// A process-unique connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Vec<ConnHandle>>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a logged-in connection; true when it is the user's first (they came online).
    pub fn attach(&self, user_id: i64, handle: ConnHandle) -> bool {
        let mut users = self.lock();
        let conns = users.entry(user_id).or_default();
        conns.push(handle);
        conns.len() == 1
    }

    /// Removes a connection; true when it was the user's last (they went offline).
    pub fn detach(&self, user_id: i64, conn_id: u64) -> bool {
        let mut users = self.lock();
        let Some(conns) = users.get_mut(&user_id) else {
            return false;
        };
        let before = conns.len();
        conns.retain(|c| c.conn_id != conn_id);
        let removed = conns.len() < before;
        if conns.is_empty() {
            users.remove(&user_id);
            return removed;
        }
        false
    }

    /// True while the user has at least one logged-in connection.
    pub fn is_online(&self, user_id: i64) -> bool {
        self.lock().contains_key(&user_id)
    }

    /// Number of users online.
    pub fn online_users(&self) -> usize {
        self.lock().len()
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

    /// Pushes `frame` to every connection of `user_id`.
    pub fn push(&self, user_id: i64, frame: &pb::ServerFrame) {
        if let Some(bytes) = self.encode(frame) {
            self.push_encoded(&[user_id], &bytes);
        }
    }

    /// Pushes an encoded frame to every connection of each user in `user_ids`.
    pub fn push_encoded(&self, user_ids: &[i64], bytes: &Bytes) {
        let users = self.lock();
        for uid in user_ids {
            for c in users.get(uid).into_iter().flatten() {
                c.offer(Outbound::Frame(bytes.clone()));
            }
        }
    }

    /// Sends `frame` to the connections of `session_id` and closes them.
    pub fn end_session(&self, user_id: i64, session_id: i64, frame: &pb::ServerFrame) {
        let Some(bytes) = self.encode(frame) else { return };
        let users = self.lock();
        for c in users.get(&user_id).into_iter().flatten() {
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
