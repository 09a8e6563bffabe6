//! Messaging commands: `conversations`, `send`, `send-image`, `send-file`,
//! `history`, `search` and `download`.
//!
//! Conversations are named on the command line by id or, for direct chats,
//! by the other user's username; [`conversation_for`] turns either into a
//! conversation. Transfers show a progress line on a terminal.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use parley_client::{Client, pb};
use serde_json::json;

use crate::args::Recipient;
use crate::context::{Context, Lifetime};
use crate::failure::Failure;
use crate::friends::resolve;
use crate::output::table;
use crate::render::{self, Names, Progress, ack_json, conversation_json, file_json, message_json};

/// The conversation `target` names: one of the user's conversation ids, or
/// a username whose direct conversation is opened.
pub async fn conversation_for(client: &Client, target: &str) -> Result<pb::Conversation> {
    if let Ok(id) = target.parse::<i64>() {
        let conversations = client.conversations().await.context("listing conversations")?;
        if let Some(conversation) = conversations.into_iter().find(|c| c.id == id) {
            return Ok(conversation);
        }
    }
    let user = resolve(client, target).await?;
    client
        .open_direct(user.id)
        .await
        .with_context(|| format!("opening the conversation with {target}"))
}

/// The conversation id and the text/path of a `send…` command line.
async fn recipient(client: &Client, to: Recipient) -> Result<(i64, String)> {
    let mut args = to.args.into_iter();
    match (to.conv, args.next(), args.next()) {
        (Some(conv), Some(payload), None) => Ok((conv, payload)),
        (None, Some(user), Some(payload)) => {
            let user = resolve(client, &user).await?;
            let conversation = client
                .open_direct(user.id)
                .await
                .with_context(|| format!("opening the conversation with {}", user.username))?;
            Ok((conversation.id, payload))
        }
        (Some(_), _, _) => Err(Failure::Usage("with --conv, give only the text or path".into()).into()),
        (None, _, _) => {
            Err(Failure::Usage("give USER and then the text or path (or --conv ID)".into()).into())
        }
    }
}

/// `conversations`.
pub async fn conversations(ctx: &Context) -> Result<()> {
    let authed = ctx.connect_resumed().await?;
    let result = list(&authed.client).await;
    authed.client.close().await;
    let (conversations, names) = result?;
    ctx.out.print(
        || {
            let rows: Vec<Vec<String>> = conversations
                .iter()
                .map(|c| {
                    let last = c.last_message.as_ref();
                    vec![
                        c.id.to_string(),
                        render::title(c, &names),
                        if c.unread > 0 {
                            c.unread.to_string()
                        } else {
                            String::new()
                        },
                        last.map(|m| render::preview(m, &names, 48)).unwrap_or_default(),
                        last.map(|m| render::clock(m.created_at_ms)).unwrap_or_default(),
                    ]
                })
                .collect();
            table(&["ID", "NAME", "UNREAD", "LAST MESSAGE", "TIME"], &rows)
        },
        || json!(conversations.iter().map(conversation_json).collect::<Vec<_>>()),
    );
    Ok(())
}

async fn list(client: &Client) -> Result<(Vec<pb::Conversation>, Names)> {
    let mut conversations = client.conversations().await.context("listing conversations")?;
    // Most recent first, like every chat app.
    conversations.sort_by_key(|c| {
        std::cmp::Reverse(
            c.last_message
                .as_ref()
                .map_or(c.created_at_ms, |m| m.created_at_ms),
        )
    });
    let mut names = Names::default();
    let ids = conversations
        .iter()
        .flat_map(|c| std::iter::once(c.peer_id).chain(c.last_message.iter().map(|m| m.sender_id)));
    names.learn(client, ids.collect::<Vec<_>>()).await;
    Ok((conversations, names))
}

