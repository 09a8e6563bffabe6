//! Conversations: direct chats between friends, groups with roles, the
//! per-user conversation list.
//!
//! Every membership change is also a system-notice message in the
//! conversation, so devices that were offline learn about it through the same
//! seq-ordered sync as everything else. Notices about someone leaving are
//! written before they leave, so they receive them too.

use parley_proto::pb::{self, ErrorCode, event::Kind as Ev, server_frame::Body as Resp};
use parley_store::{ConvKind, ConversationRow, MemberRow, Role};

use super::messages::{message_pb, system_notice};
use super::{Conn, Ctx, Fail, Reply, db, fail, now_ms, user_pb};
use crate::validate;

pub(super) fn role_pb(r: Role) -> pb::Role {
    match r {
        Role::Owner => pb::Role::Owner,
        Role::Admin => pb::Role::Admin,
        Role::Member => pb::Role::Member,
    }
}

fn kind_pb(k: ConvKind) -> pb::ConversationKind {
    match k {
        ConvKind::Direct => pb::ConversationKind::Direct,
        ConvKind::Group => pb::ConversationKind::Group,
    }
}

/// The conversation as `viewer` sees it; `member` is the viewer's row when known.
async fn conversation_pb(
    ctx: &Ctx,
    conv: &ConversationRow,
    viewer: i64,
    member: Option<&MemberRow>,
) -> Result<pb::Conversation, Fail> {
    let members = db("members", ctx.store.members(conv.id)).await?;
    let me = member
        .cloned()
        .or_else(|| members.iter().find(|m| m.user_id == viewer).cloned());
    let peer = (conv.kind == ConvKind::Direct)
        .then(|| members.iter().find(|m| m.user_id != viewer))
        .flatten();
    let read_seq = me.as_ref().map_or(0, |m| m.read_seq);
    let last = db("last_message", ctx.store.last_message(conv.id, viewer)).await?;
    let unread = db("unread_count", ctx.store.unread_count(conv.id, viewer, read_seq)).await?;
    let last_message = match last {
        Some(row) => Some(message_pb(ctx, &row).await),
        None => None,
    };
    Ok(pb::Conversation {
        id: conv.id,
        kind: kind_pb(conv.kind) as i32,
        name: conv.name.clone(),
        owner_id: conv.owner_id,
        max_seq: conv.max_seq,
        read_seq,
        role: me.as_ref().map_or(pb::Role::Unspecified, |m| role_pb(m.role)) as i32,
        peer_id: peer.map_or(0, |p| p.user_id),
        member_count: u32::try_from(members.len()).unwrap_or(u32::MAX),
        created_at_ms: conv.created_at,
        unread: u64::try_from(unread).unwrap_or(0),
        last_message,
        peer_read_seq: peer.map_or(0, |p| p.read_seq),
    })
}

/// Re-reads the conversation and pushes each member's view of it.
async fn announce(ctx: &Ctx, conv_id: i64) -> Result<(), Fail> {
    ctx.convs.invalidate(conv_id);
    let Some(conv) = db("conversation", ctx.store.conversation(conv_id)).await? else {
        return Ok(());
    };
    for m in db("members", ctx.store.members(conv_id)).await? {
        if ctx.hub.is_online(m.user_id) {
            let view = conversation_pb(ctx, &conv, m.user_id, Some(&m)).await?;
            ctx.hub
                .push(m.user_id, &pb::ServerFrame::event(Ev::ConversationUpdated(view)));
        }
    }
    Ok(())
}

/// The caller's membership of a group, or NOT_FOUND (never revealing groups one is not in).
async fn group_member(ctx: &Ctx, conv_id: i64, user_id: i64) -> Result<(ConversationRow, MemberRow), Fail> {
    let not_found = || fail(ErrorCode::NotFound, "no such conversation");
    let conv = db("conversation", ctx.store.conversation(conv_id))
        .await?
        .ok_or_else(not_found)?;
    let me = db("member", ctx.store.member(conv_id, user_id))
        .await?
        .ok_or_else(not_found)?;
    if conv.kind != ConvKind::Group {
        return Err(fail(ErrorCode::InvalidArgument, "not a group conversation"));
    }
    Ok((conv, me))
}

async fn require_friends(ctx: &Ctx, me: i64, others: &[i64]) -> Result<(), Fail> {
    for &u in others {
        if u == me || !ctx.convs.direct_allowed(&ctx.store, me, u).await? {
            return Err(fail(ErrorCode::Forbidden, format!("user {u} is not your friend")));
        }
    }
    Ok(())
}

