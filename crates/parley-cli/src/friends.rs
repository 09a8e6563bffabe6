//! Contact commands: `friend …` and `friends`.
//!
//! Users are named by username on the command line; the server speaks ids,
//! so each command resolves the name with a profile lookup first. Friend
//! requests are named by the ids `friend requests` prints.

use anyhow::{Context as _, Result};
use parley_client::{Client, pb};
use serde_json::json;

use crate::args::FriendCommand;
use crate::context::Context;
use crate::output::{
    ago, friend_json, friend_request_json, now_ms, presence_text, table, user_json, user_label,
};

/// `friend …`.
pub async fn friend(ctx: &Context, command: FriendCommand) -> Result<()> {
    let authed = ctx.connect_resumed().await?;
    let result = run(ctx, &authed.client, command).await;
    authed.client.close().await;
    result
}

async fn run(ctx: &Context, client: &Client, command: FriendCommand) -> Result<()> {
    let done = |text: String, key: &str, value: serde_json::Value| {
        ctx.out.print(|| text, || json!({ key: value }));
    };
    match command {
        FriendCommand::Request { user, note } => {
            let target = resolve(client, &user).await?;
            client
                .send_friend_request(target.id, &note)
                .await
                .context("sending the friend request")?;
            done(
                format!("friend request sent to {}", user_label(&target)),
                "requested",
                user_json(&target),
            );
        }
        FriendCommand::Requests => {
            let list = client
                .friend_requests()
                .await
                .context("listing friend requests")?;
            ctx.out.print(
                || requests_text(&list),
                || {
                    json!({
                        "incoming": list.incoming.iter().map(friend_request_json).collect::<Vec<_>>(),
                        "outgoing": list.outgoing.iter().map(friend_request_json).collect::<Vec<_>>(),
                    })
                },
            );
        }
        FriendCommand::Accept { id } => {
            client
                .answer_friend_request(id, true)
                .await
                .context("accepting")?;
            done(format!("accepted friend request {id}"), "accepted", json!(id));
        }
        FriendCommand::Decline { id } => {
            client
                .answer_friend_request(id, false)
                .await
                .context("declining")?;
            done(format!("declined friend request {id}"), "declined", json!(id));
        }
        FriendCommand::Cancel { id } => {
            client.cancel_friend_request(id).await.context("cancelling")?;
            done(format!("cancelled friend request {id}"), "cancelled", json!(id));
        }
        FriendCommand::Remove { user } => {
            let target = resolve(client, &user).await?;
            client
                .remove_friend(target.id)
                .await
                .context("removing the friend")?;
            done(
                format!("{} is no longer your friend", user_label(&target)),
                "removed",
                user_json(&target),
            );
        }
        FriendCommand::Block { user } => {
            let target = resolve(client, &user).await?;
            client.block(target.id).await.context("blocking")?;
            done(
                format!("blocked {}", user_label(&target)),
                "blocked",
                user_json(&target),
            );
        }
        FriendCommand::Unblock { user } => {
            let target = resolve(client, &user).await?;
            client.unblock(target.id).await.context("unblocking")?;
            done(
                format!("unblocked {}", user_label(&target)),
                "unblocked",
                user_json(&target),
            );
        }
        FriendCommand::Blocked => {
            let users = client.blocked().await.context("listing blocked users")?;
            ctx.out.print(
                || {
                    let rows: Vec<Vec<String>> = users
                        .iter()
                        .map(|u| vec![u.username.clone(), u.display_name.clone()])
                        .collect();
                    table(&["USERNAME", "DISPLAY NAME"], &rows)
                },
                || json!(users.iter().map(user_json).collect::<Vec<_>>()),
            );
        }
        FriendCommand::Remark { user, text } => {
            let target = resolve(client, &user).await?;
            client
                .set_remark(target.id, &text)
                .await
                .context("setting the remark")?;
            let message = if text.is_empty() {
                format!("cleared the remark for {}", user_label(&target))
            } else {
                format!("{} is now \"{text}\" to you", user_label(&target))
            };
            done(
                message,
                "remark",
                json!({ "user": user_json(&target), "remark": text }),
            );
        }
    }
    Ok(())
}

/// `friends`: the friend list with presence.
pub async fn friends(ctx: &Context) -> Result<()> {
    let authed = ctx.connect_resumed().await?;
    let result = authed.client.friends().await;
    authed.client.close().await;
    let friends = result.context("listing friends")?;
    let now = now_ms();
    ctx.out.print(
        || {
            let rows: Vec<Vec<String>> = friends
                .iter()
                .map(|f| {
                    let user = f.user.clone().unwrap_or_default();
                    vec![
                        user.username,
                        user.display_name,
                        f.remark.clone(),
                        presence_text(f.presence.as_ref(), now),
                    ]
                })
                .collect();
            table(&["USERNAME", "DISPLAY NAME", "REMARK", "STATUS"], &rows)
        },
        || json!(friends.iter().map(friend_json).collect::<Vec<_>>()),
    );
    Ok(())
}

/// The user called `username`.
pub async fn resolve(client: &Client, username: &str) -> Result<pb::User> {
    client
        .profile_by_username(username)
        .await
        .with_context(|| format!("looking up {username}"))
}

fn requests_text(list: &pb::FriendRequestList) -> String {
    let now = now_ms();
    let name = |u: &Option<pb::User>| u.as_ref().map(|u| u.username.clone()).unwrap_or_default();
    let rows = |requests: &[pb::FriendRequest], incoming: bool| -> Vec<Vec<String>> {
        requests
            .iter()
            .map(|r| {
                let who = if incoming { &r.from } else { &r.to };
                vec![
                    r.id.to_string(),
                    name(who),
                    r.note.clone(),
                    ago(r.created_at_ms, now),
                ]
            })
            .collect()
    };
    format!(
        "incoming:\n{}\noutgoing:\n{}",
        table(&["ID", "FROM", "NOTE", "SENT"], &rows(&list.incoming, true)),
        table(&["ID", "TO", "NOTE", "SENT"], &rows(&list.outgoing, false)),
    )
}
