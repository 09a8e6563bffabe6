//! What the call tests share: logging, an in-process server, and registered users.

use std::net::SocketAddr;

use parley_client::pb;
use parley_client::{Client, ClientConfig, Trust};
use parley_server::{Config, ServerHandle};
use parley_voice::CallOptions;

/// Logs at `PARLEY_LOG` (default `warn`) into the test's output.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PARLEY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A server with its media relay, on loopback, storing in `dir`.
pub async fn start_server(dir: &std::path::Path) -> ServerHandle {
    parley_server::start(Config::loopback(dir)).await.unwrap()
}

/// A newly registered and logged-in user.
pub async fn user(server: &ServerHandle, name: &str) -> (Client, pb::User) {
    let mut cfg = ClientConfig::new(
        server.client_addr.to_string(),
        Trust::Pinned(server.fingerprint.clone().unwrap_or_default()),
    );
    cfg.server_name = "localhost".into();
    let client = Client::connect(cfg).await.unwrap();
    let password = format!("password-{name}");
    client.register(name, name, &password).await.unwrap();
    let logged_in = client.login(name, &password).await.unwrap();
    (client, logged_in.user.unwrap())
}

/// Call options with media on loopback.
pub fn loopback_options() -> CallOptions {
    CallOptions {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..CallOptions::default()
    }
}

/// `friend` accepts a friend request from `from` (`friend_id` is `friend`'s user id).
pub async fn befriend(from: &Client, friend: &Client, friend_id: i64) {
    from.send_friend_request(friend_id, "").await.unwrap();
    let request = friend.friend_requests().await.unwrap().incoming[0].id;
    friend.answer_friend_request(request, true).await.unwrap();
}
