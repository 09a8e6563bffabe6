//! Accounts: registration, login and sessions, profiles, user search.
//!
//! Session tokens are 256 random bits given to the device once; the database
//! keeps only their SHA-256. Password hashing (argon2id) runs on the blocking
//! pool behind a semaphore, so a login storm cannot starve the async workers.

use std::sync::Arc;
use std::time::Instant;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use parley_proto::pb::{self, ErrorCode, server_frame::Body as Resp};
use parley_store::{SessionRow, StoreError};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::{Auth, Conn, Ctx, Fail, Reply, db, fail, now_ms, rate_limited, user_pb};
use crate::validate;

/// argon2id hashing and verification off the async threads.
pub struct PasswordHasher {
    slots: Arc<Semaphore>,
    /// Verified against when the account does not exist, so that a wrong
    /// username costs the same time as a wrong password.
    decoy: String,
}

impl PasswordHasher {
    pub(crate) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let decoy = hash_now("decoy password, never valid").unwrap_or_default();
        PasswordHasher {
            slots: Arc::new(Semaphore::new(cores)),
            decoy,
        }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Fail> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| fail(ErrorCode::ShuttingDown, "server is shutting down"))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|_| fail(ErrorCode::Internal, "internal server error"))
    }

    async fn hash(&self, password: &str) -> Result<String, Fail> {
        let pw = password.to_owned();
        self.run(move || hash_now(&pw))
            .await?
            .ok_or_else(|| fail(ErrorCode::Internal, "internal server error"))
    }

    /// True when `password` matches `stored` (or `stored` is None and nothing matches).
    async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, Fail> {
        let (pw, known) = (password.to_owned(), stored.is_some());
        let phc = stored.unwrap_or(&self.decoy).to_owned();
        let ok = self
            .run(move || {
                PasswordHash::new(&phc)
                    .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
                    .unwrap_or(false)
            })
            .await?;
        Ok(ok && known)
    }
}

fn hash_now(password: &str) -> Option<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).ok()?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .ok()
        .map(|h| h.to_string())
}

fn token_hash(token: &[u8]) -> Vec<u8> {
    Sha256::digest(token).to_vec()
}

