//! In-memory view of who belongs to which conversation, and which direct pairs
//! may talk.
//!
//! Every message needs "is the sender a member?" and "who gets it?"; asking
//! the database each time would cost more than the insert itself. Entries are
//! loaded on first use and dropped whenever membership or a friendship/block
//! changes, so the database stays the source of truth.
//!
//! Each node has its own cache. In a cluster, every invalidation is also
//! published to the other nodes (through the link set with
//! [`ConvCache::set_link`]), which apply it with the `*_local` methods; after
//! a NATS reconnect, when invalidations may have been missed, the node empties
//! its cache ([`ConvCache::clear`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use parley_store::{ConvKind, Store, StoreError};

use crate::cluster::{Link, wire::Record};

/// Entries kept before the cache is simply emptied (bounded memory, no LRU bookkeeping).
const MAX_ENTRIES: usize = 200_000;

/// Membership of one conversation.
#[derive(Debug)]
pub struct ConvInfo {
    pub kind: ConvKind,
    /// Member user ids, sorted.
    pub members: Vec<i64>,
}

impl ConvInfo {
    /// True when `user_id` is a member.
    pub fn has(&self, user_id: i64) -> bool {
        self.members.binary_search(&user_id).is_ok()
    }

    /// For a direct conversation: the member that is not `user_id`.
    pub fn peer_of(&self, user_id: i64) -> Option<i64> {
        (self.kind == ConvKind::Direct)
            .then(|| self.members.iter().copied().find(|m| *m != user_id))
            .flatten()
    }
}

/// The cache.
#[derive(Debug, Default)]
pub struct ConvCache {
    convs: Mutex<HashMap<i64, Arc<ConvInfo>>>,
    direct: Mutex<HashMap<(i64, i64), bool>>,
    link: OnceLock<Link>,
}

fn pair(a: i64, b: i64) -> (i64, i64) {
    (a.min(b), a.max(b))
}

impl ConvCache {
    /// Membership of `conv_id`; `Ok(None)` when the conversation does not exist.
    pub async fn get(&self, store: &Store, conv_id: i64) -> Result<Option<Arc<ConvInfo>>, StoreError> {
        if let Some(info) = self.convs.lock().unwrap_or_else(|p| p.into_inner()).get(&conv_id) {
            return Ok(Some(info.clone()));
        }
        let Some(conv) = store.conversation(conv_id).await? else {
            return Ok(None);
        };
        let mut members: Vec<i64> = store
            .members(conv_id)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        members.sort_unstable();
        let info = Arc::new(ConvInfo {
            kind: conv.kind,
            members,
        });
        let mut map = self.convs.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(conv_id, info.clone());
        Ok(Some(info))
    }

    /// Publishes invalidations to the other nodes of the cluster from now on.
    pub fn set_link(&self, link: Link) {
        if self.link.set(link).is_err() {
            tracing::warn!("cluster link set twice; keeping the first");
        }
    }

    /// Forgets `conv_id` after a membership change, on every node.
    pub fn invalidate(&self, conv_id: i64) {
        self.invalidate_local(conv_id);
        if let Some(link) = self.link.get() {
            link.send(Record::InvalidateConv(conv_id));
        }
    }

    /// Forgets `conv_id` on this node.
    pub fn invalidate_local(&self, conv_id: i64) {
        self.convs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&conv_id);
    }

    /// Forgets everything (invalidations from other nodes may have been missed).
    pub fn clear(&self) {
        self.convs.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.direct.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// True when `a` and `b` are friends and neither blocked the other.
    pub async fn direct_allowed(&self, store: &Store, a: i64, b: i64) -> Result<bool, StoreError> {
        let key = pair(a, b);
        if let Some(ok) = self.direct.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(*ok);
        }
        let ok = store.are_friends(a, b).await?
            && !store.is_blocked(a, b).await?
            && !store.is_blocked(b, a).await?;
        let mut map = self.direct.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key, ok);
        Ok(ok)
    }

    /// Forgets the pair after a friendship or block change, on every node.
    pub fn invalidate_pair(&self, a: i64, b: i64) {
        self.invalidate_pair_local(a, b);
        if let Some(link) = self.link.get() {
            link.send(Record::InvalidatePair(a, b));
        }
    }

    /// Forgets the pair on this node.
    pub fn invalidate_pair_local(&self, a: i64, b: i64) {
        self.direct
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pair(a, b));
    }
}
