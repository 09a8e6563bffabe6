//! The open chat's messages as a Slint model.
//!
//! Entries are compact Rust structs; a [`MessageRow`] for the view is built
//! only when the `ListView` asks for a row it is about to show, so a chat
//! with 100 000 loaded messages costs one small struct per message and a
//! handful of live rows. Day separators are derived while building a row
//! (compare with the previous entry), never stored.
//!
//! Ordering: confirmed messages by `seq`; messages still being sent (no seq
//! yet) stay at the end in the order they were written.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use chrono::{Local, NaiveDate};
use parley_client::pb;
use slint::{Image, Model, ModelNotify, ModelTracker, SharedString};

use crate::MessageRow;
use crate::format;
use crate::people::People;

/// What kind of bubble an entry is drawn as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// Plain text.
    Text,
    /// An image with a thumbnail.
    Image,
    /// Any other file.
    File,
    /// A centred notice (group changes, calls).
    Notice,
}

/// Delivery state of one of the user's own messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Not the user's message.
    Received,
    /// Written, not yet acknowledged.
    Sending,
    /// Committed by the server.
    Sent,
    /// Could not be sent.
    Failed,
}

/// One message as the chat keeps it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Server sequence number; 0 while sending.
    pub seq: i64,
    /// The sender's id for this message.
    pub client_msg_id: String,
    /// Who sent it.
    pub sender_id: i64,
    /// How it is drawn.
    pub body: Body,
    /// Text, caption or notice.
    pub text: String,
    /// The attached file or image.
    pub file: Option<pb::FileRef>,
    /// Server time (local time while sending).
    pub created_at_ms: i64,
    /// Edited after sending.
    pub edited: bool,
    /// Recalled by its sender.
    pub recalled: bool,
    /// Delivery state (own messages).
    pub delivery: Delivery,
    /// Upload or download progress, 0..=1; negative when idle.
    pub progress: f32,
    /// A word about the file ("uploading", "saved", an error).
    pub file_state: String,
    /// For a file being sent: the local path it is read from.
    pub local_path: Option<std::path::PathBuf>,
}

impl Entry {
    /// An entry for a message from the server. EDIT and RECALL messages are
    /// not entries (see [`MessageModel::apply`]).
    pub fn from_message(message: &pb::Message, me: i64, people: &People) -> Option<Entry> {
        let body = match message.kind() {
            pb::MessageKind::Text => Body::Text,
            pb::MessageKind::Image => Body::Image,
            pb::MessageKind::File | pb::MessageKind::VoiceNote => Body::File,
            pb::MessageKind::System | pb::MessageKind::CallRecord => Body::Notice,
            pb::MessageKind::Edit | pb::MessageKind::Recall | pb::MessageKind::Unspecified => return None,
        };
        let text = match body {
            Body::Notice => notice_text(message, people),
            _ => message.text.clone(),
        };
        Some(Entry {
            seq: message.seq,
            client_msg_id: message.client_msg_id.clone(),
            sender_id: message.sender_id,
            body,
            text,
            file: message.file.clone(),
            created_at_ms: message.created_at_ms,
            edited: message.edited_at_ms > 0,
            recalled: message.recalled,
            delivery: if message.sender_id == me {
                Delivery::Sent
            } else {
                Delivery::Received
            },
            progress: -1.0,
            file_state: String::new(),
            local_path: None,
        })
    }

    /// A message the user just wrote, before the server confirmed it.
    pub fn pending(client_msg_id: String, me: i64, body: Body, text: String, now_ms: i64) -> Entry {
        Entry {
            seq: 0,
            client_msg_id,
            sender_id: me,
            body,
            text,
            file: None,
            created_at_ms: now_ms,
            edited: false,
            recalled: false,
            delivery: Delivery::Sending,
            progress: -1.0,
            file_state: String::new(),
            local_path: None,
        }
    }
}

