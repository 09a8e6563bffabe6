//! Which users are connected to which *other* node, as this node believes: a
//! state machine fed with what arrives from NATS and the time, with no I/O.
//!
//! Each node publishes a numbered change whenever a user's first connection to
//! it arrives or its last one leaves, and a heartbeat carrying the current
//! number. Core NATS may drop a message (a slow consumer, a reconnect), so a
//! receiver applies changes only in unbroken order; any break (a skipped
//! number, a heartbeat ahead of what it has, a restarted node) makes it ask
//! that node for a full snapshot instead. A node not heard from for the
//! configured timeout is taken as dead: all its users leave at once. The view
//! therefore converges to the truth within about one heartbeat after any loss,
//! and within the timeout after a crash.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// A user joined or left a remote node (not necessarily the cluster: the hub decides that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Joined(i64),
    Left(i64),
}

/// What the driver must do after an input.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub changes: Vec<Change>,
    /// Ask this node for a snapshot (it is out of step).
    pub request_snapshot: bool,
}

#[derive(Debug)]
struct NodeView {
    instance: u64,
    /// The last change applied; meaningful only when `synced`.
    version: u64,
    synced: bool,
    users: HashSet<i64>,
    last_heard: Instant,
    /// When a snapshot was last asked for, so a slow answer is not asked for again at once.
    requested_at: Option<Instant>,
}

/// The remote nodes and their users.
#[derive(Debug)]
pub struct RemoteNodes {
    nodes: HashMap<u16, NodeView>,
    /// How long to wait for a snapshot before asking again.
    retry: Duration,
}

impl RemoteNodes {
    /// An empty view that re-asks for a snapshot after `retry` without an answer.
    pub fn new(retry: Duration) -> Self {
        RemoteNodes {
            nodes: HashMap::new(),
            retry,
        }
    }

    /// Ids of the nodes currently believed alive.
    pub fn live_nodes(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes.keys().copied()
    }

    /// The node's view for `instance`, resetting it (all its users leave) when the node restarted.
    fn node(&mut self, node: u16, instance: u64, now: Instant, out: &mut Outcome) -> &mut NodeView {
        let view = self.nodes.entry(node).or_insert_with(|| NodeView {
            instance,
            version: 0,
            synced: false,
            users: HashSet::new(),
            last_heard: now,
            requested_at: None,
        });
        if view.instance != instance {
            out.changes.extend(view.users.drain().map(Change::Left));
            view.instance = instance;
            view.synced = false;
            view.requested_at = None;
        }
        view.last_heard = now;
        view
    }

    fn wants_snapshot(view: &mut NodeView, now: Instant, retry: Duration) -> bool {
        if view.requested_at.is_some_and(|t| now.duration_since(t) < retry) {
            return false;
        }
        view.requested_at = Some(now);
        true
    }

    /// A heartbeat from `node` at presence `version`.
    pub fn heartbeat(&mut self, node: u16, instance: u64, version: u64, now: Instant) -> Outcome {
        let retry = self.retry;
        let mut out = Outcome::default();
        let view = self.node(node, instance, now, &mut out);
        // Behind what we applied is harmless (the heartbeat was queued before a change).
        if !view.synced || version > view.version {
            view.synced = false;
            out.request_snapshot = Self::wants_snapshot(view, now, retry);
        }
        out
    }

    /// A presence change from `node`.
    pub fn change(
        &mut self,
        node: u16,
        instance: u64,
        version: u64,
        user_id: i64,
        online: bool,
        now: Instant,
    ) -> Outcome {
        let retry = self.retry;
        let mut out = Outcome::default();
        let view = self.node(node, instance, now, &mut out);
        if view.synced && version <= view.version {
            return out; // already reflected (a snapshot overtook it)
        }
        if !view.synced || version != view.version + 1 {
            view.synced = false;
            out.request_snapshot = Self::wants_snapshot(view, now, retry);
            return out;
        }
        view.version = version;
        let changed = if online {
            view.users.insert(user_id)
        } else {
            view.users.remove(&user_id)
        };
        if changed {
            out.changes.push(if online {
                Change::Joined(user_id)
            } else {
                Change::Left(user_id)
            });
        }
        out
    }

