//! Account commands: register, login, logout, whoami, sessions, passwd,
//! profile and search.
//!
//! Each function does one command end to end — connect, ask, print — and
//! closes its client, so the flow of a command reads top to bottom.

use anyhow::{Context as _, Result};
use parley_client::pb;
use serde_json::json;

use crate::args::{ProfileArgs, ProfileCommand, SessionsArgs, SessionsCommand};
use crate::context::Context;
use crate::failure::Failure;
use crate::output::{ago, now_ms, session_json, table, user_json, user_label, user_text};
use crate::prompt;
use crate::store::SavedSession;

/// `register USER [--display-name N]`.
pub async fn register(
    ctx: &Context,
    username: String,
    display_name: Option<String>,
    password: Option<String>,
) -> Result<()> {
    let password = prompt::password(password, "New password: ", true)?;
    let display_name = display_name.unwrap_or_else(|| username.clone());
    let (client, address) = ctx.connect().await?;
    let result = client.register(&username, &display_name, &password).await;
    client.close().await;
    let user = result.context("registering")?;
    ctx.out.print(
        || format!("registered {} (id {}) on {address}", user_label(&user), user.id),
        || user_json(&user),
    );
    Ok(())
}

/// `login USER`: logs in and saves the session.
pub async fn login(ctx: &Context, username: String, password: Option<String>) -> Result<()> {
    let password = prompt::password(password, "Password: ", false)?;
    let (client, address) = ctx.connect().await?;
    let result = client.login(&username, &password).await;
    client.close().await;
    let logged_in = result.context("logging in")?;
    let user = logged_in.user.unwrap_or_default();
    ctx.store.save_session(&SavedSession {
        server: address.clone(),
        server_name: ctx.server_name_flag(),
        username: user.username.clone(),
        token: logged_in.token,
    })?;
    ctx.out.print(
        || {
            format!(
                "logged in as {} on {address} (session {})",
                user_label(&user),
                logged_in.session_id
            )
        },
        || json!({ "user": user_json(&user), "session_id": logged_in.session_id, "server": address }),
    );
    Ok(())
}

/// `logout`: ends the saved session on the server and forgets it.
pub async fn logout(ctx: &Context) -> Result<()> {
    let not_logged_in = || {
        ctx.out
            .print(|| "not logged in".into(), || json!({ "logged_out": false }));
    };
    if ctx.store.load_session()?.is_none() {
        not_logged_in();
        return Ok(());
    }
    let authed = match ctx.connect_resumed().await {
        Ok(authed) => authed,
        // The server had already ended it, and `connect_resumed` forgot it.
        Err(_) if ctx.store.load_session()?.is_none() => {
            not_logged_in();
            return Ok(());
        }
        Err(err) => return Err(err),
    };
    let result = authed.client.logout().await;
    authed.client.close().await;
    result.context("logging out")?;
    ctx.store.remove_session()?;
    ctx.out.print(
        || format!("logged out {}", authed.me.username),
        || json!({ "logged_out": true }),
    );
    Ok(())
}

/// `whoami`.
pub async fn whoami(ctx: &Context) -> Result<()> {
    let authed = ctx.connect_resumed().await?;
    authed.client.close().await;
    let (me, server) = (&authed.me, &authed.saved.server);
    ctx.out.print(
        || {
            format!(
                "{} on {server} (session {})\n{}",
                user_label(me),
                authed.session_id,
                user_text(me)
            )
        },
        || json!({ "user": user_json(me), "session_id": authed.session_id, "server": server }),
    );
    Ok(())
}

/// `sessions` and `sessions revoke ID`.
pub async fn sessions(ctx: &Context, args: SessionsArgs) -> Result<()> {
    let authed = ctx.connect_resumed().await?;
    let client = &authed.client;
    match args.command {
        None => {
            let result = client.sessions().await;
            client.close().await;
            let sessions = result.context("listing sessions")?;
            ctx.out.print(
                || sessions_table(&sessions),
                || json!(sessions.iter().map(session_json).collect::<Vec<_>>()),
            );
        }
        Some(SessionsCommand::Revoke { id }) => {
            let result = client.revoke_session(id).await;
            client.close().await;
            result.context("revoking the session")?;
            if id == authed.session_id {
                ctx.store.remove_session()?;
            }
            ctx.out
                .print(|| format!("revoked session {id}"), || json!({ "revoked": id }));
        }
    }
    Ok(())
}

fn sessions_table(sessions: &[pb::SessionInfo]) -> String {
    let now = now_ms();
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                format!("{}{}", s.id, if s.current { "*" } else { "" }),
                s.device_name.clone(),
                s.address.clone(),
                ago(s.created_at_ms, now),
                ago(s.last_used_at_ms, now),
            ]
        })
        .collect();
    table(&["ID", "DEVICE", "ADDRESS", "CREATED", "LAST USED"], &rows) + "(* this session)"
}

/// `passwd`.
pub async fn passwd(ctx: &Context, old: Option<String>, new: Option<String>) -> Result<()> {
    let authed = ctx.connect_resumed().await?;
    let passwords = prompt::password(old, "Current password: ", false)
        .and_then(|old| Ok((old, prompt::password(new, "New password: ", true)?)));
    let result = match passwords {
        Ok((old, new)) => authed.client.change_password(&old, &new).await,
        Err(err) => {
            authed.client.close().await;
            return Err(err);
        }
    };
    authed.client.close().await;
    result.context("changing the password")?;
    ctx.out.print(
        || "password changed; your other sessions were signed out".into(),
        || json!({ "changed": true }),
    );
    Ok(())
}

/// `profile [USER]` and `profile set`.
pub async fn profile(ctx: &Context, args: ProfileArgs) -> Result<()> {
    if let Some(ProfileCommand::Set {
        display_name: None,
        status: None,
    }) = &args.command
    {
        return Err(Failure::Usage("nothing to change: give --display-name and/or --status".into()).into());
    }
    let authed = ctx.connect_resumed().await?;
    let client = &authed.client;
    let result = match (args.command, args.user) {
        (Some(ProfileCommand::Set { display_name, status }), _) => client
            .update_profile(display_name.as_deref(), status.as_deref())
            .await
            .context("updating the profile"),
        (None, Some(user)) => client
            .profile_by_username(&user)
            .await
            .with_context(|| format!("looking up {user}")),
        (None, None) => client.profile(authed.me.id).await.context("reading your profile"),
    };
    client.close().await;
    let user = result?;
    ctx.out.print(|| user_text(&user), || user_json(&user));
    Ok(())
}

/// `search --users PREFIX [--limit N] [--cursor C]`.
pub async fn search(ctx: &Context, prefix: String, limit: u32, cursor: String) -> Result<()> {
    let authed = ctx.connect_resumed().await?;
    let result = authed.client.search_users(&prefix, limit, &cursor).await;
    authed.client.close().await;
    let page = result.context("searching")?;
    ctx.out.print(
        || {
            let rows: Vec<Vec<String>> = page
                .users
                .iter()
                .map(|u| vec![u.username.clone(), u.display_name.clone(), u.status_line.clone()])
                .collect();
            let mut text = table(&["USERNAME", "DISPLAY NAME", "STATUS"], &rows);
            if !page.next_cursor.is_empty() {
                text += &format!("more: --cursor {}", page.next_cursor);
            }
            text
        },
        || {
            json!({
                "users": page.users.iter().map(user_json).collect::<Vec<_>>(),
                "next_cursor": page.next_cursor,
            })
        },
    );
    Ok(())
}
