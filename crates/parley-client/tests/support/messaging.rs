//! The test server's conversations: an in-memory message log per
//! conversation with the real server's contract (per-conversation seqs,
//! client-id de-duplication, push after commit), plus switches a test uses
//! to lose pushes or acks on purpose.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use parley_client::pb;
use pb::client_frame::Body as Req;
use pb::server_frame::Body as Resp;
use tokio::sync::broadcast;

use super::{Control, Stats, user};

/// The logged-in user of the test server (every login is user 1).
pub const ME: i64 = 1;

#[derive(Default, Debug)]
pub struct Chat {
    /// conv id -> messages in seq order (seq = index + 1).
    pub conversations: BTreeMap<i64, Vec<pb::Message>>,
    /// (conv id, client msg id) -> the ack first given.
    pub acks: HashMap<(i64, String), pb::MessageAck>,
    /// Every SendMessage received, resends included.
    pub send_attempts: u32,
    /// Store the next this-many sends, then hang up instead of acking.
    pub hang_up_before_ack: u32,
    /// Store without pushing while set (the pushes are "lost").
    pub silent: bool,
    /// Read receipts and typing notices received: (conv, seq); seq 0 = typing.
    pub marks: Vec<(i64, i64)>,
}

impl Chat {
    /// Appends a message as `sender`, returning it (not pushed).
    pub fn append(&mut self, conv_id: i64, sender_id: i64, kind: pb::MessageKind, text: &str) -> pb::Message {
        let log = self.conversations.entry(conv_id).or_default();
        let seq = log.len() as i64 + 1;
        let message = pb::Message {
            conv_id,
            seq,
            id: conv_id * 1000 + seq,
            sender_id,
            kind: kind as i32,
            text: text.into(),
            created_at_ms: 1_700_000_000_000 + seq * 1000,
            ..Default::default()
        };
        log.push(message.clone());
        message
    }

    /// Makes a stored EDIT/RECALL point at `target_seq`.
    fn set_target(&mut self, message: pb::Message, target_seq: i64) -> pb::Message {
        let message = pb::Message {
            target_seq,
            ..message
        };
        if let Some(stored) = self
            .conversations
            .get_mut(&message.conv_id)
            .and_then(|log| log.last_mut())
        {
            *stored = message.clone();
        }
        message
    }
}

/// A user of the test server by id: 1 is alice, 2 is bob, others are `userN`.
pub fn user_by_id(id: i64) -> pb::User {
    match id {
        1 => user(1, "alice"),
        2 => user(2, "bob"),
        n => user(n, &format!("user{n}")),
    }
}

pub enum Answer {
    Reply(Box<Resp>),
    Error(pb::ErrorCode),
    /// Close the connection without answering.
    Hangup,
}

fn reply(body: Resp) -> Answer {
    Answer::Reply(Box::new(body))
}

/// Whether `answer` handles this request.
pub fn handles(body: &Req) -> bool {
    matches!(
        body,
        Req::OpenDirect(_)
            | Req::CreateGroup(_)
            | Req::ListConversations(_)
            | Req::ListMembers(_)
            | Req::SendMessage(_)
            | Req::SyncMessages(_)
            | Req::FetchHistory(_)
            | Req::MarkRead(_)
            | Req::SetTyping(_)
            | Req::RecallMessage(_)
            | Req::EditMessage(_)
            | Req::SearchMessages(_)
            | Req::InviteMembers(_)
            | Req::LeaveGroup(_)
            | Req::KickMember(_)
            | Req::RenameGroup(_)
            | Req::DeleteForMe(_)
            | Req::SearchUsers(_)
    )
}

fn conversation(chat: &Chat, conv_id: i64) -> pb::Conversation {
    let log = chat.conversations.get(&conv_id).cloned().unwrap_or_default();
    let direct = conv_id < 1000;
    pb::Conversation {
        id: conv_id,
        kind: if direct {
            pb::ConversationKind::Direct
        } else {
            pb::ConversationKind::Group
        } as i32,
        name: if direct {
            String::new()
        } else {
            format!("group {conv_id}")
        },
        max_seq: log.len() as i64,
        peer_id: if direct { conv_id - 100 } else { 0 },
        member_count: 2,
        unread: log.iter().filter(|m| m.sender_id != ME).count() as u64,
        last_message: log.last().cloned(),
        ..Default::default()
    }
}