    /// A complete snapshot of `node` at `version`.
    pub fn snapshot(
        &mut self,
        node: u16,
        instance: u64,
        version: u64,
        users: HashSet<i64>,
        now: Instant,
    ) -> Outcome {
        let mut out = Outcome::default();
        let view = self.node(node, instance, now, &mut out);
        if view.synced && version <= view.version {
            return out; // older than what changes already brought
        }
        out.changes
            .extend(view.users.difference(&users).map(|u| Change::Left(*u)));
        out.changes
            .extend(users.difference(&view.users).map(|u| Change::Joined(*u)));
        view.users = users;
        view.version = version;
        view.synced = true;
        view.requested_at = None;
        out
    }

    /// `node` said goodbye, or is gone for another reason: all its users leave.
    pub fn remove(&mut self, node: u16) -> Vec<Change> {
        self.nodes
            .remove(&node)
            .map(|v| v.users.into_iter().map(Change::Left).collect())
            .unwrap_or_default()
    }

    /// Drops nodes not heard from within `timeout` (crashed or cut off); their users leave.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> (Vec<u16>, Vec<Change>) {
        let dead: Vec<u16> = self
            .nodes
            .iter()
            .filter(|(_, v)| now.duration_since(v.last_heard) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        let changes = dead.iter().flat_map(|id| self.remove(*id)).collect();
        (dead, changes)
    }

    /// Forgets that snapshots were asked for, so the next heartbeat asks again (after a reconnect).
    pub fn resync_all(&mut self) {
        for v in self.nodes.values_mut() {
            v.synced = false;
            v.requested_at = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRY: Duration = Duration::from_secs(2);

    fn set(users: &[i64]) -> HashSet<i64> {
        users.iter().copied().collect()
    }

    #[test]
    fn unknown_node_is_synced_by_snapshot_then_follows_changes() {
        let t = Instant::now();
        let mut v = RemoteNodes::new(RETRY);
        let hb = v.heartbeat(2, 100, 5, t);
        assert!(hb.request_snapshot);
        assert!(!v.heartbeat(2, 100, 5, t).request_snapshot, "asked already");
        let snap = v.snapshot(2, 100, 5, set(&[7, 8]), t);
        assert_eq!(snap.changes.len(), 2);
        assert_eq!(v.change(2, 100, 6, 9, true, t).changes, vec![Change::Joined(9)]);
        assert_eq!(v.change(2, 100, 7, 7, false, t).changes, vec![Change::Left(7)]);
        assert_eq!(v.change(2, 100, 7, 7, false, t), Outcome::default(), "duplicate");
        assert_eq!(v.heartbeat(2, 100, 7, t), Outcome::default());
    }

    #[test]
    fn a_lost_change_asks_for_a_snapshot() {
        let t = Instant::now();
        let mut v = RemoteNodes::new(RETRY);
        v.snapshot(2, 1, 10, set(&[1]), t);
        let gap = v.change(2, 1, 12, 5, true, t);
        assert!(gap.request_snapshot);
        assert!(gap.changes.is_empty());
        // Out of step: later changes wait for the snapshot.
        assert!(v.change(2, 1, 13, 6, true, t).changes.is_empty());
        let snap = v.snapshot(2, 1, 13, set(&[1, 5, 6]), t);
        let mut joined = snap.changes.clone();
        joined.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(joined, vec![Change::Joined(5), Change::Joined(6)]);
        // A heartbeat ahead of the applied version also means something was lost.
        assert!(v.heartbeat(2, 1, 15, t + RETRY).request_snapshot);
    }

    #[test]
    fn a_restarted_node_loses_its_users() {
        let t = Instant::now();
        let mut v = RemoteNodes::new(RETRY);
        v.snapshot(3, 1, 1, set(&[4]), t);
        let hb = v.heartbeat(3, 2, 0, t);
        assert_eq!(hb.changes, vec![Change::Left(4)]);
        assert!(hb.request_snapshot);
    }

    #[test]
    fn silent_nodes_expire_and_their_users_leave() {
        let t = Instant::now();
        let mut v = RemoteNodes::new(RETRY);
        v.snapshot(1, 1, 1, set(&[10, 11]), t);
        v.snapshot(2, 1, 1, set(&[12]), t);
        v.heartbeat(2, 1, 1, t + Duration::from_secs(4));
        let (dead, mut gone) = v.expire(t + Duration::from_secs(5), Duration::from_secs(5));
        gone.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(dead, vec![1]);
        assert_eq!(gone, vec![Change::Left(10), Change::Left(11)]);
        assert_eq!(v.live_nodes().collect::<Vec<_>>(), vec![2]);
        assert_eq!(v.remove(2), vec![Change::Left(12)]);
    }
}
