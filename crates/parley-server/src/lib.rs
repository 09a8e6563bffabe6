//! The Parley server as a library: the `parley-server` binary and the
//! integration tests both call [`start`].
//!
//! Layout, outside in: [`server`] accepts sockets (TLS or plaintext) and
//! [`http`] serves health, metrics and WebSocket; [`connection`] runs one
//! client's frame loop whatever the transport; [`service`] handles requests;
//! [`hub`] knows which user is connected where and fans events out.

pub mod cluster;
pub mod committer;
pub mod config;
pub mod connection;
pub mod convcache;
pub mod files;
pub mod http;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod server;
pub mod service;
pub mod stream;
pub mod tls;
pub mod validate;

pub use config::{Args, Config, TlsMode};
pub use server::{ServerHandle, shutdown_signal, start};
