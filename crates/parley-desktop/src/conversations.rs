//! The conversation list: one entry per conversation, newest activity first,
//! with unread counts and previews kept current from pushed events.

use std::collections::HashMap;

use chrono::Local;
use parley_client::pb;

use crate::ConversationItem;
use crate::format;
use crate::people::People;

/// What the list knows about one conversation.
#[derive(Clone, Debug, Default)]
pub struct ConversationState {
    /// The conversation as last reported by the server.
    pub info: pb::Conversation,
    /// The newest visible message.
    pub last: Option<pb::Message>,
    /// Messages from others not yet read.
    pub unread: u64,
    /// When someone was last seen typing (ms, local clock).
    pub typing_until_ms: i64,
}

impl ConversationState {
    fn activity_ms(&self) -> i64 {
        self.last
            .as_ref()
            .map_or(self.info.created_at_ms, |m| m.created_at_ms)
    }
}

/// All of the user's conversations.
#[derive(Default, Debug)]
pub struct Conversations {
    by_id: HashMap<i64, ConversationState>,
    /// Ids, most recent activity first.
    order: Vec<i64>,
}

impl Conversations {
    /// Replaces everything with the server's list.
    pub fn set_all(&mut self, list: Vec<pb::Conversation>) {
        self.by_id.clear();
        for info in list {
            self.upsert(info);
        }
        self.sort();
    }

    /// Adds or updates a conversation's metadata (keeps unread and last message
    /// unless the server's copy says more).
    pub fn upsert(&mut self, info: pb::Conversation) {
        let id = info.id;
        let state = self.by_id.entry(id).or_default();
        if let Some(last) = info.last_message.clone()
            && state.last.as_ref().is_none_or(|m| m.seq <= last.seq)
        {
            state.last = Some(last);
        }
        state.unread = info.unread;
        state.info = info;
        self.sort();
    }

    /// Forgets a conversation the user left or was removed from.
    pub fn remove(&mut self, id: i64) {
        self.by_id.remove(&id);
        self.order.retain(|c| *c != id);
    }

    /// One conversation.
    pub fn get(&self, id: i64) -> Option<&ConversationState> {
        self.by_id.get(&id)
    }

    /// One conversation, to change.
    pub fn get_mut(&mut self, id: i64) -> Option<&mut ConversationState> {
        self.by_id.get_mut(&id)
    }