pub(super) async fn open_direct(ctx: &Ctx, conn: &mut Conn, r: pb::OpenDirect) -> Reply {
    let me = conn.require_auth()?.user_id;
    require_friends(ctx, me, &[r.user_id]).await?;
    let (conv, created) = db("open_direct", ctx.store.open_direct(me, r.user_id, now_ms())).await?;
    if created {
        announce(ctx, conv.id).await?;
    }
    Ok(Resp::Conversation(conversation_pb(ctx, &conv, me, None).await?))
}

fn group_name(raw: &str) -> Result<String, Fail> {
    let name = validate::short_text(raw, validate::MAX_DISPLAY_NAME_CHARS, "group name")?;
    if name.is_empty() {
        return Err(fail(ErrorCode::InvalidArgument, "group name must not be empty"));
    }
    Ok(name)
}

fn distinct(ids: &[i64]) -> Vec<i64> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

pub(super) async fn create_group(ctx: &Ctx, conn: &mut Conn, r: pb::CreateGroup) -> Reply {
    let me = conn.require_auth()?.user_id;
    let name = group_name(&r.name)?;
    let members: Vec<i64> = distinct(&r.member_ids).into_iter().filter(|u| *u != me).collect();
    let limit = ctx.cfg.group_member_limit;
    if members.len() + 1 > limit as usize {
        return Err(fail(
            ErrorCode::InvalidArgument,
            format!("a group holds at most {limit} members"),
        ));
    }
    require_friends(ctx, me, &members).await?;
    let conv = db(
        "create_group",
        ctx.store.create_group(
            me,
            &name,
            &members,
            i32::try_from(limit).unwrap_or(i32::MAX),
            now_ms(),
        ),
    )
    .await?;
    system_notice(
        ctx,
        conv.id,
        me,
        pb::system_notice::Kind::Created,
        &members,
        &name,
    )
    .await?;
    announce(ctx, conv.id).await?;
    let conv = db("conversation", ctx.store.conversation(conv.id))
        .await?
        .unwrap_or(conv);
    Ok(Resp::Conversation(conversation_pb(ctx, &conv, me, None).await?))
}

pub(super) async fn invite(ctx: &Ctx, conn: &mut Conn, r: pb::InviteMembers) -> Reply {
    let me = conn.require_auth()?.user_id;
    group_member(ctx, r.conv_id, me).await?;
    let invitees = distinct(&r.user_ids);
    require_friends(ctx, me, &invitees).await?;
    let added = match ctx.store.add_members(r.conv_id, &invitees, now_ms()).await {
        Ok(added) => added,
        Err(parley_store::StoreError::LimitExceeded) => {
            return Err(fail(ErrorCode::InvalidArgument, "the group is full"));
        }
        Err(e) => return Err(e.into()),
    };
    ctx.convs.invalidate(r.conv_id);
    if !added.is_empty() {
        system_notice(ctx, r.conv_id, me, pb::system_notice::Kind::Joined, &added, "").await?;
        announce(ctx, r.conv_id).await?;
    }
    Ok(Resp::Ok(pb::Ok {}))
}

/// Removes `user_id` after posting `kind` about it; tells them and the rest.
async fn remove(
    ctx: &Ctx,
    conv: &ConversationRow,
    actor: i64,
    user_id: i64,
    kind: pb::system_notice::Kind,
) -> Result<(), Fail> {
    system_notice(ctx, conv.id, actor, kind, &[user_id], "").await?;
    db("remove_member", ctx.store.remove_member(conv.id, user_id)).await?;
    ctx.convs.invalidate(conv.id);
    if conv.owner_id == user_id {
        // Ownership passes to the longest-standing admin, else member.
        let mut rest = db("members", ctx.store.members(conv.id)).await?;
        rest.sort_by_key(|m| (m.role, m.joined_at));
        if let Some(heir) = rest.first() {
            db("set_role", ctx.store.set_role(conv.id, heir.user_id, Role::Owner)).await?;
        }
    }
    ctx.hub.push(
        user_id,
        &pb::ServerFrame::event(Ev::ConversationRemoved(pb::ConversationRemoved {
            conv_id: conv.id,
        })),
    );
    announce(ctx, conv.id).await
}

