//! Printing results: aligned text for people, JSON with `--json` for scripts.
//!
//! The protocol types do not derive serde (they are generated), so the JSON
//! shape is spelled out here; it is part of the CLI's interface and should
//! change only deliberately. Tokens are never part of any output.

use std::time::{SystemTime, UNIX_EPOCH};

use parley_client::pb;
use serde_json::{Value, json};

/// Where results go, and in which form.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    json: bool,
}

impl Output {
    /// Text output, or JSON when `json` is set.
    pub fn new(json: bool) -> Output {
        Output { json }
    }

    /// Prints one result: `human()` as text, or `machine()` as one line of JSON.
    pub fn print(&self, human: impl FnOnce() -> String, machine: impl FnOnce() -> Value) {
        if self.json {
            println!("{}", machine());
        } else {
            let text = human();
            println!("{}", text.trim_end_matches('\n'));
        }
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A past moment relative to `now_ms`, the way people say it.
pub fn ago(ms: i64, now_ms: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    let secs = now_ms.saturating_sub(ms).max(0) / 1000;
    match secs {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// Left-aligned columns separated by two spaces, with a header row;
/// `(none)` under it when there are no rows.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let width = widths.get(i).copied().unwrap_or(0);
                let pad = width.saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(headers.to_vec()) + "\n";
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
        out.push('\n');
    }
    out
}

/// A user's name as shown in text: `username (Display Name)`.
pub fn user_label(user: &pb::User) -> String {
    if user.display_name.is_empty() || user.display_name == user.username {
        user.username.clone()
    } else {
        format!("{} ({})", user.username, user.display_name)
    }
}

/// A profile as text.
pub fn user_text(user: &pb::User) -> String {
    let mut out = format!("{}\n  id: {}\n", user_label(user), user.id);
    if !user.status_line.is_empty() {
        out += &format!("  status: {}\n", user.status_line);
    }
    out
}

/// `online` or when the user was last seen.
pub fn presence_text(presence: Option<&pb::Presence>, now: i64) -> String {
    match presence {
        Some(p) if p.online => "online".into(),
        Some(p) if p.last_seen_ms > 0 => format!("last seen {}", ago(p.last_seen_ms, now)),
        _ => "offline".into(),
    }
}

/// A user as JSON.
pub fn user_json(user: &pb::User) -> Value {
    json!({
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "status_line": user.status_line,
        "avatar_file_id": user.avatar_file_id,
    })
}

fn optional_user_json(user: Option<&pb::User>) -> Value {
    user.map(user_json).unwrap_or(Value::Null)
}

/// A friend as JSON.
pub fn friend_json(friend: &pb::Friend) -> Value {
    json!({
        "user": optional_user_json(friend.user.as_ref()),
        "remark": friend.remark,
        "online": friend.presence.as_ref().is_some_and(|p| p.online),
        "last_seen_ms": friend.presence.as_ref().map_or(0, |p| p.last_seen_ms),
        "since_ms": friend.since_ms,
    })
}

/// A friend request as JSON.
pub fn friend_request_json(request: &pb::FriendRequest) -> Value {
    json!({
        "id": request.id,
        "from": optional_user_json(request.from.as_ref()),
        "to": optional_user_json(request.to.as_ref()),
        "note": request.note,
        "created_at_ms": request.created_at_ms,
    })
}

/// A session as JSON.
pub fn session_json(session: &pb::SessionInfo) -> Value {
    json!({
        "id": session.id,
        "device_name": session.device_name,
        "address": session.address,
        "created_at_ms": session.created_at_ms,
        "last_used_at_ms": session.last_used_at_ms,
        "current": session.current,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        let now = 1_000_000_000;
        assert_eq!(ago(0, now), "never");
        assert_eq!(ago(now - 5_000, now), "just now");
        assert_eq!(ago(now + 5_000, now), "just now");
        assert_eq!(ago(now - 120_000, now), "2 min ago");
        assert_eq!(ago(now - 7_200_000, now), "2 h ago");
        assert_eq!(ago(now - 3 * 86_400_000, now), "3 days ago");
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["alice".to_string(), "Alice A.".to_string(), "online".to_string()],
            vec!["bo".to_string(), "".to_string(), "offline".to_string()],
        ];
        let text = table(&["USERNAME", "NAME", "STATUS"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "USERNAME  NAME      STATUS");
        assert_eq!(lines[1], "alice     Alice A.  online");
        assert_eq!(lines[2], "bo                  offline");
        assert_eq!(table(&["ID"], &[]), "ID\n(none)\n");
    }

    #[test]
    fn presence_and_labels() {
        let online = pb::Presence {
            online: true,
            last_seen_ms: 0,
        };
        assert_eq!(presence_text(Some(&online), 0), "online");
        assert_eq!(presence_text(None, 0), "offline");
        let user = pb::User {
            username: "bob".into(),
            display_name: "Bob".into(),
            ..Default::default()
        };
        assert_eq!(user_label(&user), "bob (Bob)");
        assert_eq!(user_json(&user)["username"], "bob");
    }
}