    /// Whether the conversation is known.
    pub fn contains(&self, id: i64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// The direct conversation with `user_id`, if there is one.
    pub fn direct_with(&self, user_id: i64) -> Option<i64> {
        self.by_id
            .values()
            .find(|c| c.info.kind() == pb::ConversationKind::Direct && c.info.peer_id == user_id)
            .map(|c| c.info.id)
    }

    /// A new message arrived. `open` says whether the user is looking at
    /// that conversation (then it does not count as unread). Returns false
    /// for a conversation not known yet (the caller reloads the list).
    pub fn on_message(&mut self, message: &pb::Message, me: i64, open: bool) -> bool {
        let Some(state) = self.by_id.get_mut(&message.conv_id) else {
            return false;
        };
        match message.kind() {
            pb::MessageKind::Edit | pb::MessageKind::Recall => {
                if let Some(last) = &mut state.last
                    && last.seq == message.target_seq
                {
                    if message.kind() == pb::MessageKind::Recall {
                        last.recalled = true;
                    } else {
                        last.text = message.text.clone();
                    }
                }
            }
            _ => {
                if state.last.as_ref().is_none_or(|m| m.seq < message.seq) {
                    state.last = Some(message.clone());
                }
                state.info.max_seq = state.info.max_seq.max(message.seq);
                if message.sender_id != me && !open {
                    state.unread += 1;
                }
                if message.sender_id != me {
                    state.typing_until_ms = 0;
                }
            }
        }
        self.sort();
        true
    }

    /// The user read `conv_id` (on this or another device).
    pub fn mark_read(&mut self, conv_id: i64, seq: i64) {
        if let Some(state) = self.by_id.get_mut(&conv_id) {
            state.info.read_seq = state.info.read_seq.max(seq);
            if seq >= state.info.max_seq {
                state.unread = 0;
            }
        }
    }

    /// Total unread messages.
    pub fn total_unread(&self) -> u64 {
        self.by_id.values().map(|c| c.unread).sum()
    }

    /// Conversation ids in display order, filtered by a case-insensitive
    /// substring of the shown title.
    pub fn visible(&self, people: &People, filter: &str) -> Vec<i64> {
        let filter = filter.trim().to_lowercase();
        self.order
            .iter()
            .copied()
            .filter(|id| filter.is_empty() || self.title(*id, people).to_lowercase().contains(&filter))
            .collect()
    }

    /// The title shown for a conversation: the group name or the peer's name.
    pub fn title(&self, id: i64, people: &People) -> String {
        match self.by_id.get(&id) {
            Some(c) if c.info.kind() == pb::ConversationKind::Group => c.info.name.clone(),
            Some(c) => people.name(c.info.peer_id),
            None => String::new(),
        }
    }

    /// The list row for a conversation.
    pub fn item(&self, id: i64, people: &People, now_ms: i64) -> Option<ConversationItem> {
        let c = self.by_id.get(&id)?;
        let group = c.info.kind() == pb::ConversationKind::Group;
        let title = self.title(id, people);
        let preview = match &c.last {
            Some(m) if group && m.kind() != pb::MessageKind::System => {
                format!("{}: {}", people.name(m.sender_id), format::preview(m))
            }
            Some(m) => format::preview(m),
            None => String::new(),
        };
        let time = c
            .last
            .as_ref()
            .map(|m| format::list_time(m.created_at_ms, &format::now()))
            .unwrap_or_default();
        Some(ConversationItem {
            initials: format::initials(&title).into(),
            tint: format::tint(if group { id } else { c.info.peer_id }),
            title: title.into(),
            preview: preview.into(),
            time: time.into(),
            unread: c.unread.min(i32::MAX as u64) as i32,
            online: !group && people.online(c.info.peer_id),
            group,
            typing: c.typing_until_ms > now_ms,
            picture: Default::default(),
            has_picture: false,
        })
    }

    fn sort(&mut self) {
        let mut order: Vec<(i64, i64)> = self
            .by_id
            .values()
            .map(|c| (c.activity_ms(), c.info.id))
            .collect();
        order.sort_by(|a, b| b.cmp(a));
        self.order = order.into_iter().map(|(_, id)| id).collect();
    }
}

/// Milliseconds since the epoch, local clock.
pub fn now_ms() -> i64 {
    Local::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(id: i64, peer: i64, created: i64) -> pb::Conversation {
        pb::Conversation {
            id,
            kind: pb::ConversationKind::Direct as i32,
            peer_id: peer,
            created_at_ms: created,
            ..Default::default()
        }
    }

    fn msg(conv_id: i64, seq: i64, sender: i64, at: i64) -> pb::Message {
        pb::Message {
            conv_id,
            seq,
            sender_id: sender,
            kind: pb::MessageKind::Text as i32,
            text: format!("m{seq}"),
            created_at_ms: at,
            ..Default::default()
        }
    }

    #[test]
    fn newest_activity_first_and_unread_counts() {
        let mut list = Conversations::default();
        list.set_all(vec![conv(1, 10, 100), conv(2, 20, 200)]);
        let people = People::default();
        assert_eq!(list.visible(&people, ""), vec![2, 1]);
        assert!(list.on_message(&msg(1, 1, 10, 300), 99, false));
        assert_eq!(list.visible(&people, ""), vec![1, 2]);
        assert_eq!(list.get(1).unwrap().unread, 1);
        list.on_message(&msg(1, 2, 99, 400), 99, false);
        assert_eq!(list.get(1).unwrap().unread, 1, "own messages are never unread");
        list.on_message(&msg(2, 1, 20, 500), 99, true);
        assert_eq!(list.get(2).unwrap().unread, 0, "the open chat is being read");
        assert_eq!(list.total_unread(), 1);
        list.mark_read(1, 2);
        assert_eq!(list.total_unread(), 0);
        assert!(!list.on_message(&msg(3, 1, 30, 600), 99, false));
    }

    #[test]
    fn items_show_the_peer_and_a_preview() {
        let mut people = People::default();
        people.learn(&pb::User {
            id: 10,
            username: "bob".into(),
            display_name: "Bob Stone".into(),
            ..Default::default()
        });
        let mut list = Conversations::default();
        list.set_all(vec![conv(1, 10, 100)]);
        list.on_message(&msg(1, 1, 10, 300), 99, false);
        let item = list.item(1, &people, 0).unwrap();
        assert_eq!(item.title, "Bob Stone");
        assert_eq!(item.initials, "BS");
        assert_eq!(item.preview, "m1");
        assert_eq!(item.unread, 1);
        assert_eq!(list.visible(&people, "stone"), vec![1]);
        assert!(list.visible(&people, "alice").is_empty());
        assert_eq!(list.direct_with(10), Some(1));
        list.remove(1);
        assert!(list.visible(&people, "").is_empty());
    }
}