pub(super) async fn leave(ctx: &Ctx, conn: &mut Conn, r: pb::LeaveGroup) -> Reply {
    let me = conn.require_auth()?.user_id;
    let (conv, _) = group_member(ctx, r.conv_id, me).await?;
    remove(ctx, &conv, me, me, pb::system_notice::Kind::Left).await?;
    Ok(Resp::Ok(pb::Ok {}))
}

pub(super) async fn kick(ctx: &Ctx, conn: &mut Conn, r: pb::KickMember) -> Reply {
    let me = conn.require_auth()?.user_id;
    let (conv, mine) = group_member(ctx, r.conv_id, me).await?;
    let target = db("member", ctx.store.member(r.conv_id, r.user_id))
        .await?
        .ok_or_else(|| fail(ErrorCode::NotFound, "not a member of this group"))?;
    // Owners kick anyone; admins kick plain members; members kick no one.
    if mine.role == Role::Member || target.role <= mine.role || r.user_id == me {
        return Err(fail(ErrorCode::Forbidden, "you may not remove this member"));
    }
    remove(ctx, &conv, me, r.user_id, pb::system_notice::Kind::Kicked).await?;
    Ok(Resp::Ok(pb::Ok {}))
}

pub(super) async fn rename(ctx: &Ctx, conn: &mut Conn, r: pb::RenameGroup) -> Reply {
    let me = conn.require_auth()?.user_id;
    let (_, mine) = group_member(ctx, r.conv_id, me).await?;
    if mine.role == Role::Member {
        return Err(fail(
            ErrorCode::Forbidden,
            "only the owner or an admin may rename the group",
        ));
    }
    let name = group_name(&r.name)?;
    db(
        "rename_conversation",
        ctx.store.rename_conversation(r.conv_id, &name),
    )
    .await?;
    system_notice(ctx, r.conv_id, me, pb::system_notice::Kind::Renamed, &[], &name).await?;
    announce(ctx, r.conv_id).await?;
    Ok(Resp::Ok(pb::Ok {}))
}

pub(super) async fn set_role(ctx: &Ctx, conn: &mut Conn, r: pb::SetMemberRole) -> Reply {
    let me = conn.require_auth()?.user_id;
    let (_, mine) = group_member(ctx, r.conv_id, me).await?;
    if mine.role != Role::Owner {
        return Err(fail(ErrorCode::Forbidden, "only the owner may change roles"));
    }
    let role = match pb::Role::try_from(r.role) {
        Ok(pb::Role::Admin) => Role::Admin,
        Ok(pb::Role::Member) => Role::Member,
        _ => return Err(fail(ErrorCode::InvalidArgument, "role must be admin or member")),
    };
    if r.user_id == me || !db("set_role", ctx.store.set_role(r.conv_id, r.user_id, role)).await? {
        return Err(fail(ErrorCode::NotFound, "not a member of this group"));
    }
    announce(ctx, r.conv_id).await?;
    Ok(Resp::Ok(pb::Ok {}))
}

pub(super) async fn list(ctx: &Ctx, conn: &mut Conn) -> Reply {
    let me = conn.require_auth()?.user_id;
    let rows = db("user_conversations", ctx.store.user_conversations(me)).await?;
    let mut conversations = Vec::with_capacity(rows.len());
    for (conv, member) in &rows {
        conversations.push(conversation_pb(ctx, conv, me, Some(member)).await?);
    }
    // Most recent activity first, as every chat app lists them.
    conversations.sort_by_key(|c| {
        std::cmp::Reverse(
            c.last_message
                .as_ref()
                .map_or(c.created_at_ms, |m| m.created_at_ms),
        )
    });
    Ok(Resp::ConversationList(pb::ConversationList { conversations }))
}

pub(super) async fn list_members(ctx: &Ctx, conn: &mut Conn, r: pb::ListMembers) -> Reply {
    let me = conn.require_auth()?.user_id;
    if db("member", ctx.store.member(r.conv_id, me)).await?.is_none() {
        return Err(fail(ErrorCode::NotFound, "no such conversation"));
    }
    let rows = db("members", ctx.store.members(r.conv_id)).await?;
    let ids: Vec<i64> = rows.iter().map(|m| m.user_id).collect();
    let users = db("users_by_ids", ctx.store.users_by_ids(&ids)).await?;
    let members = rows
        .iter()
        .map(|m| pb::Member {
            user: users.iter().find(|u| u.id == m.user_id).map(user_pb),
            role: role_pb(m.role) as i32,
            joined_at_ms: m.joined_at,
            read_seq: m.read_seq,
        })
        .collect();
    Ok(Resp::MemberList(pb::MemberList { members }))
}