/// The words of a system notice.
pub fn notice_text(message: &pb::Message, people: &People) -> String {
    if message.kind() == pb::MessageKind::CallRecord {
        return if message.text.is_empty() {
            "Call".into()
        } else {
            message.text.clone()
        };
    }
    let Some(notice) = &message.system else {
        return message.text.clone();
    };
    let actor = people.name(notice.actor_id);
    let names = notice
        .user_ids
        .iter()
        .map(|id| people.name(*id))
        .collect::<Vec<_>>()
        .join(", ");
    use pb::system_notice::Kind;
    match notice.kind() {
        Kind::Created => format!("{actor} created the group “{}”", notice.name),
        Kind::Joined => format!("{actor} added {names}"),
        Kind::Left => format!("{actor} left the group"),
        Kind::Kicked => format!("{actor} removed {names}"),
        Kind::Renamed => format!("{actor} renamed the group to “{}”", notice.name),
        Kind::Unspecified => message.text.clone(),
    }
}

/// How rows are drawn: who "I" am, read state, names and thumbnails.
#[derive(Default)]
struct View {
    me: i64,
    group: bool,
    peer_read_seq: i64,
    today: Option<NaiveDate>,
    thumbnails: HashMap<i64, Image>,
}

/// The open chat's messages; see the module docs.
pub struct MessageModel {
    entries: RefCell<Vec<Entry>>,
    view: RefCell<View>,
    people: Rc<RefCell<People>>,
    notify: ModelNotify,
}

/// Longest side a thumbnail is drawn with, in logical pixels.
pub const THUMBNAIL_MAX: f32 = 280.0;

impl MessageModel {
    /// An empty chat.
    pub fn new(people: Rc<RefCell<People>>) -> MessageModel {
        MessageModel {
            entries: RefCell::default(),
            view: RefCell::default(),
            people,
            notify: ModelNotify::default(),
        }
    }

    /// Shows another conversation: new entries, new settings, no thumbnails.
    pub fn reset(&self, me: i64, group: bool, peer_read_seq: i64, entries: Vec<Entry>) {
        *self.view.borrow_mut() = View {
            me,
            group,
            peer_read_seq,
            today: Some(Local::now().date_naive()),
            thumbnails: HashMap::new(),
        };
        *self.entries.borrow_mut() = entries;
        self.notify.reset();
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }

    /// The lowest confirmed seq shown (where older history continues).
    pub fn oldest_seq(&self) -> Option<i64> {
        self.entries.borrow().iter().find(|e| e.seq > 0).map(|e| e.seq)
    }

    /// The highest confirmed seq shown.
    pub fn newest_seq(&self) -> Option<i64> {
        self.entries
            .borrow()
            .iter()
            .rev()
            .find(|e| e.seq > 0)
            .map(|e| e.seq)
    }

    /// A copy of one entry.
    pub fn entry(&self, row: usize) -> Option<Entry> {
        self.entries.borrow().get(row).cloned()
    }

    /// Adds older messages (ascending, all older than what is shown) at the top.
    pub fn prepend(&self, older: Vec<Entry>) {
        let count = older.len();
        if count == 0 {
            return;
        }
        {
            let mut entries = self.entries.borrow_mut();
            let newer = std::mem::replace(&mut *entries, older);
            entries.extend(newer);
        }
        self.notify.row_added(0, count);
        // The previously first row may lose its day separator.
        self.notify.row_changed(count);
    }

    /// Adds a message the user is sending; returns its row.
    pub fn push_pending(&self, entry: Entry) -> usize {
        let row = {
            let mut entries = self.entries.borrow_mut();
            entries.push(entry);
            entries.len() - 1
        };
        self.notify.row_added(row, 1);
        row
    }

