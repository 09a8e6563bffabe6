//! Contacts: friend requests, friends, remarks, blocking, presence fan-out.
//!
//! Blocking is silent (SPEC §2.5): a blocked user's requests are accepted on
//! the wire and dropped, so the sender cannot tell; pending requests from a
//! blocked user disappear from the incoming list, and the blocker's presence
//! is no longer pushed to them.

use std::collections::HashSet;
use std::time::Instant;

use parley_proto::pb::{self, ErrorCode, event::Kind as Ev, server_frame::Body as Resp};
use parley_store::{FriendRequestRow, RequestStatus};

use super::{Conn, Ctx, Fail, Reply, db, fail, now_ms, rate_limited, user_pb};
use crate::validate;

fn ok() -> Reply {
    Ok(Resp::Ok(pb::Ok {}))
}

async fn request_pb(ctx: &Ctx, r: &FriendRequestRow) -> Result<pb::FriendRequest, Fail> {
    let users = db("users_by_ids", ctx.store.users_by_ids(&[r.from_user, r.to_user])).await?;
    let find = |id| users.iter().find(|u| u.id == id).map(user_pb);
    Ok(pb::FriendRequest {
        id: r.id,
        from: find(r.from_user),
        to: find(r.to_user),
        note: r.note.clone(),
        created_at_ms: r.created_at,
    })
}

async fn friend_pb(ctx: &Ctx, user_id: i64, friend_id: i64) -> Result<Option<pb::Friend>, Fail> {
    let rows = db("friends", ctx.store.friends(user_id)).await?;
    let Some(row) = rows.into_iter().find(|f| f.friend_id == friend_id) else {
        return Ok(None);
    };
    let Some(user) = db("user_by_id", ctx.store.user_by_id(friend_id)).await? else {
        return Ok(None);
    };
    Ok(Some(pb::Friend {
        presence: Some(presence_of(ctx, friend_id, user.last_seen_at)),
        user: Some(user_pb(&user)),
        remark: row.remark,
        since_ms: row.since,
    }))
}

fn presence_of(ctx: &Ctx, user_id: i64, last_seen: i64) -> pb::Presence {
    pb::Presence {
        online: ctx.hub.is_online(user_id),
        last_seen_ms: last_seen,
    }
}

async fn existing_user(ctx: &Ctx, user_id: i64) -> Result<(), Fail> {
    match db("user_by_id", ctx.store.user_by_id(user_id)).await? {
        Some(_) => Ok(()),
        None => Err(fail(ErrorCode::NotFound, "no such user")),
    }
}

/// Tells both sides they are now friends.
async fn announce_friendship(ctx: &Ctx, a: i64, b: i64) -> Result<(), Fail> {
    ctx.convs.invalidate_pair(a, b);
    for (me, other) in [(a, b), (b, a)] {
        if let Some(f) = friend_pb(ctx, me, other).await? {
            ctx.hub.push(me, &pb::ServerFrame::event(Ev::FriendAdded(f)));
        }
    }
    Ok(())
}

pub(super) async fn send_request(ctx: &Ctx, conn: &mut Conn, r: pb::SendFriendRequest) -> Reply {
    let me = conn.require_auth()?.user_id;
    if r.user_id == me {
        return Err(fail(ErrorCode::InvalidArgument, "you cannot befriend yourself"));
    }
    let note = validate::short_text(&r.note, validate::MAX_NOTE_CHARS, "note")?;
    existing_user(ctx, r.user_id).await?;
    if let Err(wait) = ctx.friend_requests.take(&me, Instant::now()) {
        return Err(rate_limited("friend requests", wait));
    }
    if db("are_friends", ctx.store.are_friends(me, r.user_id)).await? {
        return Err(fail(ErrorCode::AlreadyExists, "you are already friends"));
    }
    if db("is_blocked", ctx.store.is_blocked(me, r.user_id)).await? {
        return Err(fail(
            ErrorCode::Forbidden,
            "you blocked this user; unblock them first",
        ));
    }
    if db("is_blocked", ctx.store.is_blocked(r.user_id, me)).await? {
        // Silently dropped: the sender must not learn they are blocked.
        return ok();
    }
    // They already asked us: asking back is agreeing.
    if let Some(theirs) = db("pending_request", ctx.store.pending_request(r.user_id, me)).await?
        && db(
            "accept_friend_request",
            ctx.store.accept_friend_request(theirs.id, now_ms()),
        )
        .await?
        .is_some()
    {
        let answered = pb::ServerFrame::event(Ev::FriendRequestAnswered(pb::FriendRequestAnswered {
            request_id: theirs.id,
            accepted: true,
        }));
        if let Some(bytes) = ctx.hub.encode(&answered) {
            ctx.hub.push_encoded(&[me, r.user_id], &bytes);
        }
        announce_friendship(ctx, me, r.user_id).await?;
        return ok();
    }
    let row = db(
        "create_friend_request",
        ctx.store.create_friend_request(me, r.user_id, &note, now_ms()),
    )
    .await?;
    let event = pb::ServerFrame::event(Ev::FriendRequestReceived(request_pb(ctx, &row).await?));
    if let Some(bytes) = ctx.hub.encode(&event) {
        // The sender's other devices see it in their outgoing list too.
        ctx.hub.push_encoded(&[r.user_id, me], &bytes);
    }
    ok()
}

