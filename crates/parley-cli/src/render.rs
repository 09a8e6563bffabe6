//! How conversations, messages and transfers look: as text lines for
//! people and as JSON for scripts.
//!
//! Messages name users by id, so text output goes through [`Names`], a
//! small cache filled with profile lookups before rendering. Times are shown
//! in the local time zone: `14:03` today, `03-17 14:03` otherwise.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use chrono::{Local, TimeZone};
use parley_client::{Client, pb};
use serde_json::{Value, json};

use crate::output::user_json;

/// Display names of users by id, looked up on demand.
#[derive(Default, Debug)]
pub struct Names {
    names: HashMap<i64, String>,
}

impl Names {
    /// Remembers a user's name.
    pub fn insert(&mut self, user: &pb::User) {
        self.names.insert(user.id, user.username.clone());
    }

    /// Looks up every id not known yet; failures just leave the id unnamed.
    pub async fn learn(&mut self, client: &Client, ids: impl IntoIterator<Item = i64>) {
        for id in ids {
            if id == 0 || self.names.contains_key(&id) {
                continue;
            }
            if let Ok(user) = client.profile(id).await {
                self.insert(&user);
            }
        }
    }

    /// The ids a message mentions: its sender and any users of a notice.
    pub fn ids_in(message: &pb::Message) -> Vec<i64> {
        let mut ids = vec![message.sender_id];
        if let Some(system) = &message.system {
            ids.push(system.actor_id);
            ids.extend(&system.user_ids);
        }
        ids
    }

    /// The name of `id`, or `user#ID` when unknown.
    pub fn get(&self, id: i64) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("user#{id}"))
    }
}

/// `14:03` for today, `03-17 14:03` for other days, local time.
pub fn clock(ms: i64) -> String {
    match Local.timestamp_millis_opt(ms).single() {
        Some(time) if time.date_naive() == Local::now().date_naive() => time.format("%H:%M").to_string(),
        Some(time) => time.format("%m-%d %H:%M").to_string(),
        None => "--:--".into(),
    }
}

/// `512 B`, `1.5 KiB`, `2.0 MiB`, `1.1 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn kind(message: &pb::Message) -> pb::MessageKind {
    pb::MessageKind::try_from(message.kind).unwrap_or(pb::MessageKind::Unspecified)
}

fn file_label(word: &str, file: Option<&pb::FileRef>) -> String {
    let Some(file) = file else {
        return format!("[{word}]");
    };
    let mut parts = vec![format!("{word} {}", file.name)];
    if file.width > 0 && file.height > 0 {
        parts.push(format!("{}×{}", file.width, file.height));
    }
    parts.push(human_size(file.size));
    parts.push(format!("file {}", file.file_id));
    format!("[{}]", parts.join(", "))
}

/// What a message says, without sender or time.
pub fn body(message: &pb::Message, names: &Names) -> String {
    if message.recalled {
        return "[message recalled]".into();
    }
    let caption = |label: String| {
        if message.text.is_empty() {
            label
        } else {
            format!("{label} {}", message.text)
        }
    };
    let text = match kind(message) {
        pb::MessageKind::Image => caption(file_label("image", message.file.as_ref())),
        pb::MessageKind::File => caption(file_label("file", message.file.as_ref())),
        pb::MessageKind::VoiceNote => caption(file_label("voice note", message.file.as_ref())),
        pb::MessageKind::CallRecord => format!("[call] {}", message.text),
        pb::MessageKind::System => notice(message, names),
        pb::MessageKind::Edit => format!("edited #{}: {}", message.target_seq, message.text),
        pb::MessageKind::Recall => format!("recalled #{}", message.target_seq),
        _ => message.text.clone(),
    };
    if message.edited_at_ms > 0 {
        format!("{text} (edited)")
    } else {
        text
    }
}

