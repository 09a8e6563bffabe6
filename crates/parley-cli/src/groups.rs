//! Group and avatar commands: `group …` and `avatar …`.
//!
//! Members are named by username like everywhere else on the command line;
//! groups by the conversation id that `conversations` and `group create`
//! print.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use parley_client::{Client, pb};
use serde_json::json;

use crate::args::{AvatarCommand, GroupCommand};
use crate::context::Context;
use crate::friends::resolve;
use crate::messages::upload;
use crate::output::{table, user_label};
use crate::render::{conversation_json, human_size, member_json};

/// `group …`.
pub async fn group(ctx: &Context, command: GroupCommand) -> Result<()> {
    let authed = ctx.connect_resumed().await?;
    let result = run(ctx, &authed.client, command).await;
    authed.client.close().await;
    result
}

async fn ids(client: &Client, usernames: &[String]) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(usernames.len());
    for name in usernames {
        ids.push(resolve(client, name).await?.id);
    }
    Ok(ids)
}

async fn run(ctx: &Context, client: &Client, command: GroupCommand) -> Result<()> {
    let done = |text: String, value: serde_json::Value| ctx.out.print(|| text, || value);
    match command {
        GroupCommand::Create { name, members } => {
            let members = ids(client, &members).await?;
            let group = client
                .create_group(&name, &members)
                .await
                .context("creating the group")?;
            done(
                format!("created group \"{}\" (conversation {})", group.name, group.id),
                conversation_json(&group),
            );
        }
        GroupCommand::Invite { conv, users } => {
            let ids = ids(client, &users).await?;
            client.invite(conv, &ids).await.context("inviting")?;
            done(
                format!("added {} to conversation {conv}", users.join(", ")),
                json!({ "conv_id": conv, "invited": ids }),
            );
        }
        GroupCommand::Leave { conv } => {
            client.leave_group(conv).await.context("leaving the group")?;
            done(format!("left conversation {conv}"), json!({ "left": conv }));
        }
        GroupCommand::Kick { conv, user } => {
            let target = resolve(client, &user).await?;
            client
                .kick(conv, target.id)
                .await
                .context("removing the member")?;
            done(
                format!("removed {} from conversation {conv}", user_label(&target)),
                json!({ "conv_id": conv, "kicked": target.id }),
            );
        }
        GroupCommand::Rename { conv, name } => {
            client
                .rename_group(conv, &name)
                .await
                .context("renaming the group")?;
            done(
                format!("renamed conversation {conv} to \"{name}\""),
                json!({ "conv_id": conv, "name": name }),
            );
        }
        GroupCommand::Members { conv } => {
            let members = client.members(conv).await.context("listing members")?;
            ctx.out.print(
                || {
                    let rows: Vec<Vec<String>> = members
                        .iter()
                        .map(|m| {
                            let user = m.user.clone().unwrap_or_default();
                            let role = pb::Role::try_from(m.role).unwrap_or(pb::Role::Unspecified);
                            vec![
                                user.username,
                                user.display_name,
                                role.as_str_name().to_ascii_lowercase(),
                                m.read_seq.to_string(),
                            ]
                        })
                        .collect();
                    table(&["USERNAME", "DISPLAY NAME", "ROLE", "READ UP TO"], &rows)
                },
                || json!(members.iter().map(member_json).collect::<Vec<_>>()),
            );
        }
        GroupCommand::Role { conv, user, role } => {
            let target = resolve(client, &user).await?;
            let role_value = if role == "admin" {
                pb::Role::Admin
            } else {
                pb::Role::Member
            };
            client
                .set_role(conv, target.id, role_value)
                .await
                .context("changing the role")?;
            done(
                format!("{} is now {role} of conversation {conv}", user_label(&target)),
                json!({ "conv_id": conv, "user_id": target.id, "role": role }),
            );
        }
    }
    Ok(())
}

/// `avatar set PATH` and `avatar get [USER] -o PATH`.
pub async fn avatar(ctx: &Context, command: AvatarCommand) -> Result<()> {
    let authed = ctx.connect_resumed().await?;
    let client = &authed.client;
    let result = match command {
        AvatarCommand::Set { path } => set(ctx, client, path).await,
        AvatarCommand::Get { user, output } => {
            let target = match user {
                Some(name) => resolve(client, &name).await,
                None => Ok(authed.me.clone()),
            };
            match target {
                Ok(target) => get(ctx, client, &target, output).await,
                Err(err) => Err(err),
            }
        }
    };
    client.close().await;
    result
}

async fn set(ctx: &Context, client: &Client, path: PathBuf) -> Result<()> {
    let file = upload(client, &path).await?;
    client
        .set_avatar(file.file_id)
        .await
        .context("setting the avatar")?;
    ctx.out.print(
        || format!("avatar set to {} ({})", file.name, human_size(file.size)),
        || json!({ "avatar_file_id": file.file_id }),
    );
    Ok(())
}

async fn get(ctx: &Context, client: &Client, user: &pb::User, output: PathBuf) -> Result<()> {
    let bytes = client
        .avatar(user.id)
        .await
        .with_context(|| format!("fetching the avatar of {}", user.username))?;
    std::fs::write(&output, &bytes).with_context(|| format!("writing {}", output.display()))?;
    ctx.out.print(
        || format!("saved the avatar of {} to {}", user_label(user), output.display()),
        || json!({ "user_id": user.id, "path": output.display().to_string(), "size": bytes.len() }),
    );
    Ok(())
}
