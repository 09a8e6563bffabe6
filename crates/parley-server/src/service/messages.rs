//! Messages: send (through the group-commit writer), sync and history, read
//! pointers, typing, edit/recall/delete-for-me, search.
//!
//! Edits and recalls are themselves messages (kinds EDIT and RECALL) in the
//! conversation's seq space: the writer applies them to their target in the
//! same transaction, and devices that were offline replay them through sync
//! like any other message.

use std::time::Instant;

use parley_proto::pb::{self, ErrorCode, event::Kind as Ev, server_frame::Body as Resp};
use parley_store::{Effect, MessageRow, NewMessage};
use serde::{Deserialize, Serialize};

use super::{Conn, Ctx, Fail, Reply, db, fail, now_ms, rate_limited};
use crate::committer::{AckTo, Job};
use crate::convcache::ConvInfo;

/// Longest client message id, in bytes.
const MAX_CLIENT_ID_BYTES: usize = 64;
/// How long after sending a message may be recalled.
const RECALL_WINDOW_MS: i64 = 2 * 60 * 1000;
/// Largest page of sync, history or search results.
const MAX_PAGE: u32 = 500;

fn page(limit: u32, default: u32) -> u32 {
    if limit == 0 { default } else { limit.min(MAX_PAGE) }
}

/// The stored form of a system notice (JSON in the message body).
#[derive(Serialize, Deserialize, Default)]
struct StoredNotice {
    kind: i32,
    actor: i64,
    #[serde(default)]
    users: Vec<i64>,
    #[serde(default)]
    name: String,
}

/// Converts a stored message to its wire form, resolving its file reference.
pub async fn message_pb(ctx: &Ctx, row: &MessageRow) -> pb::Message {
    let kind = pb::MessageKind::try_from(row.kind).unwrap_or(pb::MessageKind::Unspecified);
    let mut msg = pb::Message {
        conv_id: row.conv_id,
        seq: row.seq,
        id: row.id,
        sender_id: row.sender_id,
        client_msg_id: row.client_msg_id.clone(),
        kind: row.kind,
        text: row.body.clone(),
        file: None,
        system: None,
        created_at_ms: row.created_at,
        edited_at_ms: row.edited_at.unwrap_or(0),
        recalled: row.recalled_at.is_some(),
        target_seq: row.target_seq,
        call: None,
    };
    if kind == pb::MessageKind::CallRecord {
        let (record, summary) = super::calls::record_pb(&row.body);
        msg.call = Some(record);
        msg.text = summary;
    }
    if kind == pb::MessageKind::System {
        let notice: StoredNotice = serde_json::from_str(&row.body).unwrap_or_default();
        msg.text.clear();
        msg.system = Some(pb::SystemNotice {
            kind: notice.kind,
            actor_id: notice.actor,
            user_ids: notice.users,
            name: notice.name,
        });
    }
    if let Some(file_id) = row.file_id.filter(|_| row.recalled_at.is_none()) {
        match ctx.store.file(file_id).await {
            Ok(Some(f)) => {
                msg.file = Some(pb::FileRef {
                    file_id: f.id,
                    name: f.name,
                    size: u64::try_from(f.size).unwrap_or(0),
                    mime: f.mime,
                    sha256: hex::encode(&f.sha256),
                    width: u32::try_from(f.width).unwrap_or(0),
                    height: u32::try_from(f.height).unwrap_or(0),
                    has_thumbnail: f.thumb_sha256.is_some(),
                });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, file = file_id, "file of a message unreadable"),
        }
    }
    msg
}

/// Writes a system notice into the conversation (through the writer, so it gets a seq).
pub(super) async fn system_notice(
    ctx: &Ctx,
    conv_id: i64,
    actor: i64,
    kind: pb::system_notice::Kind,
    users: &[i64],
    name: &str,
) -> Result<(), Fail> {
    let body = serde_json::to_string(&StoredNotice {
        kind: kind as i32,
        actor,
        users: users.to_vec(),
        name: name.to_string(),
    })
    .map_err(|_| fail(ErrorCode::Internal, "internal server error"))?;
    let msg = NewMessage {
        conv_id,
        sender_id: actor,
        client_msg_id: format!("sys-{}", ctx.store.next_id()),
        kind: pb::MessageKind::System as i32,
        body,
        file_id: None,
        effect: Effect::None,
    };
    ctx.committer
        .append(msg)
        .await
        .map(|_| ())
        .map_err(|e| fail(ErrorCode::Unavailable, e))
}