    /// Applies a message from the server: a new entry, the confirmation of a
    /// pending one, or an edit/recall of an earlier one. Returns whether a row
    /// was added at the end (so the view can follow).
    pub fn apply(&self, message: &pb::Message) -> bool {
        match message.kind() {
            pb::MessageKind::Edit => {
                self.update_seq(message.target_seq, |e| {
                    e.text = message.text.clone();
                    e.edited = true;
                });
                return false;
            }
            pb::MessageKind::Recall => {
                self.update_seq(message.target_seq, |e| {
                    e.recalled = true;
                    e.text.clear();
                });
                return false;
            }
            _ => {}
        }
        let me = self.view.borrow().me;
        let Some(mut entry) = Entry::from_message(message, me, &self.people.borrow()) else {
            return false;
        };
        let mut entries = self.entries.borrow_mut();
        // Our own message coming back: confirm the pending entry in place.
        if message.sender_id == me
            && let Some(row) = entries
                .iter()
                .rposition(|e| e.seq == 0 && e.client_msg_id == message.client_msg_id)
        {
            let pending = &entries[row];
            entry.local_path = pending.local_path.clone();
            entry.file_state = pending.file_state.clone();
            entries[row] = entry;
            drop(entries);
            self.notify.row_changed(row);
            return false;
        }
        let confirmed = entries.iter().rposition(|e| e.seq > 0);
        let insert_at = match confirmed {
            Some(last) if entries[last].seq >= entry.seq => {
                match entries[..=last].binary_search_by_key(&entry.seq, |e| e.seq) {
                    Ok(_) => return false, // already shown
                    Err(at) => at,
                }
            }
            Some(last) => last + 1,
            None => 0,
        };
        let at_end = insert_at == entries.len();
        entries.insert(insert_at, entry);
        drop(entries);
        self.notify.row_added(insert_at, 1);
        if insert_at + 1 < self.len() {
            self.notify.row_changed(insert_at + 1);
        }
        at_end
    }

    /// Records the server's answer to a send: the seq, or a failure.
    pub fn confirm(&self, client_msg_id: &str, seq: Option<i64>) {
        let row = self
            .entries
            .borrow()
            .iter()
            .rposition(|e| e.client_msg_id == client_msg_id && e.delivery == Delivery::Sending);
        if let Some(row) = row {
            {
                let mut entries = self.entries.borrow_mut();
                match seq {
                    // The message event may come later; the entry already
                    // counts as sent (its seq is filled in by `apply`).
                    Some(_) => entries[row].delivery = Delivery::Sent,
                    None => entries[row].delivery = Delivery::Failed,
                }
            }
            self.notify.row_changed(row);
        }
    }

    /// Changes one entry found by client id (progress, file state).
    pub fn update_pending(&self, client_msg_id: &str, change: impl FnOnce(&mut Entry)) {
        let row = self
            .entries
            .borrow()
            .iter()
            .rposition(|e| e.client_msg_id == client_msg_id);
        if let Some(row) = row {
            change(&mut self.entries.borrow_mut()[row]);
            self.notify.row_changed(row);
        }
    }

    /// Changes one entry found by row.
    pub fn update_row(&self, row: usize, change: impl FnOnce(&mut Entry)) {
        if row < self.len() {
            change(&mut self.entries.borrow_mut()[row]);
            self.notify.row_changed(row);
        }
    }

    fn update_seq(&self, seq: i64, change: impl FnOnce(&mut Entry)) {
        let row = self.row_of_seq(seq);
        if let Some(row) = row {
            change(&mut self.entries.borrow_mut()[row]);
            self.notify.row_changed(row);
        }
    }

    fn row_of_seq(&self, seq: i64) -> Option<usize> {
        let entries = self.entries.borrow();
        let confirmed = entries.iter().rposition(|e| e.seq > 0)?;
        entries[..=confirmed].binary_search_by_key(&seq, |e| e.seq).ok()
    }

    /// Names or avatars changed: rows are rebuilt the next time they are drawn.
    pub fn refresh_all(&self) {
        // Only rows on screen exist in the view; a reset rebuilds those and
        // keeps the scroll position.
        self.notify.reset();
    }

    /// Removes entries hidden by "delete for me".
    pub fn hide(&self, seqs: &[i64]) {
        for seq in seqs {
            if let Some(row) = self.row_of_seq(*seq) {
                self.entries.borrow_mut().remove(row);
                self.notify.row_removed(row, 1);
                if row < self.len() {
                    self.notify.row_changed(row);
                }
            }
        }
    }

    /// The peer read up to `seq`: own messages up to it show as read.
    pub fn set_peer_read(&self, seq: i64) {
        let old = {
            let mut view = self.view.borrow_mut();
            if seq <= view.peer_read_seq {
                return;
            }
            std::mem::replace(&mut view.peer_read_seq, seq)
        };
        let rows: Vec<usize> = {
            let entries = self.entries.borrow();
            let start = entries.partition_point(|e| e.seq > 0 && e.seq <= old);
            (start..entries.len())
                .take_while(|row| entries[*row].seq > 0 && entries[*row].seq <= seq)
                .collect()
        };
        for row in rows {
            self.notify.row_changed(row);
        }
    }