pub(super) async fn list_requests(ctx: &Ctx, conn: &mut Conn) -> Reply {
    let me = conn.require_auth()?.user_id;
    let incoming_rows = db("incoming_requests", ctx.store.incoming_requests(me)).await?;
    let outgoing_rows = db("outgoing_requests", ctx.store.outgoing_requests(me)).await?;
    let mut ids: Vec<i64> = incoming_rows
        .iter()
        .chain(&outgoing_rows)
        .flat_map(|r| [r.from_user, r.to_user])
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let users = db("users_by_ids", ctx.store.users_by_ids(&ids)).await?;
    let find = |id| users.iter().find(|u| u.id == id).map(user_pb);
    let to_pb = |r: &FriendRequestRow| pb::FriendRequest {
        id: r.id,
        from: find(r.from_user),
        to: find(r.to_user),
        note: r.note.clone(),
        created_at_ms: r.created_at,
    };
    Ok(Resp::FriendRequestList(pb::FriendRequestList {
        incoming: incoming_rows.iter().map(to_pb).collect(),
        outgoing: outgoing_rows.iter().map(to_pb).collect(),
    }))
}

async fn pending_request(
    ctx: &Ctx,
    id: i64,
    check: impl Fn(&FriendRequestRow) -> bool,
) -> Result<FriendRequestRow, Fail> {
    match db("friend_request", ctx.store.friend_request(id)).await? {
        Some(r) if r.status == RequestStatus::Pending && check(&r) => Ok(r),
        _ => Err(fail(ErrorCode::NotFound, "no such pending friend request")),
    }
}

pub(super) async fn answer_request(ctx: &Ctx, conn: &mut Conn, r: pb::AnswerFriendRequest) -> Reply {
    let me = conn.require_auth()?.user_id;
    let req = pending_request(ctx, r.request_id, |q| q.to_user == me).await?;
    let done = if r.accept {
        db(
            "accept_friend_request",
            ctx.store.accept_friend_request(req.id, now_ms()),
        )
        .await?
        .is_some()
    } else {
        db(
            "close_friend_request",
            ctx.store
                .close_friend_request(req.id, RequestStatus::Declined, now_ms()),
        )
        .await?
    };
    if !done {
        return Err(fail(ErrorCode::NotFound, "no such pending friend request"));
    }
    let answered = pb::ServerFrame::event(Ev::FriendRequestAnswered(pb::FriendRequestAnswered {
        request_id: req.id,
        accepted: r.accept,
    }));
    if let Some(bytes) = ctx.hub.encode(&answered) {
        ctx.hub.push_encoded(&[req.from_user, me], &bytes);
    }
    if r.accept {
        announce_friendship(ctx, me, req.from_user).await?;
    }
    ok()
}

pub(super) async fn cancel_request(ctx: &Ctx, conn: &mut Conn, r: pb::CancelFriendRequest) -> Reply {
    let me = conn.require_auth()?.user_id;
    let req = pending_request(ctx, r.request_id, |q| q.from_user == me).await?;
    if !db(
        "close_friend_request",
        ctx.store
            .close_friend_request(req.id, RequestStatus::Cancelled, now_ms()),
    )
    .await?
    {
        return Err(fail(ErrorCode::NotFound, "no such pending friend request"));
    }
    let event = pb::ServerFrame::event(Ev::FriendRequestCancelled(pb::FriendRequestCancelled {
        request_id: req.id,
    }));
    if let Some(bytes) = ctx.hub.encode(&event) {
        ctx.hub.push_encoded(&[req.to_user, me], &bytes);
    }
    ok()
}

pub(super) async fn remove_friend(ctx: &Ctx, conn: &mut Conn, r: pb::RemoveFriend) -> Reply {
    let me = conn.require_auth()?.user_id;
    if !db("remove_friendship", ctx.store.remove_friendship(me, r.user_id)).await? {
        return Err(fail(ErrorCode::NotFound, "not a friend"));
    }
    ctx.convs.invalidate_pair(me, r.user_id);
    for (who, gone) in [(me, r.user_id), (r.user_id, me)] {
        ctx.hub.push(
            who,
            &pb::ServerFrame::event(Ev::FriendRemoved(pb::FriendRemoved { user_id: gone })),
        );
    }
    ok()
}

pub(super) async fn block(ctx: &Ctx, conn: &mut Conn, r: pb::BlockUser) -> Reply {
    let me = conn.require_auth()?.user_id;
    if r.user_id == me {
        return Err(fail(ErrorCode::InvalidArgument, "you cannot block yourself"));
    }
    existing_user(ctx, r.user_id).await?;
    db("block", ctx.store.block(me, r.user_id, now_ms())).await?;
    ctx.convs.invalidate_pair(me, r.user_id);
    ok()
}