/// The caller's view of a conversation they belong to, or NOT_FOUND.
async fn membership(ctx: &Ctx, conv_id: i64, user_id: i64) -> Result<std::sync::Arc<ConvInfo>, Fail> {
    match ctx.convs.get(&ctx.store, conv_id).await? {
        Some(info) if info.has(user_id) => Ok(info),
        _ => Err(fail(ErrorCode::NotFound, "no such conversation")),
    }
}

/// Checks the sender may post to the conversation now.
async fn may_post(ctx: &Ctx, info: &ConvInfo, me: i64) -> Result<(), Fail> {
    if let Some(peer) = info.peer_of(me)
        && !ctx.convs.direct_allowed(&ctx.store, me, peer).await?
    {
        return Err(fail(ErrorCode::Forbidden, "you can only message your friends"));
    }
    Ok(())
}

fn client_id(raw: &str) -> Result<String, Fail> {
    if raw.is_empty() || raw.len() > MAX_CLIENT_ID_BYTES || raw.chars().any(char::is_control) {
        return Err(fail(
            ErrorCode::InvalidArgument,
            format!("client_msg_id must be 1 to {MAX_CLIENT_ID_BYTES} bytes"),
        ));
    }
    Ok(raw.to_string())
}

fn text_body(ctx: &Ctx, text: &str, required: bool) -> Result<String, Fail> {
    let max = ctx.cfg.max_text_bytes;
    if text.len() > max {
        return Err(fail(
            ErrorCode::InvalidArgument,
            format!("text is limited to {max} bytes"),
        ));
    }
    if required && text.trim().is_empty() {
        return Err(fail(ErrorCode::InvalidArgument, "message text must not be empty"));
    }
    Ok(text.to_string())
}

async fn submit(ctx: &Ctx, conn: &Conn, request_id: u64, msg: NewMessage) -> Result<(), Fail> {
    // The connection stops reading while its queue is half full (see
    // `connection::session_loop`), so a slot is normally free; if events took
    // it meanwhile, refuse this one message rather than risk dropping its ack.
    let slot = conn.tx.clone().try_reserve_owned().map_err(|_| {
        fail(
            ErrorCode::RateLimited,
            "too many messages in flight on this connection; retry after the pending acks",
        )
    })?;
    let job = Job {
        msg,
        ack: AckTo::Connection { request_id, slot },
    };
    ctx.committer
        .submit(job)
        .await
        .map_err(|_| fail(ErrorCode::ShuttingDown, "server is shutting down"))
}

pub(super) async fn send(
    ctx: &Ctx,
    conn: &mut Conn,
    request_id: u64,
    r: pb::SendMessage,
) -> Result<(), Fail> {
    let me = conn.require_auth()?.user_id;
    let client_msg_id = client_id(&r.client_msg_id)?;
    let info = membership(ctx, r.conv_id, me).await?;
    may_post(ctx, &info, me).await?;
    if let Err(wait) = ctx.messages.take(&me, Instant::now()) {
        return Err(rate_limited("messages", wait));
    }
    let kind = pb::MessageKind::try_from(r.kind).unwrap_or(pb::MessageKind::Unspecified);
    let (body, file_id) = match kind {
        pb::MessageKind::Text => (text_body(ctx, &r.text, true)?, None),
        pb::MessageKind::Image | pb::MessageKind::File | pb::MessageKind::VoiceNote => {
            let file = db("file", ctx.store.file(r.file_id))
                .await?
                .filter(|_| r.file_id != 0)
                .ok_or_else(|| fail(ErrorCode::NotFound, "no such file"))?;
            if !db("can_read_file", ctx.store.can_read_file(me, file.id)).await? {
                return Err(fail(ErrorCode::NotFound, "no such file"));
            }
            if kind == pb::MessageKind::Image && file.width == 0 {
                return Err(fail(ErrorCode::InvalidArgument, "that file is not an image"));
            }
            // Granted before the commit so members can fetch it the moment the message arrives.
            db("grant_file", ctx.store.grant_file(file.id, r.conv_id)).await?;
            (text_body(ctx, &r.text, false)?, Some(file.id))
        }
        _ => {
            return Err(fail(
                ErrorCode::InvalidArgument,
                "this kind of message cannot be sent directly",
            ));
        }
    };
    let msg = NewMessage {
        conv_id: r.conv_id,
        sender_id: me,
        client_msg_id,
        kind: kind as i32,
        body,
        file_id,
        effect: Effect::None,
    };
    submit(ctx, conn, request_id, msg).await
}

