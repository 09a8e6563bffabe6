//! What a [`crate::Client`] tells its subscribers without being asked.
//!
//! One broadcast stream carries both the server's pushed events and the
//! client's own connection state, so a UI has a single place to listen and
//! sees them in the order they happened.

use std::time::Duration;

use parley_proto::pb;

/// One item of [`crate::Client::events`].
// Not boxed: matching on `ClientEvent::Server(kind)` directly is the API the
// applications and tests are written against, and the size only matters for
// the broadcast ring (1024 slots, a few hundred KiB per client).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ClientEvent {
    /// An event the server pushed (friend requests, presence, revocations …).
    Server(pb::event::Kind),
    /// The connection changed state.
    State(ConnectionState),
}

/// The state of the client's connection, as announced on the event stream.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnectionState {
    /// Connected again after a loss, and the session (if any) resumed.
    Connected,
    /// The connection was lost; attempt number `attempt` (from 1) starts
    /// after `delay`.
    Reconnecting {
        /// Which attempt this is, counting from 1 since the last stable link.
        attempt: u32,
        /// How long the client waits before this attempt.
        delay: Duration,
    },
    /// Resume refused: the session is gone (revoked, expired or logged out
    /// elsewhere). The client stops reconnecting; this state is final.
    LoggedOut,
    /// The client is closed for good: [`crate::Client::close`] was called,
    /// reconnecting is off, or the server can no longer be trusted.
    Closed,
}