    /// A thumbnail arrived: every row showing `file_id` redraws.
    pub fn set_thumbnail(&self, file_id: i64, image: Image) {
        self.view.borrow_mut().thumbnails.insert(file_id, image);
        let rows: Vec<usize> = self
            .entries
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, e)| e.file.as_ref().is_some_and(|f| f.file_id == file_id))
            .map(|(row, _)| row)
            .collect();
        for row in rows {
            self.notify.row_changed(row);
        }
    }

    /// A loaded thumbnail.
    pub fn thumbnail(&self, file_id: i64) -> Option<Image> {
        self.view.borrow().thumbnails.get(&file_id).cloned()
    }

    /// The day separator label above `row`, if it starts a new day.
    fn day_above(&self, entries: &[Entry], row: usize, today: NaiveDate) -> Option<String> {
        let day = format::day_of(entries[row].created_at_ms, &Local)?;
        let previous = row
            .checked_sub(1)
            .and_then(|p| format::day_of(entries[p].created_at_ms, &Local));
        (previous != Some(day)).then(|| format::day_label(day, today))
    }

    fn build_row(&self, row: usize) -> Option<MessageRow> {
        let entries = self.entries.borrow();
        let entry = entries.get(row)?;
        let view = self.view.borrow();
        let people = self.people.borrow();
        let mine = entry.sender_id == view.me;
        let today = view.today.unwrap_or_else(|| Local::now().date_naive());
        let day = self.day_above(&entries, row, today).unwrap_or_default();
        // In groups, consecutive messages of one sender show the name once.
        let first_of_run = row == 0
            || entries[row - 1].sender_id != entry.sender_id
            || entries[row - 1].body == Body::Notice
            || !day.is_empty();
        let status = match entry.delivery {
            Delivery::Received => 0,
            Delivery::Sending => 1,
            Delivery::Failed => 4,
            Delivery::Sent if !view.group && entry.seq > 0 && entry.seq <= view.peer_read_seq => 3,
            Delivery::Sent => 2,
        };
        let sender = people.name(entry.sender_id);
        let (file_name, file_size, picture_size, picture) = match &entry.file {
            Some(file) => (
                file.name.clone(),
                format::file_size(file.size),
                format::thumbnail_size(file.width, file.height, THUMBNAIL_MAX),
                view.thumbnails.get(&file.file_id).cloned(),
            ),
            None => (
                String::new(),
                String::new(),
                (THUMBNAIL_MAX, THUMBNAIL_MAX * 0.75),
                None,
            ),
        };
        Some(MessageRow {
            kind: match entry.body {
                Body::Text => 0,
                Body::Image => 1,
                Body::File => 2,
                Body::Notice => 3,
            },
            mine,
            sender: sender.as_str().into(),
            show_sender: view.group && !mine && first_of_run && entry.body != Body::Notice,
            initials: format::initials(&sender).into(),
            tint: format::tint(entry.sender_id),
            text: SharedString::from(entry.text.as_str()),
            time: format::bubble_time(entry.created_at_ms, &Local).into(),
            day: day.into(),
            status,
            edited: entry.edited,
            recalled: entry.recalled,
            has_picture: picture.is_some(),
            picture: picture.unwrap_or_default(),
            picture_width: picture_size.0,
            picture_height: picture_size.1,
            file_name: file_name.into(),
            file_size: file_size.into(),
            progress: entry.progress,
            file_state: entry.file_state.as_str().into(),
        })
    }
}

impl Model for MessageModel {
    type Data = MessageRow;

    fn row_count(&self) -> usize {
        self.len()
    }

    fn row_data(&self, row: usize) -> Option<MessageRow> {
        self.build_row(row)
    }

