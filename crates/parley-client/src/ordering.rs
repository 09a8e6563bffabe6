//! The rules of the gap-free message stream, with no I/O and no clock.
//!
//! [`MessageOrder`] remembers, per conversation, the highest sequence number
//! delivered to the application (its *cursor*). The delivery task
//! (`delivery.rs`) feeds it every message that arrives — pushed live or
//! fetched with `SyncMessages` — and does what it answers: deliver, drop, or
//! first fetch the missing range. Keeping the decisions here lets property
//! tests throw arbitrary arrival orders, duplicates and losses at them.
//!
//! # The rules
//!
//! * A message is delivered only if its seq is above the cursor, and the
//!   cursor then moves to it: no duplicates, never backwards.
//! * A live message more than one past the cursor opens a gap: the range
//!   `cursor+1 ..= seq-1` is fetched first, and the held message is delivered
//!   after it (or dropped if the fetch already delivered it).
//! * A fetched batch covers `(after, through_seq]` without holes (messages
//!   hidden for this user are left out but still covered), so it may only be
//!   applied when `after` is at or below the cursor; then the cursor moves to
//!   `through_seq`.
//! * **Conversations without a cursor.** Until the first catch-up of a session
//!   has run ([`MessageOrder::is_primed`]), the first message seen in such a
//!   conversation is delivered as it is and becomes its cursor. The first
//!   catch-up gives every listed conversation that still has no cursor the
//!   cursor `max_seq`: what was there before is history, to be paged with
//!   `FetchHistory`. After that, a conversation without a cursor is one that
//!   appeared later (new, or the user was just added), so its cursor is 0 and
//!   everything in it that the user may see is delivered.

use std::collections::HashMap;

/// What to do with a message that was pushed live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Live {
    /// Deliver it now; the cursor moved to its seq.
    Deliver,
    /// Already delivered, or older than the cursor: drop it.
    Drop,
    /// Messages `after+1 ..= through` are missing. Fetch them (sync after
    /// `after`), deliver what comes back, then ask [`MessageOrder::held`]
    /// about the message that revealed the gap.
    Fetch {
        /// The cursor: fetch what comes after it.
        after: i64,
        /// The last missing seq.
        through: i64,
    },
}

/// Per-conversation delivery cursors and the rules that use them.
#[derive(Clone, Debug, Default)]
pub(crate) struct MessageOrder {
    cursors: HashMap<i64, i64>,
    primed: bool,
    /// The user the cursors belong to; `None` until a login.
    owner: Option<i64>,
}

impl MessageOrder {
    /// The cursor of `conv_id`, if it has one.
    pub(crate) fn cursor(&self, conv_id: i64) -> Option<i64> {
        self.cursors.get(&conv_id).copied()
    }

    /// Every cursor, to persist.
    pub(crate) fn cursors(&self) -> HashMap<i64, i64> {
        self.cursors.clone()
    }

    /// Sets a cursor, e.g. restored from disk (negative means 0).
    pub(crate) fn set_cursor(&mut self, conv_id: i64, seq: i64) {
        self.cursors.insert(conv_id, seq.max(0));
    }

    /// Whether the first catch-up of the session has run.
    #[cfg(test)]
    pub(crate) fn is_primed(&self) -> bool {
        self.primed
    }

    /// Marks the first catch-up as done without a conversation list.
    #[cfg(test)]
    pub(crate) fn set_primed(&mut self) {
        self.primed = true;
    }

    /// A login as `user_id`. Cursors set before any login (restored by the
    /// application) are adopted; a different user than before starts afresh.
    pub(crate) fn logged_in(&mut self, user_id: i64) {
        if self.owner.is_some_and(|owner| owner != user_id) {
            self.cursors.clear();
            self.primed = false;
        }
        self.owner = Some(user_id);
    }

    /// The decision for a message pushed live.
    pub(crate) fn live(&mut self, conv_id: i64, seq: i64) -> Live {
        let cursor = match self.cursor(conv_id) {
            Some(cursor) => cursor,
            None if !self.primed => {
                self.cursors.insert(conv_id, seq);
                return Live::Deliver;
            }
            None => 0,
        };
        if seq <= cursor {
            Live::Drop
        } else if seq == cursor + 1 {
            self.cursors.insert(conv_id, seq);
            Live::Deliver
        } else {
            Live::Fetch {
                after: cursor,
                through: seq - 1,
            }
        }
    }

    /// Applies a fetched batch that covers `(after, through]`, ascending:
    /// returns the items to deliver, in order. A batch that does not reach
    /// back to the cursor (it moved backwards meanwhile) is discarded whole.
    pub(crate) fn batch<T>(
        &mut self,
        conv_id: i64,
        after: i64,
        items: Vec<T>,
        seq_of: impl Fn(&T) -> i64,
        through: i64,
    ) -> Vec<T> {
        let mut cursor = self.cursor(conv_id).unwrap_or(0);
        if after > cursor {
            return Vec::new();
        }
        let mut deliver = Vec::with_capacity(items.len());
        for item in items {
            let seq = seq_of(&item);
            if seq > cursor {
                cursor = seq;
                deliver.push(item);
            }
        }
        self.cursors.insert(conv_id, cursor.max(through));
        deliver
    }