pub(super) async fn register(ctx: &Ctx, conn: &mut Conn, r: pb::Register) -> Reply {
    if let Err(wait) = ctx.registrations.take(&conn.peer, Instant::now()) {
        return Err(rate_limited("registrations from this address", wait));
    }
    let username = validate::username(&r.username)?;
    validate::password(&r.password)?;
    let display = if r.display_name.trim().is_empty() {
        username.clone()
    } else {
        validate::display_name(&r.display_name)?
    };
    let hash = ctx.hasher.hash(&r.password).await?;
    match ctx.store.create_user(&username, &display, &hash, now_ms()).await {
        Ok(user) => {
            tracing::info!(user = user.id, "registered");
            Ok(Resp::Registered(pb::Registered {
                user: Some(user_pb(&user)),
            }))
        }
        Err(StoreError::Conflict) => Err(fail(ErrorCode::UsernameTaken, "that username is taken")),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn login(ctx: &Ctx, conn: &mut Conn, r: pb::Login) -> Reply {
    if conn.auth.is_some() {
        return Err(fail(
            ErrorCode::InvalidArgument,
            "already logged in on this connection",
        ));
    }
    let now = Instant::now();
    let account = r.username.trim().to_ascii_lowercase();
    if let Err(wait) = ctx.login_by_account.check(&account, now) {
        return Err(rate_limited("failed logins for this account", wait));
    }
    if let Err(wait) = ctx.login_by_address.check(&conn.peer, now) {
        return Err(rate_limited("failed logins from this address", wait));
    }
    let user = db("user_by_username", ctx.store.user_by_username(&account)).await?;
    let stored = user.as_ref().map(|u| u.password_hash.as_str());
    let ok = ctx.hasher.verify(&r.password, stored).await?;
    let Some(user) = user.filter(|_| ok) else {
        // Both buckets pay for a failure; the next attempt past the limit is refused unverified.
        let _ = ctx.login_by_account.take(&account, now);
        let _ = ctx.login_by_address.take(&conn.peer, now);
        metrics::counter!("parley_login_failures_total").increment(1);
        return Err(fail(ErrorCode::WrongCredentials, "wrong username or password"));
    };
    ctx.login_by_account.reset(&account);
    let device = validate::short_text(&r.device_name, validate::MAX_DEVICE_NAME_CHARS, "device name")?;
    let mut token = [0u8; 32];
    rand::rng().fill_bytes(&mut token);
    let t = now_ms();
    let session = SessionRow {
        id: ctx.store.next_id(),
        user_id: user.id,
        token_hash: token_hash(&token),
        device_name: if device.is_empty() {
            "unnamed device".into()
        } else {
            device
        },
        address: conn.peer.to_string(),
        created_at: t,
        last_used_at: t,
        revoked_at: None,
    };
    db("create_session", ctx.store.create_session(&session)).await?;
    attach(
        ctx,
        conn,
        Auth {
            user_id: user.id,
            session_id: session.id,
        },
    )
    .await;
    tracing::info!(user = user.id, session = session.id, "logged in");
    Ok(Resp::LoggedIn(pb::LoggedIn {
        user: Some(user_pb(&user)),
        session_id: session.id,
        token: hex::encode(token),
    }))
}

pub(super) async fn resume(ctx: &Ctx, conn: &mut Conn, r: pb::Resume) -> Reply {
    if conn.auth.is_some() {
        return Err(fail(
            ErrorCode::InvalidArgument,
            "already logged in on this connection",
        ));
    }
    let invalid = || {
        fail(
            ErrorCode::SessionInvalid,
            "session expired or revoked; log in again",
        )
    };
    let token = hex::decode(r.token.trim()).map_err(|_| invalid())?;
    if token.len() != 32 {
        return Err(invalid());
    }
    let session = db(
        "session_by_token",
        ctx.store.session_by_token_hash(&token_hash(&token)),
    )
    .await?
    .ok_or_else(invalid)?;
    let t = now_ms();
    let expiry = i64::try_from(ctx.cfg.session_expiry.as_millis()).unwrap_or(i64::MAX);
    if t.saturating_sub(session.last_used_at) > expiry {
        db(
            "revoke_session",
            ctx.store.revoke_session(session.user_id, session.id, t),
        )
        .await?;
        return Err(invalid());
    }
    let user = db("user_by_id", ctx.store.user_by_id(session.user_id))
        .await?
        .ok_or_else(invalid)?;
    db("touch_session", ctx.store.touch_session(session.id, t)).await?;
    attach(
        ctx,
        conn,
        Auth {
            user_id: user.id,
            session_id: session.id,
        },
    )
    .await;
    Ok(Resp::LoggedIn(pb::LoggedIn {
        user: Some(user_pb(&user)),
        session_id: session.id,
        token: String::new(),
    }))
}

async fn attach(ctx: &Ctx, conn: &mut Conn, auth: Auth) {
    conn.auth = Some(auth);
    if ctx.hub.attach(auth.user_id, conn.handle(auth.session_id)) {
        super::contacts::broadcast_presence(ctx, auth.user_id, true, now_ms()).await;
    }
    super::calls::link_up(ctx, conn, auth).await;
}

/// Unregisters a logged-in connection; the last one going sets last-seen and tells friends.
pub(super) async fn detach(ctx: &Ctx, conn: &Conn, auth: Auth) {
    super::calls::link_down(ctx, conn, auth).await;
    let t = now_ms();
    if let Err(e) = ctx.store.touch_session(auth.session_id, t).await {
        tracing::warn!(error = %e, "could not record session use");
    }
    if ctx.hub.detach(auth.user_id, conn.conn_id) {
        if let Err(e) = ctx.store.set_last_seen(auth.user_id, t).await {
            tracing::warn!(error = %e, "could not record last seen");
        }
        super::contacts::broadcast_presence(ctx, auth.user_id, false, t).await;
    }
}

pub(super) async fn logout(ctx: &Ctx, conn: &mut Conn) -> Reply {
    let auth = conn.require_auth()?;
    db(
        "revoke_session",
        ctx.store.revoke_session(auth.user_id, auth.session_id, now_ms()),
    )
    .await?;
    conn.auth = None;
    detach(ctx, conn, auth).await;
    Ok(Resp::Ok(pb::Ok {}))
}

pub(super) async fn list_sessions(ctx: &Ctx, conn: &mut Conn) -> Reply {
    let auth = conn.require_auth()?;
    let rows = db("list_sessions", ctx.store.list_sessions(auth.user_id)).await?;
    let sessions = rows
        .into_iter()
        .map(|s| pb::SessionInfo {
            id: s.id,
            current: s.id == auth.session_id,
            device_name: s.device_name,
            address: s.address,
            created_at_ms: s.created_at,
            last_used_at_ms: s.last_used_at,
        })
        .collect();
    Ok(Resp::SessionList(pb::SessionList { sessions }))
}

fn revoked_event(session_id: i64) -> pb::ServerFrame {
    pb::ServerFrame::event(pb::event::Kind::SessionRevoked(pb::SessionRevoked { session_id }))
}

pub(super) async fn revoke_session(ctx: &Ctx, conn: &mut Conn, r: pb::RevokeSession) -> Reply {
    let auth = conn.require_auth()?;
    if !db(
        "revoke_session",
        ctx.store.revoke_session(auth.user_id, r.session_id, now_ms()),
    )
    .await?
    {
        return Err(fail(ErrorCode::NotFound, "no such session"));
    }
    ctx.hub
        .end_session(auth.user_id, r.session_id, &revoked_event(r.session_id));
    Ok(Resp::Ok(pb::Ok {}))
}

pub(super) async fn change_password(ctx: &Ctx, conn: &mut Conn, r: pb::ChangePassword) -> Reply {
    let auth = conn.require_auth()?;
    let now = Instant::now();
    let key = format!("#{}", auth.user_id);
    if let Err(wait) = ctx.login_by_account.check(&key, now) {
        return Err(rate_limited("wrong passwords for this account", wait));
    }
    let user = db("user_by_id", ctx.store.user_by_id(auth.user_id))
        .await?
        .ok_or_else(|| fail(ErrorCode::SessionInvalid, "account no longer exists"))?;
    if !ctx
        .hasher
        .verify(&r.old_password, Some(&user.password_hash))
        .await?
    {
        let _ = ctx.login_by_account.take(&key, now);
        return Err(fail(ErrorCode::WrongCredentials, "current password is wrong"));
    }
    validate::password(&r.new_password)?;
    let hash = ctx.hasher.hash(&r.new_password).await?;
    db(
        "set_password_hash",
        ctx.store.set_password_hash(auth.user_id, &hash),
    )
    .await?;
    let revoked = db(
        "revoke_other_sessions",
        ctx.store
            .revoke_other_sessions(auth.user_id, auth.session_id, now_ms()),
    )
    .await?;
    for session_id in revoked {
        ctx.hub
            .end_session(auth.user_id, session_id, &revoked_event(session_id));
    }
    Ok(Resp::Ok(pb::Ok {}))
}

pub(super) async fn get_profile(ctx: &Ctx, conn: &mut Conn, r: pb::GetProfile) -> Reply {
    conn.require_auth()?;
    let user = match r.who {
        Some(pb::get_profile::Who::UserId(id)) => db("user_by_id", ctx.store.user_by_id(id)).await?,
        Some(pb::get_profile::Who::Username(name)) => {
            let name = name.trim().to_ascii_lowercase();
            db("user_by_username", ctx.store.user_by_username(&name)).await?
        }
        None => return Err(fail(ErrorCode::BadRequest, "give a user id or a username")),
    };
    let user = user.ok_or_else(|| fail(ErrorCode::NotFound, "no such user"))?;
    Ok(Resp::Profile(pb::Profile {
        user: Some(user_pb(&user)),
    }))
}

pub(super) async fn update_profile(ctx: &Ctx, conn: &mut Conn, r: pb::UpdateProfile) -> Reply {
    let auth = conn.require_auth()?;
    let display = r
        .display_name
        .as_deref()
        .map(validate::display_name)
        .transpose()?;
    let status = r
        .status_line
        .as_deref()
        .map(|s| validate::short_text(s, validate::MAX_STATUS_CHARS, "status line"))
        .transpose()?;
    let user = db(
        "update_profile",
        ctx.store
            .update_profile(auth.user_id, display.as_deref(), status.as_deref()),
    )
    .await?
    .ok_or_else(|| fail(ErrorCode::SessionInvalid, "account no longer exists"))?;
    let user = user_pb(&user);
    super::contacts::notify_friends_and_self(
        ctx,
        auth.user_id,
        &pb::ServerFrame::event(pb::event::Kind::ProfileUpdated(user.clone())),
    )
    .await?;
    Ok(Resp::Profile(pb::Profile { user: Some(user) }))
}

/// Largest page of search results.
const MAX_SEARCH_PAGE: u32 = 100;

pub(super) async fn search_users(ctx: &Ctx, conn: &mut Conn, r: pb::SearchUsers) -> Reply {
    conn.require_auth()?;
    let query = validate::short_text(&r.query, 64, "query")?;
    if query.is_empty() {
        return Err(fail(ErrorCode::InvalidArgument, "search query must not be empty"));
    }
    let limit = match r.limit {
        0 => 20,
        n => n.min(MAX_SEARCH_PAGE),
    };
    let after = if r.cursor.is_empty() {
        0
    } else {
        r.cursor
            .parse::<i64>()
            .map_err(|_| fail(ErrorCode::InvalidArgument, "invalid cursor"))?
    };
    let rows = db("search_users", ctx.store.search_users(&query, after, limit)).await?;
    let next_cursor = match rows.last() {
        Some(last) if rows.len() == limit as usize => last.id.to_string(),
        _ => String::new(),
    };
    Ok(Resp::UserPage(pb::UserPage {
        users: rows.iter().map(user_pb).collect(),
        next_cursor,
    }))
}