    fn model_tracker(&self) -> &dyn ModelTracker {
        &self.notify
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(seq: i64, sender: i64, body: &str, at: i64) -> pb::Message {
        pb::Message {
            conv_id: 1,
            seq,
            sender_id: sender,
            client_msg_id: format!("c{seq}"),
            kind: pb::MessageKind::Text as i32,
            text: body.into(),
            created_at_ms: at,
            ..Default::default()
        }
    }

    fn model() -> MessageModel {
        let model = MessageModel::new(Rc::new(RefCell::new(People::default())));
        model.reset(1, false, 0, Vec::new());
        model
    }

    const DAY: i64 = 86_400_000;
    const NOON: i64 = 1_773_316_800_000; // 2026-03-12 12:00 UTC

    #[test]
    fn messages_are_ordered_by_seq_and_deduplicated() {
        let m = model();
        assert!(m.apply(&text(2, 2, "b", NOON)));
        assert!(!m.apply(&text(1, 2, "a", NOON)));
        assert!(!m.apply(&text(2, 2, "b", NOON)));
        assert!(m.apply(&text(3, 2, "c", NOON)));
        let texts: Vec<String> = (0..m.row_count())
            .map(|r| m.row_data(r).unwrap().text.into())
            .collect();
        assert_eq!(texts, ["a", "b", "c"]);
        assert_eq!(m.oldest_seq(), Some(1));
        assert_eq!(m.newest_seq(), Some(3));
    }

    #[test]
    fn own_messages_go_from_sending_to_sent_to_read() {
        let m = model();
        let row = m.push_pending(Entry::pending("x".into(), 1, Body::Text, "hi".into(), NOON));
        assert_eq!(m.row_data(row).unwrap().status, 1);
        m.confirm("x", Some(5));
        assert_eq!(m.row_data(row).unwrap().status, 2);
        let mut echo = text(5, 1, "hi", NOON);
        echo.client_msg_id = "x".into();
        assert!(!m.apply(&echo), "the echo confirms the pending row in place");
        assert_eq!(m.row_count(), 1);
        m.set_peer_read(5);
        assert_eq!(m.row_data(row).unwrap().status, 3);
        m.push_pending(Entry::pending("y".into(), 1, Body::Text, "lost".into(), NOON));
        m.confirm("y", None);
        assert_eq!(m.row_data(1).unwrap().status, 4);
    }

    #[test]
    fn edits_and_recalls_change_their_target() {
        let m = model();
        m.apply(&text(1, 2, "helo", NOON));
        m.apply(&pb::Message {
            seq: 2,
            kind: pb::MessageKind::Edit as i32,
            text: "hello".into(),
            target_seq: 1,
            ..Default::default()
        });
        let row = m.row_data(0).unwrap();
        assert_eq!((row.text.as_str(), row.edited), ("hello", true));
        m.apply(&pb::Message {
            seq: 3,
            kind: pb::MessageKind::Recall as i32,
            target_seq: 1,
            ..Default::default()
        });
        let row = m.row_data(0).unwrap();
        assert!(row.recalled);
        assert_eq!(m.row_count(), 1, "edits and recalls are never rows");
        m.hide(&[1]);
        assert_eq!(m.row_count(), 0);
    }

    #[test]
    fn day_separators_start_each_day_and_history_prepends() {
        let m = model();
        m.apply(&text(3, 2, "today", NOON));
        m.apply(&text(4, 2, "same day", NOON + 60_000));
        assert_ne!(m.row_data(0).unwrap().day, "");
        assert_eq!(m.row_data(1).unwrap().day, "");
        let people = People::default();
        let older: Vec<Entry> = [
            text(1, 2, "old", NOON - 2 * DAY),
            text(2, 2, "old too", NOON - 2 * DAY),
        ]
        .iter()
        .filter_map(|msg| Entry::from_message(msg, 1, &people))
        .collect();
        m.prepend(older);
        assert_eq!(m.row_count(), 4);
        assert_ne!(m.row_data(0).unwrap().day, "");
        assert_eq!(m.row_data(1).unwrap().day, "");
        assert_ne!(m.row_data(2).unwrap().day, "", "a new day after the older ones");
    }

    #[test]
    fn group_rows_name_the_sender_once_per_run() {
        let m = MessageModel::new(Rc::new(RefCell::new(People::default())));
        m.reset(1, true, 0, Vec::new());
        m.apply(&text(1, 2, "a", NOON));
        m.apply(&text(2, 2, "b", NOON));
        m.apply(&text(3, 3, "c", NOON));
        m.apply(&text(4, 1, "mine", NOON));
        let shown: Vec<bool> = (0..4).map(|r| m.row_data(r).unwrap().show_sender).collect();
        assert_eq!(shown, [true, false, true, false]);
    }
}