pub(super) async fn unblock(ctx: &Ctx, conn: &mut Conn, r: pb::UnblockUser) -> Reply {
    let me = conn.require_auth()?.user_id;
    if !db("unblock", ctx.store.unblock(me, r.user_id)).await? {
        return Err(fail(ErrorCode::NotFound, "that user is not blocked"));
    }
    ctx.convs.invalidate_pair(me, r.user_id);
    ok()
}

pub(super) async fn set_remark(ctx: &Ctx, conn: &mut Conn, r: pb::SetRemark) -> Reply {
    let me = conn.require_auth()?.user_id;
    let remark = validate::short_text(&r.remark, validate::MAX_REMARK_CHARS, "remark")?;
    if !db("set_remark", ctx.store.set_remark(me, r.user_id, &remark)).await? {
        return Err(fail(ErrorCode::NotFound, "not a friend"));
    }
    if let Some(f) = friend_pb(ctx, me, r.user_id).await? {
        // Other devices of mine refresh the friend entry.
        ctx.hub.push(me, &pb::ServerFrame::event(Ev::FriendAdded(f)));
    }
    ok()
}

pub(super) async fn list_friends(ctx: &Ctx, conn: &mut Conn) -> Reply {
    let me = conn.require_auth()?.user_id;
    let rows = db("friends", ctx.store.friends(me)).await?;
    let ids: Vec<i64> = rows.iter().map(|f| f.friend_id).collect();
    let users = db("users_by_ids", ctx.store.users_by_ids(&ids)).await?;
    let friends = rows
        .into_iter()
        .filter_map(|f| {
            let u = users.iter().find(|u| u.id == f.friend_id)?;
            Some(pb::Friend {
                user: Some(user_pb(u)),
                presence: Some(presence_of(ctx, u.id, u.last_seen_at)),
                remark: f.remark,
                since_ms: f.since,
            })
        })
        .collect();
    Ok(Resp::FriendList(pb::FriendList { friends }))
}

pub(super) async fn list_blocked(ctx: &Ctx, conn: &mut Conn) -> Reply {
    let me = conn.require_auth()?.user_id;
    let ids = db("blocked", ctx.store.blocked(me)).await?;
    let users = db("users_by_ids", ctx.store.users_by_ids(&ids)).await?;
    Ok(Resp::UserPage(pb::UserPage {
        users: users.iter().map(user_pb).collect(),
        next_cursor: String::new(),
    }))
}

/// Friends of `user_id` that should see its presence and profile: not blocked by it, and
/// passing `keep` (online somewhere, or connected here).
async fn audience(ctx: &Ctx, user_id: i64, keep: impl Fn(i64) -> bool) -> Result<Vec<i64>, Fail> {
    let friends = db("friends", ctx.store.friends(user_id)).await?;
    let blocked: HashSet<i64> = db("blocked", ctx.store.blocked(user_id))
        .await?
        .into_iter()
        .collect();
    Ok(friends
        .into_iter()
        .map(|f| f.friend_id)
        .filter(|id| !blocked.contains(id) && keep(*id))
        .collect())
}

/// Pushes `frame` to the user's own devices and to the friends who may see it.
pub(super) async fn notify_friends_and_self(
    ctx: &Ctx,
    user_id: i64,
    frame: &pb::ServerFrame,
) -> Result<(), Fail> {
    let mut targets = audience(ctx, user_id, |id| ctx.hub.is_online(id)).await?;
    targets.push(user_id);
    if let Some(bytes) = ctx.hub.encode(frame) {
        ctx.hub.push_encoded(&targets, &bytes);
    }
    Ok(())
}

/// Tells friends connected to *this node* that `user_id` came online or went offline.
///
/// Every node of a cluster sees each transition in its own view and calls this for its own
/// connections, so each device hears it once however many nodes there are. The state sent is
/// read again after the friend lookup: when a user flaps, a late announcement of an older
/// transition repeats the current state instead of contradicting it.
pub(crate) async fn broadcast_presence(ctx: &Ctx, user_id: i64, online: bool, at_ms: i64) {
    if ctx.hub.online_users() == 0 {
        return; // nobody here to tell; skip the friend lookup
    }
    let targets = match audience(ctx, user_id, |id| ctx.hub.is_local(id)).await {
        Ok(targets) => targets,
        Err(_) => {
            tracing::warn!(user = user_id, "presence not broadcast");
            return;
        }
    };
    let now_online = ctx.hub.is_online(user_id);
    if now_online != online {
        tracing::debug!(user = user_id, online, "presence changed again meanwhile");
    }
    let frame = pb::ServerFrame::event(Ev::PresenceChanged(pb::PresenceChanged {
        user_id,
        presence: Some(pb::Presence {
            online: now_online,
            last_seen_ms: at_ms,
        }),
    }));
    if let Some(bytes) = ctx.hub.encode(&frame) {
        ctx.hub.push_local(&targets, &bytes);
    }
}
