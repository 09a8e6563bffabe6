//! Snowflake-style id generator: every row id in Parley is made here, not by the database.
//!
//! App-generated ids let a message, its file and its push all carry the id before the insert
//! commits, keep ids unique across nodes sharing one MySQL, and keep both engines identical.
//! Layout (63 bits, always positive): milliseconds since 2024-01-01 UTC `<< 22`, node id
//! (10 bits) `<< 12`, per-millisecond sequence (12 bits). Ids are strictly increasing per
//! generator even if the wall clock steps backwards: we keep counting from the last issued
//! millisecond (borrowing from the future when a millisecond's 4096 sequence numbers run out).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// 2024-01-01T00:00:00Z in milliseconds since the Unix epoch.
pub const ID_EPOCH_MS: u64 = 1_704_067_200_000;
/// Largest node id that fits in the 10 node bits.
pub const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;

const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
/// 41 bits of milliseconds (~69 years from the epoch) keep the id below 2^63.
const MS_MASK: u64 = (1 << 41) - 1;

/// Thread-safe, lock-free generator of unique, increasing `i64` ids for one node.
#[derive(Debug)]
pub struct IdGenerator {
    node: u64,
    /// Last issued `(ms << SEQ_BITS) | seq`, so one compare-and-swap advances both.
    last: AtomicU64,
}

impl IdGenerator {
    /// A generator for `node_id`, or `None` if it does not fit in 10 bits (> [`MAX_NODE_ID`]).
    pub fn new(node_id: u16) -> Option<Self> {
        (node_id <= MAX_NODE_ID).then(|| Self {
            node: u64::from(node_id),
            last: AtomicU64::new(0),
        })
    }

    /// The next id: unique for this generator and greater than every id it issued before.
    pub fn next_id(&self) -> i64 {
        self.next_at(now_since_epoch_ms())
    }

    /// [`IdGenerator::next_id`] with the clock passed in (`ms` since [`ID_EPOCH_MS`]), for tests.
    fn next_at(&self, now_ms: u64) -> i64 {
        let now = (now_ms & MS_MASK) << SEQ_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            // A new millisecond starts at sequence 0; otherwise (same millisecond, or the clock
            // went backwards) continue after the last issued value, carrying into the ms bits.
            let next = if now > last { now } else { last + 1 };
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return self.compose(next),
                Err(actual) => last = actual,
            }
        }
    }

    fn compose(&self, ms_seq: u64) -> i64 {
        let ms = (ms_seq >> SEQ_BITS) & MS_MASK;
        let seq = ms_seq & SEQ_MASK;
        let id = (ms << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | seq;
        // ms is masked to 41 bits, so the id fits in 63 bits and is non-negative.
        id as i64
    }
}

/// Milliseconds since [`ID_EPOCH_MS`]; 0 if the clock reads earlier than that.
fn now_since_epoch_ms() -> u64 {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    u64::try_from(unix_ms)
        .unwrap_or(u64::MAX)
        .saturating_sub(ID_EPOCH_MS)
}

/// The node id encoded in an id made by [`IdGenerator`].
pub fn node_of(id: i64) -> u16 {
    ((id as u64 >> SEQ_BITS) & u64::from(MAX_NODE_ID)) as u16
}

/// Unix-epoch milliseconds at which an id made by [`IdGenerator`] was issued (approximately:
/// ids issued after the clock stepped back or a sequence overflowed run slightly ahead).
pub fn unix_ms_of(id: i64) -> i64 {
    ((id as u64 >> (NODE_BITS + SEQ_BITS)) + ID_EPOCH_MS) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_node_ids_over_ten_bits() {
        assert!(IdGenerator::new(MAX_NODE_ID).is_some());
        assert!(IdGenerator::new(MAX_NODE_ID + 1).is_none());
    }

    #[test]
    fn layout_round_trips() {
        let g = IdGenerator::new(7).unwrap();
        let id = g.next_at(1_000);
        assert_eq!(node_of(id), 7);
        assert_eq!(unix_ms_of(id), ID_EPOCH_MS as i64 + 1_000);
        assert_eq!(id & 0xfff, 0);
    }

    #[test]
    fn monotonic_when_clock_goes_backwards_and_sequence_overflows() {
        let g = IdGenerator::new(1).unwrap();
        let mut prev = g.next_at(10_000);
        // Clock steps back 5 s: ids keep increasing.
        for _ in 0..10 {
            let id = g.next_at(5_000);
            assert!(id > prev);
            prev = id;
        }
        // More than 4096 ids in one millisecond: borrow the next millisecond, stay unique.
        for _ in 0..5_000 {
            let id = g.next_at(20_000);
            assert!(id > prev);
            assert_eq!(node_of(id), 1);
            prev = id;
        }
        assert_eq!(unix_ms_of(prev), ID_EPOCH_MS as i64 + 20_001);
    }
}