/// A system notice in words.
fn notice(message: &pb::Message, names: &Names) -> String {
    let Some(system) = &message.system else {
        return message.text.clone();
    };
    let actor = names.get(system.actor_id);
    let users = system
        .user_ids
        .iter()
        .map(|id| names.get(*id))
        .collect::<Vec<_>>()
        .join(", ");
    use pb::system_notice::Kind;
    match Kind::try_from(system.kind).unwrap_or(Kind::Unspecified) {
        Kind::Created => format!("{actor} created the group \"{}\"", system.name),
        Kind::Joined => format!("{actor} added {users}"),
        Kind::Left => format!("{users} left"),
        Kind::Kicked => format!("{actor} removed {users}"),
        Kind::Renamed => format!("{actor} renamed the group to \"{}\"", system.name),
        Kind::Unspecified => message.text.clone(),
    }
}

/// One line of a chat: `14:03 #12 bob: hello`, notices as `* …`.
pub fn line(message: &pb::Message, names: &Names) -> String {
    let time = clock(message.created_at_ms);
    let text = body(message, names);
    match kind(message) {
        pb::MessageKind::System => format!("{time} #{} * {text}", message.seq),
        pb::MessageKind::Edit | pb::MessageKind::Recall => {
            format!("{time}     {} {text}", names.get(message.sender_id))
        }
        _ => format!("{time} #{} {}: {text}", message.seq, names.get(message.sender_id)),
    }
}