pub fn answer(stats: &Arc<Mutex<Stats>>, control: &broadcast::Sender<Control>, body: Req) -> Answer {
    let mut stats = stats.lock().unwrap();
    let chat = &mut stats.chat;
    let ok = || reply(Resp::Ok(pb::Ok {}));
    match body {
        Req::OpenDirect(r) => {
            let conv_id = 100 + r.user_id;
            chat.conversations.entry(conv_id).or_default();
            reply(Resp::Conversation(conversation(chat, conv_id)))
        }
        Req::CreateGroup(_) => {
            let conv_id = 1000 + chat.conversations.len() as i64;
            chat.append(conv_id, ME, pb::MessageKind::System, "");
            reply(Resp::Conversation(conversation(chat, conv_id)))
        }
        Req::ListConversations(_) => {
            let conversations = chat
                .conversations
                .keys()
                .map(|id| conversation(chat, *id))
                .collect();
            reply(Resp::ConversationList(pb::ConversationList { conversations }))
        }
        Req::ListMembers(r) if chat.conversations.contains_key(&r.conv_id) => {
            let members = [1, 2]
                .into_iter()
                .map(|id| pb::Member {
                    user: Some(user_by_id(id)),
                    role: pb::Role::Member as i32,
                    ..Default::default()
                })
                .collect();
            reply(Resp::MemberList(pb::MemberList { members }))
        }
        Req::SendMessage(r) => {
            chat.send_attempts += 1;
            if !chat.conversations.contains_key(&r.conv_id) {
                return Answer::Error(pb::ErrorCode::NotFound);
            }
            if r.client_msg_id.is_empty() || r.client_msg_id.len() > 64 {
                return Answer::Error(pb::ErrorCode::InvalidArgument);
            }
            let key = (r.conv_id, r.client_msg_id.clone());
            if let Some(ack) = chat.acks.get(&key) {
                return reply(Resp::MessageAck(pb::MessageAck {
                    duplicate: true,
                    ..*ack
                }));
            }
            let kind = pb::MessageKind::try_from(r.kind).unwrap_or(pb::MessageKind::Text);
            let mut message = chat.append(r.conv_id, ME, kind, &r.text);
            message.client_msg_id = r.client_msg_id;
            if r.file_id != 0 {
                message.file = Some(pb::FileRef {
                    file_id: r.file_id,
                    ..Default::default()
                });
            }
            if let Some(last) = chat.conversations.get_mut(&r.conv_id).and_then(|l| l.last_mut()) {
                *last = message.clone();
            }
            let ack = pb::MessageAck {
                conv_id: r.conv_id,
                seq: message.seq,
                message_id: message.id,
                server_time_ms: message.created_at_ms,
                duplicate: false,
            };
            chat.acks.insert(key, ack);
            if !chat.silent {
                let _ = control.send(Control::Push(Box::new(pb::event::Kind::Message(message))));
            }
            if chat.hang_up_before_ack > 0 {
                chat.hang_up_before_ack -= 1;
                return Answer::Hangup;
            }
            reply(Resp::MessageAck(ack))
        }
        Req::SyncMessages(r) => match chat.conversations.get(&r.conv_id) {
            None => Answer::Error(pb::ErrorCode::NotFound),
            Some(log) => {
                let limit = if r.limit == 0 { 100 } else { r.limit as usize };
                let after: Vec<pb::Message> = log.iter().filter(|m| m.seq > r.after_seq).cloned().collect();
                let has_more = after.len() > limit;
                let messages: Vec<pb::Message> = after.into_iter().take(limit).collect();
                let through_seq = if has_more {
                    messages.last().map_or(r.after_seq, |m| m.seq)
                } else {
                    (log.len() as i64).max(r.after_seq)
                };
                reply(Resp::MessageBatch(pb::MessageBatch {
                    conv_id: r.conv_id,
                    messages,
                    through_seq,
                    has_more,
                }))
            }
        },
        Req::FetchHistory(r) => match chat.conversations.get(&r.conv_id) {
            None => Answer::Error(pb::ErrorCode::NotFound),
            Some(log) => {
                let before = if r.before_seq <= 0 { i64::MAX } else { r.before_seq };
                let limit = if r.limit == 0 { 50 } else { r.limit as usize };
                let mut older: Vec<pb::Message> = log
                    .iter()
                    .filter(|m| m.seq < before)
                    .filter(|m| {
                        m.kind != pb::MessageKind::Edit as i32 && m.kind != pb::MessageKind::Recall as i32
                    })
                    .cloned()
                    .collect();
                let has_more = older.len() > limit;
                let messages = older.split_off(older.len().saturating_sub(limit));
                reply(Resp::MessageBatch(pb::MessageBatch {
                    conv_id: r.conv_id,
                    messages,
                    through_seq: 0,
                    has_more,
                }))
            }
        },
        Req::MarkRead(r) => {
            chat.marks.push((r.conv_id, r.seq));
            ok()
        }
        Req::SetTyping(r) => {
            chat.marks.push((r.conv_id, 0));
            ok()
        }
        Req::RecallMessage(r) => {
            let message = chat.append(r.conv_id, ME, pb::MessageKind::Recall, "");
            let message = chat.set_target(message, r.seq);
            let _ = control.send(Control::Push(Box::new(pb::event::Kind::Message(message))));
            ok()
        }
        Req::EditMessage(r) => {
            let message = chat.append(r.conv_id, ME, pb::MessageKind::Edit, &r.text);
            let message = chat.set_target(message, r.seq);
            let _ = control.send(Control::Push(Box::new(pb::event::Kind::Message(message))));
            ok()
        }
        Req::SearchMessages(r) => {
            let messages = chat
                .conversations
                .iter()
                .filter(|(id, _)| r.conv_id == 0 || **id == r.conv_id)
                .flat_map(|(_, log)| log.iter())
                .filter(|m| m.text.contains(&r.query))
                .cloned()
                .collect();
            reply(Resp::SearchResults(pb::SearchResults {
                messages,
                next_cursor: String::new(),
            }))
        }
        Req::SearchUsers(r) => reply(Resp::UserPage(pb::UserPage {
            users: vec![user(3, &r.query)],
            next_cursor: String::new(),
        })),
        Req::InviteMembers(_)
        | Req::LeaveGroup(_)
        | Req::KickMember(_)
        | Req::RenameGroup(_)
        | Req::DeleteForMe(_) => ok(),
        _ => Answer::Error(pb::ErrorCode::NotFound),
    }
}
