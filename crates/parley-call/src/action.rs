//! What the switchboard asks its driver to do.
//!
//! Actions address users, not devices: the server pushes to every device of
//! a user, and each device tells from the event whether it concerns itself
//! (e.g. "answered elsewhere" names the device that answered).

use std::time::Duration;

use crate::{CallId, ConvId, DeviceId, MediaKind, Outcome, Scope, UserId};

/// One instruction for the driver, in the order it must happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ring every device of these users (a new call, or a device that just
    /// connected while the call still rings).
    Ring {
        /// The call.
        call: CallId,
        /// Users whose devices should ring.
        users: Vec<UserId>,
    },
    /// Tell the caller's devices that the callees are being rung.
    Ringing {
        /// The call.
        call: CallId,
        /// The caller.
        caller: UserId,
    },
    /// The user's devices stop ringing: one of them answered (`device`), or
    /// the ringing simply ended for this user (`device` is `None`).
    StopRinging {
        /// The call.
        call: CallId,
        /// Whose devices stop.
        user: UserId,
        /// The device that answered, if one did.
        device: Option<DeviceId>,
        /// Whether that answer was an accept.
        accepted: bool,
    },
    /// `user` joined on `device`; everyone in `notify` learns it.
    Joined {
        /// The call.
        call: CallId,
        /// Who joined.
        user: UserId,
        /// On which device.
        device: DeviceId,
        /// Who to tell (the caller, invitees and participants).
        notify: Vec<UserId>,
    },
    /// `user` left a call that goes on; their media leg on `device` is closed.
    Left {
        /// The call.
        call: CallId,
        /// Who left.
        user: UserId,
        /// The device whose media leg ends.
        device: DeviceId,
        /// True when their connection was lost rather than hung up.
        connection_lost: bool,
        /// Who to tell.
        notify: Vec<UserId>,
    },
    /// The call is over: tell `notify` and close its media room.
    Ended {
        /// The call.
        call: CallId,
        /// How it ended.
        outcome: Outcome,
        /// How long it was connected.
        duration: Duration,
        /// True when it ended because a participant's connection was lost.
        connection_lost: bool,
        /// Who to tell.
        notify: Vec<UserId>,
    },
    /// Write the call's record into its conversation. Emitted exactly once per
    /// started call (and for a busy refusal).
    Record(CallRecord),
}

/// What the conversation keeps about a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRecord {
    /// The call.
    pub call: CallId,
    /// Where to write the record.
    pub conv: ConvId,
    /// Direct or group.
    pub scope: Scope,
    /// Who called (the record's sender).
    pub caller: UserId,
    /// Audio or video.
    pub media: MediaKind,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it was connected (zero unless completed).
    pub duration: Duration,
}