pub(super) async fn sync(ctx: &Ctx, conn: &mut Conn, r: pb::SyncMessages) -> Reply {
    let me = conn.require_auth()?.user_id;
    membership(ctx, r.conv_id, me).await?;
    let limit = page(r.limit, 200);
    let (rows, through) = db(
        "messages_after",
        ctx.store
            .messages_after(r.conv_id, me, r.after_seq.max(0), limit + 1),
    )
    .await?;
    let has_more = rows.len() > limit as usize;
    let rows = &rows[..rows.len().min(limit as usize)];
    let through_seq = if has_more {
        rows.last().map_or(through, |m| m.seq)
    } else {
        through
    };
    let mut messages = Vec::with_capacity(rows.len());
    for row in rows {
        messages.push(message_pb(ctx, row).await);
    }
    Ok(Resp::MessageBatch(pb::MessageBatch {
        conv_id: r.conv_id,
        messages,
        through_seq,
        has_more,
    }))
}

pub(super) async fn history(ctx: &Ctx, conn: &mut Conn, r: pb::FetchHistory) -> Reply {
    let me = conn.require_auth()?.user_id;
    membership(ctx, r.conv_id, me).await?;
    let limit = page(r.limit, 50);
    let rows = db(
        "messages_before",
        ctx.store.messages_before(r.conv_id, me, r.before_seq, limit + 1),
    )
    .await?;
    // One extra row tells whether older messages remain; it is the oldest, so drop it.
    let has_more = rows.len() > limit as usize;
    let rows = if has_more { &rows[1..] } else { &rows[..] };
    let mut messages = Vec::with_capacity(rows.len());
    for row in rows {
        messages.push(message_pb(ctx, row).await);
    }
    Ok(Resp::MessageBatch(pb::MessageBatch {
        conv_id: r.conv_id,
        through_seq: messages.last().map_or(0, |m| m.seq),
        messages,
        has_more,
    }))
}

pub(super) async fn mark_read(ctx: &Ctx, conn: &mut Conn, r: pb::MarkRead) -> Reply {
    let me = conn.require_auth()?.user_id;
    let info = membership(ctx, r.conv_id, me).await?;
    let seq = db("mark_read", ctx.store.mark_read(r.conv_id, me, r.seq)).await?;
    let receipt = pb::ServerFrame::event(Ev::Read(pb::ReadReceipt {
        conv_id: r.conv_id,
        user_id: me,
        seq,
    }));
    // Own devices update their badges; in a direct chat the peer sees "read".
    let mut targets = vec![me];
    targets.extend(info.peer_of(me));
    if let Some(bytes) = ctx.hub.encode(&receipt) {
        ctx.hub.push_encoded(&targets, &bytes);
    }
    Ok(Resp::Ok(pb::Ok {}))
}

pub(super) async fn typing(ctx: &Ctx, conn: &mut Conn, r: pb::SetTyping) -> Reply {
    let me = conn.require_auth()?.user_id;
    let info = membership(ctx, r.conv_id, me).await?;
    if let Err(wait) = ctx.typing.take(&(me, r.conv_id), Instant::now()) {
        return Err(rate_limited("typing notices", wait));
    }
    let notice = pb::ServerFrame::event(Ev::Typing(pb::TypingNotice {
        conv_id: r.conv_id,
        user_id: me,
    }));
    let others: Vec<i64> = info.members.iter().copied().filter(|m| *m != me).collect();
    if let Some(bytes) = ctx.hub.encode(&notice) {
        ctx.hub.push_encoded(&others, &bytes);
    }
    Ok(Resp::Ok(pb::Ok {}))
}

/// The caller's own, not yet recalled, displayable message at `seq`.
async fn own_message(ctx: &Ctx, conv_id: i64, seq: i64, me: i64) -> Result<MessageRow, Fail> {
    let row = db("message", ctx.store.message(conv_id, seq))
        .await?
        .ok_or_else(|| fail(ErrorCode::NotFound, "no such message"))?;
    let kind = pb::MessageKind::try_from(row.kind).unwrap_or(pb::MessageKind::Unspecified);
    let changeable = matches!(
        kind,
        pb::MessageKind::Text | pb::MessageKind::Image | pb::MessageKind::File | pb::MessageKind::VoiceNote
    );
    if row.sender_id != me || !changeable {
        return Err(fail(
            ErrorCode::Forbidden,
            "you can only change your own messages",
        ));
    }
    if row.recalled_at.is_some() {
        return Err(fail(ErrorCode::InvalidArgument, "that message was recalled"));
    }
    Ok(row)
}

