//! Populating a server through the SDK: users with one or more logged-in
//! devices, friendships, direct conversations and groups.

use std::time::Duration;

use anyhow::Context as _;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use parley_client::{Client, ClientConfig, Trust};

use crate::target::Target;

/// The password of every benchmark user.
pub const PASSWORD: &str = "bench-password-1";

/// How many setup requests run at once.
const CONCURRENCY: usize = 16;

/// A benchmark user and its connected devices (device 0 logged in with the
/// password, the others resumed with its token).
pub struct User {
    pub id: i64,
    pub clients: Vec<Client>,
}

/// A prefix for usernames that is new on every run (a reused external server
/// keeps old users).
pub fn run_tag() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("b{:05x}{:x}_", secs & 0xfffff, std::process::id() & 0xff)
}

/// An SDK configuration for user number `i`, pinned to the node it connects to.
pub fn client_config(target: &Target, i: usize, message_sync: bool) -> ClientConfig {
    let node = target.node_for(i);
    let mut cfg = ClientConfig::new(node.addr.to_string(), Trust::Pinned(node.fingerprint.clone()));
    cfg.device_name = "parley-bench".into();
    cfg.client_name = "parley-bench".into();
    cfg.message_sync = message_sync;
    // Under full load a request may queue behind thousands of others.
    cfg.request_timeout = Duration::from_secs(60);
    cfg.send_timeout = Duration::from_secs(120);
    cfg
}

/// Registers `count` users named `<tag><i>` and connects `devices` clients for each.
pub async fn users(
    target: &Target,
    tag: &str,
    count: usize,
    devices: usize,
    message_sync: bool,
) -> anyhow::Result<Vec<User>> {
    stream::iter(0..count)
        .map(|i| {
            let cfg = client_config(target, i, message_sync);
            let name = format!("{tag}{i}");
            async move {
                user(cfg, &name, devices.max(1))
                    .await
                    .with_context(|| format!("setting up user {name}"))
            }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

async fn user(cfg: ClientConfig, name: &str, devices: usize) -> anyhow::Result<User> {
    let first = Client::connect(cfg.clone()).await?;
    first.register(name, name, PASSWORD).await?;
    let logged_in = first.login(name, PASSWORD).await?;
    let id = logged_in.user.context("login without a user")?.id;
    let token = first.session_token().context("login without a token")?;
    let mut clients = vec![first];
    for _ in 1..devices {
        let c = Client::connect(cfg.clone()).await?;
        c.resume(&token).await?;
        clients.push(c);
    }
    Ok(User { id, clients })
}

/// Makes `a` and `b` friends (a asks, b accepts).
pub async fn befriend(a: &User, b: &User) -> anyhow::Result<()> {
    a.clients[0].send_friend_request(b.id, "benchmark").await?;
    let requests = b.clients[0].friend_requests().await?;
    let request = requests
        .incoming
        .iter()
        .find(|r| r.from.as_ref().is_some_and(|u| u.id == a.id))
        .context("friend request did not arrive")?;
    b.clients[0].answer_friend_request(request.id, true).await?;
    Ok(())
}

/// Befriends `pairs` and opens their direct conversations; conversation ids in pair order.
pub async fn direct_conversations(users: &[User], pairs: &[(usize, usize)]) -> anyhow::Result<Vec<i64>> {
    stream::iter(pairs.iter().copied())
        .map(|(a, b)| async move {
            befriend(&users[a], &users[b]).await?;
            Ok::<_, anyhow::Error>(users[a].clients[0].open_direct(users[b].id).await?.id)
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// Creates one group per member list (the first member owns it and befriends the others);
/// group ids in list order.
pub async fn groups(users: &[User], lists: &[Vec<usize>], tag: &str) -> anyhow::Result<Vec<i64>> {
    stream::iter(lists.iter().enumerate())
        .map(|(g, members)| async move {
            let owner = &users[members[0]];
            for &m in &members[1..] {
                befriend(owner, &users[m]).await?;
            }
            let ids: Vec<i64> = members[1..].iter().map(|&m| users[m].id).collect();
            let conv = owner.clients[0]
                .create_group(&format!("{tag}group{g}"), &ids)
                .await?;
            Ok::<_, anyhow::Error>(conv.id)
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// Closes every client (in parallel, bounded).
pub async fn close_all(users: Vec<User>) {
    stream::iter(users.into_iter().flat_map(|u| u.clients))
        .for_each_concurrent(64, |c| async move { c.close().await })
        .await;
}