/// `send USER TEXT` / `send --conv ID TEXT`.
pub async fn send(ctx: &Context, to: Recipient) -> Result<()> {
    let authed = ctx.connect_resumed_for(Lifetime::Sending).await?;
    let client = &authed.client;
    let result = async {
        let (conv_id, text) = recipient(client, to).await?;
        let text = if text == "-" { read_stdin()? } else { text };
        client.send_text(conv_id, &text).await.context("sending")
    }
    .await;
    client.close().await;
    let ack = result?;
    ctx.out.print(
        || format!("sent to conversation {} as #{}", ack.conv_id, ack.seq),
        || ack_json(&ack),
    );
    Ok(())
}

fn read_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the message from standard input")?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// `send-image` and `send-file`.
pub async fn send_upload(ctx: &Context, to: Recipient, caption: String, kind: pb::MessageKind) -> Result<()> {
    let authed = ctx.connect_resumed_for(Lifetime::Sending).await?;
    let client = &authed.client;
    let result = async {
        let (conv_id, path) = recipient(client, to).await?;
        let path = PathBuf::from(path);
        let file = upload(client, &path).await?;
        let message = parley_client::OutgoingMessage::file(conv_id, kind, file.file_id, caption);
        let ack = client.send(message).await.context("sending")?;
        Ok::<_, anyhow::Error>((file, ack))
    }
    .await;
    client.close().await;
    let (file, ack) = result?;
    ctx.out.print(
        || {
            format!(
                "sent {} ({}) to conversation {} as #{}",
                file.name,
                render::human_size(file.size),
                ack.conv_id,
                ack.seq
            )
        },
        || json!({ "file": file_json(&file), "ack": ack_json(&ack) }),
    );
    Ok(())
}

/// Uploads `path` with a progress line.
pub async fn upload(client: &Client, path: &Path) -> Result<pb::FileRef> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let progress = Progress::new(format!("uploading {name}"));
    let result = client
        .upload_file(path, None, |done, total| progress.update(done, total))
        .await;
    progress.finish();
    result.with_context(|| format!("uploading {}", path.display()))
}

/// `history CONV [--before SEQ] [--limit N]`.
pub async fn history(ctx: &Context, target: String, before: Option<i64>, limit: u32) -> Result<()> {
    let authed = ctx.connect_resumed().await?;
    let client = &authed.client;
    let result = async {
        let conversation = conversation_for(client, &target).await?;
        let batch = client
            .history(conversation.id, before.unwrap_or(0), limit)
            .await
            .context("reading the history")?;
        let mut names = Names::default();
        names
            .learn(
                client,
                batch.messages.iter().flat_map(Names::ids_in).collect::<Vec<_>>(),
            )
            .await;
        Ok::<_, anyhow::Error>((conversation, batch, names))
    }
    .await;
    client.close().await;
    let (conversation, batch, names) = result?;
    ctx.out.print(
        || {
            let mut text = String::new();
            if batch.has_more
                && let Some(first) = batch.messages.first()
            {
                text += &format!("(older: --before {})\n", first.seq);
            }
            for message in &batch.messages {
                text += &render::line(message, &names);
                text.push('\n');
            }
            if batch.messages.is_empty() {
                text += "(no messages)";
            }
            text
        },
        || {
            json!({
                "conv_id": conversation.id,
                "messages": batch.messages.iter().map(message_json).collect::<Vec<_>>(),
                "has_more": batch.has_more,
            })
        },
    );
    Ok(())
}

