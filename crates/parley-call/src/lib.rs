//! Call signalling as a sans-IO state machine.
//!
//! [`Switchboard`] holds every call of one server node: who rings, who joined
//! on which device, who is busy, when ringing times out and when a dropped
//! device counts as gone. It never reads a clock or touches a socket: every
//! input carries the current [`Instant`], the driver asks
//! [`Switchboard::poll_timeout`] when to call [`Switchboard::handle_timeout`],
//! and everything the outside world must do comes out of
//! [`Switchboard::poll_action`] as an [`Action`] (ring these users, tell this
//! user the call was answered elsewhere, write the call record …). The server
//! drives it from tokio; tests drive hours of calls in microseconds.
//!
//! The rules, in the words a user would use:
//!
//! * **Invite.** Every device of every callee rings. A callee already in a
//!   call, or already ringing for another one, is *busy*: a 1:1 call is then
//!   refused at once ([`CallError::Busy`]) and still leaves a busy record.
//! * **Answer.** The first device to accept wins; the callee's other devices
//!   stop ringing ([`Action::StopRinging`]). Declining a 1:1 call ends it.
//! * **No answer** within [`CallConfig::ring_timeout`] (45 s by default)
//!   ends a call nobody joined as *missed*.
//! * **Cancel.** The caller hanging up before anyone answered: *cancelled*.
//! * **Hang up** by any participant ends a 1:1 call; a group call ends when
//!   fewer than two participants remain.
//! * **Dropped device.** When the connection carrying a participant's device
//!   goes away and the same device is not back within
//!   [`CallConfig::reconnect_grace`], that participant leaves as if they had
//!   hung up. A reconnect within the grace changes nothing for the others.
//! * **Glare.** Starting a call in a conversation that already has an active
//!   call one may join *joins* it. So when A calls B while B calls A, the
//!   invite that reaches the switchboard second turns into an accept of the
//!   first: both users end up in one connected call, which is what either of
//!   them wanted. Ties cannot happen, because inputs are applied one at a time.
//! * **Group calls** ring every other member; anyone invited (or any member
//!   the server lets in) may join while the call is active, up to
//!   [`CallConfig::max_participants`] (8 by default).
//! * **Records.** Every call that was started ends with exactly one
//!   [`Action::Record`] (completed with its duration, missed, declined,
//!   cancelled or busy), written by the server as a message in the conversation.
//!
//! Invalid inputs (answering a call that ended, hanging up someone else's
//! call …) return a typed [`CallError`] and change nothing; no input panics.

mod action;
mod call;
mod switchboard;

use std::time::Duration;

pub use action::{Action, CallRecord};
pub use call::{Answered, Call, CallState, Invite, Participant};
pub use switchboard::{Invitation, Started, Switchboard};

/// A user, as the server's database knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(pub i64);

/// One logged-in device of a user (the server uses the session id: it stays
/// the same when the device reconnects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub i64);

/// One connection carrying a device. A device that reconnects comes back on
/// a new link; the old link's late "gone" must not count against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

/// A call, unique across the deployment (the server uses its id generator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub i64);

/// The conversation a call belongs to; at most one active call per conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConvId(pub i64);

/// A user on one device over one link: who sent an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The user.
    pub user: UserId,
    /// Their device.
    pub device: DeviceId,
    /// The connection the input arrived on.
    pub link: LinkId,
}

/// What the call carries. Video calls follow the same signalling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Voice only.
    Audio,
    /// Voice and video.
    Video,
}

/// Whether a call is between two people or in a group conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Between two friends: ends when either side leaves.
    Direct,
    /// In a group conversation: members join and leave while it lasts.
    Group,
}

/// How a call ended, as its record tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Someone answered; the record carries how long the call was connected.
    Completed,
    /// Nobody answered before the ring timeout (or the caller's connection was lost).
    Missed,
    /// The callee declined (in a group: everyone rung declined).
    Declined,
    /// The caller hung up before anyone answered.
    Cancelled,
    /// The callee was in another call; nothing rang.
    Busy,
}

/// Limits and timings of the switchboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallConfig {
    /// How long callees' devices ring before the call counts as missed.
    pub ring_timeout: Duration,
    /// How long a participant's device may be disconnected before it leaves the call.
    pub reconnect_grace: Duration,
    /// Most participants of one call (the caller included).
    pub max_participants: usize,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            ring_timeout: Duration::from_secs(45),
            reconnect_grace: Duration::from_secs(15),
            max_participants: 8,
        }
    }
}

/// Why an input was refused. The switchboard is unchanged by a refused input,
/// except that a busy refusal still emits its [`Action::Record`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No active call has this id (it may have ended).
    #[error("no such call")]
    NoSuchCall,
    /// The callee is in another call (or ringing for one).
    #[error("the other side is busy")]
    Busy,
    /// The user is already in a call; they must hang up first.
    #[error("you are already in a call")]
    AlreadyInCall,
    /// The user was not invited to this call and may not join it.
    #[error("you are not part of this call")]
    NotInvited,
    /// Another device of the user already answered.
    #[error("the call was answered on another device")]
    AnsweredElsewhere,
    /// The call has as many participants as it may.
    #[error("the call is full")]
    Full,
    /// A call needs somebody to call.
    #[error("nobody to call")]
    NobodyToCall,
    /// Another call with this id exists already.
    #[error("call id already in use")]
    DuplicateId,
}