/// A single-line preview of at most `width` characters.
pub fn preview(message: &pb::Message, names: &Names, width: usize) -> String {
    let text =
        format!("{}: {}", names.get(message.sender_id), body(message, names)).replace(['\n', '\r'], " ");
    if text.chars().count() <= width {
        text
    } else {
        let cut: String = text.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// What a conversation is called: the group name or the peer's name.
pub fn title(conversation: &pb::Conversation, names: &Names) -> String {
    if conversation.kind == pb::ConversationKind::Group as i32 {
        if conversation.name.is_empty() {
            format!("group {}", conversation.id)
        } else {
            conversation.name.clone()
        }
    } else {
        names.get(conversation.peer_id)
    }
}

/// A file reference as JSON (ids as numbers, like the rest of the CLI's JSON).
pub fn file_json(file: &pb::FileRef) -> Value {
    json!({
        "file_id": file.file_id, "name": file.name, "size": file.size, "mime": file.mime,
        "sha256": file.sha256, "width": file.width, "height": file.height,
        "has_thumbnail": file.has_thumbnail,
    })
}

/// A message as JSON.
pub fn message_json(message: &pb::Message) -> Value {
    json!({
        "conv_id": message.conv_id,
        "seq": message.seq,
        "id": message.id,
        "sender_id": message.sender_id,
        "client_msg_id": message.client_msg_id,
        "kind": kind(message).as_str_name().to_ascii_lowercase(),
        "text": message.text,
        "file": message.file.as_ref().map(file_json),
        "created_at_ms": message.created_at_ms,
        "edited_at_ms": message.edited_at_ms,
        "recalled": message.recalled,
        "target_seq": message.target_seq,
    })
}

/// A conversation as JSON.
pub fn conversation_json(c: &pb::Conversation) -> Value {
    let kind = pb::ConversationKind::try_from(c.kind).unwrap_or(pb::ConversationKind::Unspecified);
    let role = pb::Role::try_from(c.role).unwrap_or(pb::Role::Unspecified);
    json!({
        "id": c.id,
        "kind": kind.as_str_name().to_ascii_lowercase(),
        "name": c.name,
        "peer_id": c.peer_id,
        "owner_id": c.owner_id,
        "role": role.as_str_name().to_ascii_lowercase(),
        "member_count": c.member_count,
        "max_seq": c.max_seq,
        "read_seq": c.read_seq,
        "peer_read_seq": c.peer_read_seq,
        "unread": c.unread,
        "last_message": c.last_message.as_ref().map(message_json),
        "created_at_ms": c.created_at_ms,
    })
}

/// A member as JSON.
pub fn member_json(member: &pb::Member) -> Value {
    let role = pb::Role::try_from(member.role).unwrap_or(pb::Role::Unspecified);
    json!({
        "user": member.user.as_ref().map(user_json),
        "role": role.as_str_name().to_ascii_lowercase(),
        "joined_at_ms": member.joined_at_ms,
        "read_seq": member.read_seq,
    })
}

/// A message ack as JSON.
pub fn ack_json(ack: &pb::MessageAck) -> Value {
    json!({
        "conv_id": ack.conv_id, "seq": ack.seq, "message_id": ack.message_id,
        "server_time_ms": ack.server_time_ms, "duplicate": ack.duplicate,
    })
}

/// A transfer progress line on stderr, redrawn in place on a terminal at
/// most ten times a second; silent when stderr is not a terminal.
pub struct Progress {
    label: String,
    shown: std::sync::Mutex<Option<Instant>>,
    enabled: bool,
}

impl Progress {
    /// A progress line for `label` (e.g. "uploading photo.png").
    pub fn new(label: impl Into<String>) -> Progress {
        Progress {
            label: label.into(),
            shown: std::sync::Mutex::new(None),
            enabled: std::io::stderr().is_terminal(),
        }
    }

    /// Reports `done` of `total` bytes.
    pub fn update(&self, done: u64, total: u64) {
        if !self.enabled {
            return;
        }
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        let finished = total > 0 && done >= total;
        if !finished && shown.is_some_and(|at| at.elapsed() < Duration::from_millis(100)) {
            return;
        }
        *shown = Some(Instant::now());
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{} {percent:>3}%  {} / {}",
            self.label,
            human_size(done),
            human_size(total)
        );
        let _ = err.flush();
    }

    /// Ends the line (if one was drawn).
    pub fn finish(&self) {
        let shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        if self.enabled && shown.is_some() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: pb::MessageKind, text: &str) -> pb::Message {
        pb::Message {
            conv_id: 1,
            seq: 12,
            sender_id: 2,
            kind: kind as i32,
            text: text.into(),
            created_at_ms: 1_700_000_000_000,
            ..Default::default()
        }
    }

    fn names() -> Names {
        let mut names = Names::default();
        names.insert(&pb::User {
            id: 2,
            username: "bob".into(),
            ..Default::default()
        });
        names
    }

    #[test]
    fn sizes_read_like_people_say_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 20), "3.0 MiB");
    }

    #[test]
    fn messages_render_as_lines() {
        let names = names();
        let text = line(&message(pb::MessageKind::Text, "hello"), &names);
        assert!(text.ends_with("#12 bob: hello"), "{text}");
        let mut image = message(pb::MessageKind::Image, "look");
        image.file = Some(pb::FileRef {
            file_id: 9,
            name: "a.png".into(),
            size: 2048,
            width: 640,
            height: 480,
            ..Default::default()
        });
        assert_eq!(
            body(&image, &names),
            "[image a.png, 640×480, 2.0 KiB, file 9] look"
        );
        let mut recalled = message(pb::MessageKind::Text, "oops");
        recalled.recalled = true;
        assert_eq!(body(&recalled, &names), "[message recalled]");
        let mut edited = message(pb::MessageKind::Text, "fixed");
        edited.edited_at_ms = 1;
        assert_eq!(body(&edited, &names), "fixed (edited)");
        assert_eq!(names.get(77), "user#77");
    }

    #[test]
    fn notices_name_the_people_involved() {
        let names = names();
        let mut created = message(pb::MessageKind::System, "");
        created.system = Some(pb::SystemNotice {
            kind: pb::system_notice::Kind::Created as i32,
            actor_id: 2,
            name: "team".into(),
            ..Default::default()
        });
        assert_eq!(body(&created, &names), "bob created the group \"team\"");
        assert!(line(&created, &names).contains("* bob created"));
    }

    #[test]
    fn previews_are_cut_to_width() {
        let names = names();
        let long = message(pb::MessageKind::Text, "a very long message\nwith lines");
        let text = preview(&long, &names, 16);
        assert_eq!(text.chars().count(), 16);
        assert!(text.ends_with('…') && !text.contains('\n'));
    }

    #[test]
    fn json_shapes() {
        let m = message(pb::MessageKind::Text, "hi");
        assert_eq!(message_json(&m)["kind"], "text");
        let c = pb::Conversation {
            id: 5,
            kind: pb::ConversationKind::Group as i32,
            role: pb::Role::Owner as i32,
            ..Default::default()
        };
        assert_eq!(conversation_json(&c)["kind"], "group");
        assert_eq!(conversation_json(&c)["role"], "owner");
    }
}
