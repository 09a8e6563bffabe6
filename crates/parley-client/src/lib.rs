//! Parley client SDK: one async [`Client`] per server connection.
//!
//! The SDK connects over TLS 1.3, verifying the server by system roots, a CA,
//! a pinned fingerprint or trust on first use ([`Trust`]); there is no way to
//! turn verification off. Requests are typed `async fn`s that resolve to the
//! server's answer or a [`ClientError`] carrying the server's error code.
//! Pushed events and connection state arrive on one broadcast stream
//! ([`Client::events`]). A lost connection is re-established with backoff and
//! the session resumed, so applications mostly see `Reconnecting` and
//! `Connected` go by.
//!
//! Messages form a gap-free stream: per conversation every message event
//! arrives once and in order, also across reconnects (see
//! [`Client::events`] and [`Client::set_sync_cursor`]). [`Client::send`]
//! resends after a lost connection without ever storing a message twice.
//! Files go over the server's HTTPS side, resumably and SHA-256 verified.
//!
//! Layout: `config` and `tls` decide whom to trust, `link` opens one
//! connection, `driver` runs it (with the pure decisions in `reconnect`),
//! `delivery` publishes events with the message-ordering rules of
//! `ordering`, `client` is the handle, and `api`, `conversations`,
//! `outgoing`, `calls` and `files` are the typed requests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), parley_client::ClientError> {
//! use parley_client::{Client, ClientConfig, Trust};
//! let trust = Trust::FirstUse("known_hosts".into());
//! let client = Client::connect(ClientConfig::new("chat.example.org:7420", trust)).await?;
//! client.login("alice", "correct horse battery").await?;
//! for friend in client.friends().await? {
//!     println!("{:?}", friend.user.map(|u| u.username));
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```

mod api;
mod calls;
mod client;
mod config;
mod conversations;
mod delivery;
mod driver;
mod error;
mod event;
mod files;
mod known_hosts;
mod link;
mod ordering;
mod outgoing;
mod reconnect;
mod tls;

pub use client::Client;
pub use config::{ClientConfig, DEFAULT_PORT, Trust};
pub use error::ClientError;
pub use event::{ClientEvent, ConnectionState};
pub use outgoing::{OutgoingMessage, new_client_msg_id};
pub use parley_proto::pb;
pub use tls::{ServerIdentity, cert_fingerprint, tls_client_config};
