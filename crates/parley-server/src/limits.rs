//! Rate limits as keyed token buckets.
//!
//! Sans-IO: every call takes `now`, so tests run hours of traffic without
//! sleeping. A bucket holds `capacity` tokens and refills the whole capacity
//! over `window`; a key that has been full for a while is forgotten, so the map
//! only holds keys that were active recently.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// A set of token buckets, one per key.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    capacity: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// Allows `capacity` events per `window`, in bursts of up to `capacity`.
    pub fn new(capacity: u32, window: Duration) -> Self {
        let capacity = f64::from(capacity.max(1));
        KeyedLimiter {
            capacity,
            per_sec: capacity / window.as_secs_f64().max(0.001),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.capacity);
        b.updated = now;
    }

    fn wait_for_token(&self, b: &Bucket) -> Duration {
        Duration::from_secs_f64(((1.0 - b.tokens) / self.per_sec).max(0.0))
    }

    /// `Ok` when `key` has a token left (without taking it), else how long until it will.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(key) {
            None => Ok(()),
            Some(b) => {
                self.refill(b, now);
                if b.tokens >= 1.0 {
                    Ok(())
                } else {
                    Err(self.wait_for_token(b))
                }
            }
        }
    }

    /// Takes a token for `key` if one is left; else how long until one will be.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.entry(key.clone()).or_insert(Bucket {
            tokens: self.capacity,
            updated: now,
        });
        self.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait_for_token(b))
        }
    }

    /// Forgets `key` (e.g. after a successful login).
    pub fn reset(&self, key: &K) {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }

    /// Drops buckets that have refilled completely: they carry no information.
    pub fn prune(&self, now: Instant) {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (capacity, per_sec) = (self.capacity, self.per_sec);
        map.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
            b.tokens + elapsed * per_sec < capacity
        });
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_then_refill() {
        let t0 = Instant::now();
        let lim = KeyedLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(lim.take(&"alice", t0).is_ok());
        }
        let wait = lim.take(&"alice", t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(lim.check(&"alice", t0).is_err());
        assert!(lim.check(&"bob", t0).is_ok(), "keys are independent");
        assert!(lim.take(&"alice", t0 + Duration::from_secs(20)).is_ok());
    }

    #[test]
    fn prune_forgets_refilled_keys() {
        let t0 = Instant::now();
        let lim = KeyedLimiter::new(2, Duration::from_secs(10));
        lim.take(&1u32, t0).unwrap();
        lim.prune(t0 + Duration::from_secs(1));
        assert_eq!(lim.len(), 1);
        lim.prune(t0 + Duration::from_secs(10));
        assert!(lim.is_empty());
    }
}