    /// After the fetch that a [`Live::Fetch`] asked for: whether the held
    /// message is still to be delivered. It is, unless the fetch delivered it
    /// already; a hole the server could not fill is skipped rather than
    /// losing a message that did arrive.
    pub(crate) fn held(&mut self, conv_id: i64, seq: i64) -> bool {
        let cursor = self.cursor(conv_id).unwrap_or(0);
        if seq <= cursor {
            return false;
        }
        self.cursors.insert(conv_id, seq);
        true
    }

    /// Plans a catch-up from a conversation list of `(conv_id, max_seq)`:
    /// the conversations to sync and the seq to sync up to. Before the first
    /// catch-up, conversations without a cursor start at `max_seq` (see the
    /// module docs); after it, at 0. Planning a catch-up makes every listed
    /// conversation known, so from here on the stream counts as primed.
    pub(crate) fn plan_catch_up(
        &mut self,
        conversations: impl IntoIterator<Item = (i64, i64)>,
    ) -> Vec<(i64, i64)> {
        let mut plan = Vec::new();
        for (conv_id, max_seq) in conversations {
            let baseline = if self.primed { 0 } else { max_seq.max(0) };
            let cursor = *self.cursors.entry(conv_id).or_insert(baseline);
            if max_seq > cursor {
                plan.push((conv_id, max_seq));
            }
        }
        self.primed = true;
        plan
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// A conversation on a pretend server: seqs `1..=max`, some hidden from
    /// this user (skipped by sync, still covered by `through_seq`).
    struct FakeConversation {
        max: i64,
        hidden: BTreeSet<i64>,
        page: usize,
    }

    impl FakeConversation {
        /// `SyncMessages`: `(seqs, through_seq, has_more)`.
        fn sync(&self, after: i64) -> (Vec<i64>, i64, bool) {
            let visible: Vec<i64> = ((after + 1)..=self.max)
                .filter(|s| !self.hidden.contains(s))
                .collect();
            if visible.len() > self.page {
                let page = visible[..self.page].to_vec();
                let through = *page.last().unwrap_or(&after);
                (page, through, true)
            } else {
                (visible, self.max.max(after), false)
            }
        }
    }

    /// What the delivery task does, with the fake server in place of I/O.
    fn sync_up_to(
        order: &mut MessageOrder,
        server: &FakeConversation,
        conv: i64,
        target: i64,
        out: &mut Vec<i64>,
    ) {
        loop {
            let after = order.cursor(conv).unwrap_or(0);
            if after >= target {
                return;
            }
            let (seqs, through, more) = server.sync(after);
            out.extend(order.batch(conv, after, seqs, |s| *s, through));
            if !more || order.cursor(conv).unwrap_or(0) <= after {
                return;
            }
        }
    }

    fn on_live(order: &mut MessageOrder, server: &FakeConversation, conv: i64, seq: i64, out: &mut Vec<i64>) {
        match order.live(conv, seq) {
            Live::Deliver => out.push(seq),
            Live::Drop => {}
            Live::Fetch { through, .. } => {
                sync_up_to(order, server, conv, through, out);
                if order.held(conv, seq) {
                    out.push(seq);
                }
            }
        }
    }

    /// Strictly increasing, above `start`, and every seq skipped is hidden.
    fn assert_gap_free(delivered: &[i64], start: i64, hidden: &BTreeSet<i64>) {
        let mut previous = start;
        for &seq in delivered {
            assert!(seq > previous, "{delivered:?} goes backwards or repeats at {seq}");
            for missing in (previous + 1)..seq {
                assert!(hidden.contains(&missing), "{delivered:?} skips {missing}");
            }
            previous = seq;
        }
    }

    #[test]
    fn in_order_duplicates_and_gaps() {
        let mut order = MessageOrder::default();
        order.set_primed();
        assert_eq!(order.live(1, 1), Live::Deliver);
        assert_eq!(order.live(1, 1), Live::Drop);
        assert_eq!(order.live(1, 2), Live::Deliver);
        assert_eq!(order.live(1, 5), Live::Fetch { after: 2, through: 4 });
        assert_eq!(order.batch(1, 2, vec![3, 4, 5, 6], |s| *s, 6), vec![3, 4, 5, 6]);
        assert!(!order.held(1, 5), "the fetch delivered it already");
        assert_eq!(order.cursor(1), Some(6));
    }

    #[test]
    fn batches_cover_hidden_messages_and_must_reach_the_cursor() {
        let mut order = MessageOrder::default();
        order.set_cursor(7, 10);
        assert!(
            order.batch(7, 12, vec![13], |s| *s, 13).is_empty(),
            "leaves 11..12 open"
        );
        assert_eq!(order.cursor(7), Some(10));
        assert_eq!(order.batch(7, 10, vec![12], |s| *s, 15), vec![12]);
        assert_eq!(order.cursor(7), Some(15), "13..15 are covered though hidden");
        assert_eq!(order.live(7, 16), Live::Deliver);
    }

    #[test]
    fn an_unfillable_hole_does_not_lose_the_message_that_arrived() {
        let mut order = MessageOrder::default();
        order.set_cursor(1, 3);
        assert_eq!(order.live(1, 9), Live::Fetch { after: 3, through: 8 });
        assert_eq!(order.batch(1, 3, vec![4], |s| *s, 4), vec![4]);
        assert!(order.held(1, 9));
        assert_eq!(order.cursor(1), Some(9));
    }

    #[test]
    fn unknown_conversations_before_and_after_the_first_catch_up() {
        let mut order = MessageOrder::default();
        // Before: the first message seen starts the conversation.
        assert_eq!(order.live(1, 40), Live::Deliver);
        assert_eq!(order.live(1, 41), Live::Deliver);
        // The first catch-up: known ones sync from their cursor, unknown ones
        // start at max_seq.
        let plan = order.plan_catch_up([(1, 45), (2, 30), (3, 0)]);
        assert_eq!(plan, vec![(1, 45)]);
        assert_eq!(order.cursor(2), Some(30));
        assert_eq!(order.cursor(3), Some(0));
        assert!(order.is_primed());
        // After: a conversation never seen is new, so it starts at 0.
        assert_eq!(order.live(9, 1), Live::Deliver);
        assert_eq!(order.live(10, 3), Live::Fetch { after: 0, through: 2 });
        assert_eq!(order.plan_catch_up([(11, 4)]), vec![(11, 4)]);
        assert_eq!(order.cursor(11), Some(0));
    }

    #[test]
    fn a_different_user_starts_afresh() {
        let mut order = MessageOrder::default();
        order.set_cursor(1, 5);
        order.logged_in(42);
        assert_eq!(order.cursor(1), Some(5), "restored before login: adopted");
        order.set_primed();
        order.logged_in(42);
        assert!(order.is_primed());
        order.logged_in(43);
        assert_eq!(order.cursor(1), None);
        assert!(!order.is_primed());
    }

    fn arrivals(max: i64) -> impl Strategy<Value = Vec<i64>> {
        prop::collection::vec(1..=max, 0..60)
    }

    proptest! {
        /// Any arrival order, with duplicates and losses, delivers a
        /// gap-free increasing stream; a final catch-up completes it.
        #[test]
        fn any_arrival_order_is_delivered_gap_free(
            (max, hidden, live, start, page) in (1i64..40).prop_flat_map(|max| (
                Just(max),
                prop::collection::btree_set(1..=max, 0..(max as usize)),
                arrivals(max),
                0..=max,
                1usize..8,
            ))
        ) {
            let server = FakeConversation { max, hidden: hidden.clone(), page };
            let mut order = MessageOrder::default();
            order.set_cursor(1, start);
            order.set_primed();
            let mut delivered = Vec::new();
            for seq in live {
                on_live(&mut order, &server, 1, seq, &mut delivered);
                assert_gap_free(&delivered, start, &hidden);
            }
            for (conv, target) in order.plan_catch_up([(1, max)]) {
                sync_up_to(&mut order, &server, conv, target, &mut delivered);
            }
            assert_gap_free(&delivered, start, &hidden);
            for seq in (start + 1)..=max {
                prop_assert!(hidden.contains(&seq) || delivered.contains(&seq), "{seq} never delivered");
            }
            prop_assert_eq!(order.cursor(1), Some(max.max(start)));
        }

        /// Interleaved conversations do not disturb each other.
        #[test]
        fn conversations_are_independent(
            live in prop::collection::vec((1i64..=3, 1i64..=20), 0..80),
            page in 1usize..6,
        ) {
            let server = FakeConversation { max: 20, hidden: BTreeSet::new(), page };
            let mut order = MessageOrder::default();
            order.set_primed();
            let mut delivered: HashMap<i64, Vec<i64>> = HashMap::new();
            for (conv, seq) in live {
                on_live(&mut order, &server, conv, seq, delivered.entry(conv).or_default());
            }
            for (conv, seqs) in &delivered {
                assert_gap_free(seqs, 0, &BTreeSet::new());
                prop_assert_eq!(order.cursor(*conv), seqs.last().copied());
            }
        }

        /// Before the first catch-up a conversation starts wherever its
        /// first message is, and is gap-free from there on.
        #[test]
        fn unprimed_conversations_start_at_the_first_message(
            first in 1i64..20,
            rest in prop::collection::vec(1i64..=30, 0..40),
        ) {
            let server = FakeConversation { max: 30, hidden: BTreeSet::new(), page: 4 };
            let mut order = MessageOrder::default();
            let mut delivered = Vec::new();
            on_live(&mut order, &server, 5, first, &mut delivered);
            prop_assert_eq!(&delivered, &vec![first]);
            for seq in rest {
                on_live(&mut order, &server, 5, seq, &mut delivered);
            }
            assert_gap_free(&delivered[1..], first, &BTreeSet::new());
        }
    }
}