/// `search QUERY [--conv ID] [--users]`.
pub async fn search(
    ctx: &Context,
    query: String,
    conv: Option<i64>,
    users: bool,
    limit: u32,
    cursor: String,
) -> Result<()> {
    if users {
        return crate::account::search(ctx, query, limit, cursor).await;
    }
    let authed = ctx.connect_resumed().await?;
    let client = &authed.client;
    let result = async {
        let found = client
            .search(&query, conv, limit, &cursor)
            .await
            .context("searching")?;
        let mut names = Names::default();
        names
            .learn(
                client,
                found.messages.iter().map(|m| m.sender_id).collect::<Vec<_>>(),
            )
            .await;
        Ok::<_, anyhow::Error>((found, names))
    }
    .await;
    client.close().await;
    let (found, names) = result?;
    ctx.out.print(
        || {
            let rows: Vec<Vec<String>> = found
                .messages
                .iter()
                .map(|m| {
                    vec![
                        m.conv_id.to_string(),
                        m.seq.to_string(),
                        render::clock(m.created_at_ms),
                        render::preview(m, &names, 60),
                    ]
                })
                .collect();
            let mut text = table(&["CONV", "SEQ", "TIME", "MESSAGE"], &rows);
            if !found.next_cursor.is_empty() {
                text += &format!("more: --cursor {}", found.next_cursor);
            }
            text
        },
        || {
            json!({
                "messages": found.messages.iter().map(message_json).collect::<Vec<_>>(),
                "next_cursor": found.next_cursor,
            })
        },
    );
    Ok(())
}

/// `download FILE_ID [-o PATH]`.
pub async fn download(ctx: &Context, file_id: i64, output: Option<PathBuf>) -> Result<()> {
    let authed = ctx.connect_resumed().await?;
    let client = &authed.client;
    let result = fetch(client, file_id, output).await;
    client.close().await;
    let (file, path) = result?;
    ctx.out.print(
        || {
            format!(
                "saved {} ({}) to {}",
                file.name,
                render::human_size(file.size),
                path.display()
            )
        },
        || json!({ "file": file_json(&file), "path": path.display().to_string() }),
    );
    Ok(())
}

/// Downloads a file with a progress line to `output`, or to a safe version
/// of its own name in the current directory.
pub async fn fetch(client: &Client, file_id: i64, output: Option<PathBuf>) -> Result<(pb::FileRef, PathBuf)> {
    let dest = output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("parley-file-{file_id}")));
    let progress = Progress::new(format!("downloading file {file_id}"));
    let result = client
        .download_file(file_id, &dest, |done, total| progress.update(done, total))
        .await;
    progress.finish();
    let file = result.with_context(|| format!("downloading file {file_id}"))?;
    if output.is_some() {
        return Ok((file, dest));
    }
    let Some(named) = free_name(&safe_file_name(&file.name, file_id)) else {
        return Ok((file, dest));
    };
    std::fs::rename(&dest, &named)
        .with_context(|| format!("renaming {} to {}", dest.display(), named.display()))?;
    Ok((file, named))
}

/// `name`, or `stem-1.ext`, `stem-2.ext` … when taken; `None` if all are.
pub fn free_name(name: &str) -> Option<PathBuf> {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    std::iter::once(PathBuf::from(name))
        .chain((1..100).map(|n| PathBuf::from(format!("{stem}-{n}{ext}"))))
        .find(|path| !path.exists())
}

/// A name from another user made safe as a file name in the current
/// directory: no directories, no control characters, no leading dots.
pub fn safe_file_name(name: &str, file_id: i64) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|c| !c.is_control()).take(200).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim().to_string();
    if cleaned.is_empty() {
        format!("parley-file-{file_id}")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_others_are_made_safe() {
        assert_eq!(safe_file_name("photo.png", 1), "photo.png");
        assert_eq!(safe_file_name("../../etc/passwd", 1), "passwd");
        assert_eq!(safe_file_name("C:\\x\\evil.exe", 1), "evil.exe");
        assert_eq!(safe_file_name(".bashrc", 1), "bashrc");
        assert_eq!(safe_file_name("..", 7), "parley-file-7");
        assert_eq!(safe_file_name("a\u{1b}[31mb", 1), "a[31mb");
    }

    #[test]
    fn taken_names_get_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("doc.txt");
        let name = base.to_str().unwrap();
        assert_eq!(free_name(name), Some(base.clone()));
        std::fs::write(&base, b"").unwrap();
        assert_eq!(free_name(name), Some(dir.path().join("doc-1.txt")));
    }
}