/// Posts an EDIT/RECALL message and waits for its commit.
async fn post_effect(
    ctx: &Ctx,
    conv_id: i64,
    me: i64,
    client_msg_id: String,
    kind: pb::MessageKind,
    body: String,
    effect: Effect,
) -> Reply {
    let msg = NewMessage {
        conv_id,
        sender_id: me,
        client_msg_id,
        kind: kind as i32,
        body,
        file_id: None,
        effect,
    };
    ctx.committer
        .append(msg)
        .await
        .map_err(|e| fail(ErrorCode::Unavailable, e))?;
    Ok(Resp::Ok(pb::Ok {}))
}

pub(super) async fn recall(ctx: &Ctx, conn: &mut Conn, r: pb::RecallMessage) -> Reply {
    let me = conn.require_auth()?.user_id;
    let info = membership(ctx, r.conv_id, me).await?;
    may_post(ctx, &info, me).await?;
    let row = own_message(ctx, r.conv_id, r.seq, me).await?;
    if now_ms().saturating_sub(row.created_at) > RECALL_WINDOW_MS {
        return Err(fail(
            ErrorCode::Forbidden,
            "messages can only be recalled within 2 minutes",
        ));
    }
    // One recall per message: a retried recall is a duplicate, not a second notice.
    let id = format!("recall-{}", r.seq);
    post_effect(
        ctx,
        r.conv_id,
        me,
        id,
        pb::MessageKind::Recall,
        String::new(),
        Effect::Recall { target_seq: r.seq },
    )
    .await
}

pub(super) async fn edit(ctx: &Ctx, conn: &mut Conn, r: pb::EditMessage) -> Reply {
    let me = conn.require_auth()?.user_id;
    let info = membership(ctx, r.conv_id, me).await?;
    may_post(ctx, &info, me).await?;
    let row = own_message(ctx, r.conv_id, r.seq, me).await?;
    if row.kind != pb::MessageKind::Text as i32 {
        return Err(fail(
            ErrorCode::InvalidArgument,
            "only text messages can be edited",
        ));
    }
    let text = text_body(ctx, &r.text, true)?;
    let id = if r.client_msg_id.is_empty() {
        format!("edit-{}-{}", r.seq, ctx.store.next_id())
    } else {
        client_id(&r.client_msg_id)?
    };
    post_effect(
        ctx,
        r.conv_id,
        me,
        id,
        pb::MessageKind::Edit,
        text.clone(),
        Effect::Edit {
            target_seq: r.seq,
            text,
        },
    )
    .await
}

pub(super) async fn delete_for_me(ctx: &Ctx, conn: &mut Conn, r: pb::DeleteForMe) -> Reply {
    let me = conn.require_auth()?.user_id;
    membership(ctx, r.conv_id, me).await?;
    if r.seqs.is_empty() || r.seqs.len() > MAX_PAGE as usize {
        return Err(fail(
            ErrorCode::InvalidArgument,
            format!("give 1 to {MAX_PAGE} messages"),
        ));
    }
    db(
        "hide_messages",
        ctx.store.hide_messages(me, r.conv_id, &r.seqs, now_ms()),
    )
    .await?;
    ctx.hub.push(
        me,
        &pb::ServerFrame::event(Ev::MessagesHidden(pb::MessagesHidden {
            conv_id: r.conv_id,
            seqs: r.seqs,
        })),
    );
    Ok(Resp::Ok(pb::Ok {}))
}

pub(super) async fn search(ctx: &Ctx, conn: &mut Conn, r: pb::SearchMessages) -> Reply {
    let me = conn.require_auth()?.user_id;
    let query = crate::validate::short_text(&r.query, 256, "query")?;
    if query.is_empty() {
        return Err(fail(ErrorCode::InvalidArgument, "search query must not be empty"));
    }
    let conv = if r.conv_id == 0 {
        None
    } else {
        membership(ctx, r.conv_id, me).await?;
        Some(r.conv_id)
    };
    let before = if r.cursor.is_empty() {
        0
    } else {
        r.cursor
            .parse::<i64>()
            .map_err(|_| fail(ErrorCode::InvalidArgument, "invalid cursor"))?
    };
    let limit = page(r.limit, 20).min(100);
    let rows = db(
        "search_messages",
        ctx.store.search_messages(me, conv, &query, before, limit),
    )
    .await?;
    let next_cursor = match rows.last() {
        Some(last) if rows.len() == limit as usize => last.id.to_string(),
        _ => String::new(),
    };
    let mut messages = Vec::with_capacity(rows.len());
    for row in &rows {
        messages.push(message_pb(ctx, row).await);
    }
    Ok(Resp::SearchResults(pb::SearchResults {
        messages,
        next_cursor,
    }))
}
