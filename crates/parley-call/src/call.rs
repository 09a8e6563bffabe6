//! One call: its invitees, participants and timers, and the transitions
//! between them.
//!
//! A call starts *ringing* with the caller as its only participant and is
//! *connected* from the first accept on. It never goes back: once connected,
//! its record says "completed" however it ends. The switchboard owns every
//! `Call` and removes it once [`Call::is_over`]; here each transition only
//! appends the actions it causes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::action::{Action, CallRecord};
use crate::{
    CallConfig, CallError, CallId, ConvId, DeviceId, Endpoint, LinkId, MediaKind, Outcome, Scope, UserId,
};

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Nobody has answered yet.
    Ringing,
    /// At least one callee joined.
    Connected,
}

/// Where an invited user stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invite {
    /// Their devices ring.
    Ringing,
    /// They joined (see the participants).
    Joined,
    /// They declined.
    Declined,
    /// Ringing timed out, or they left after joining.
    Unanswered,
    /// They were in another call; nothing rang.
    Busy,
}

/// A user in the call on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Participant {
    /// The device carrying the call.
    pub device: DeviceId,
    /// The connection that device was last seen on.
    pub link: LinkId,
    /// When that connection was lost, while the device has not come back.
    pub away_since: Option<Instant>,
}

/// What an answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// The user joined the call on the answering device.
    Joined,
    /// The device was in the call already (e.g. it reconnected): it stays, and
    /// should renew its media leg.
    Rejoined,
    /// The user declined (or had already stopped ringing).
    Declined,
}

/// One call.
#[derive(Debug, Clone)]
pub struct Call {
    id: CallId,
    conv: ConvId,
    scope: Scope,
    media: MediaKind,
    caller: UserId,
    connected_at: Option<Instant>,
    ring_until: Option<Instant>,
    invites: BTreeMap<UserId, Invite>,
    participants: BTreeMap<UserId, Participant>,
    over: bool,
}

impl Call {
    pub(crate) fn new(
        id: CallId,
        conv: ConvId,
        scope: Scope,
        media: MediaKind,
        caller: Endpoint,
        invites: BTreeMap<UserId, Invite>,
        ring_until: Instant,
    ) -> Call {
        let mut participants = BTreeMap::new();
        participants.insert(
            caller.user,
            Participant {
                device: caller.device,
                link: caller.link,
                away_since: None,
            },
        );
        Call {
            id,
            conv,
            scope,
            media,
            caller: caller.user,
            connected_at: None,
            ring_until: Some(ring_until),
            invites,
            participants,
            over: false,
        }
    }

    /// The call's id.
    pub fn id(&self) -> CallId {
        self.id
    }

    /// Its conversation.
    pub fn conv(&self) -> ConvId {
        self.conv
    }

    /// Direct or group.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Audio or video.
    pub fn media(&self) -> MediaKind {
        self.media
    }

    /// Who started it.
    pub fn caller(&self) -> UserId {
        self.caller
    }

    /// Ringing or connected.
    pub fn state(&self) -> CallState {
        match self.connected_at {
            None => CallState::Ringing,
            Some(_) => CallState::Connected,
        }
    }

    /// When the first callee joined.
    pub fn connected_at(&self) -> Option<Instant> {
        self.connected_at
    }

    /// Who is in the call, on which device.
    pub fn participants(&self) -> impl Iterator<Item = (UserId, &Participant)> {
        self.participants.iter().map(|(u, p)| (*u, p))
    }

    /// Everyone invited and where they stand (the caller is not invited).
    pub fn invites(&self) -> impl Iterator<Item = (UserId, Invite)> + '_ {
        self.invites.iter().map(|(u, i)| (*u, *i))
    }

    /// The participant entry of `user`.
    pub fn participant(&self, user: UserId) -> Option<&Participant> {
        self.participants.get(&user)
    }

    /// True while `user`'s devices ring for this call.
    pub fn rings(&self, user: UserId) -> bool {
        self.invites.get(&user) == Some(&Invite::Ringing)
    }

    /// True once the call has ended (its record is out).
    pub fn is_over(&self) -> bool {
        self.over
    }

    /// True when `user` is in the call or ringing for it: they cannot take another.
    pub(crate) fn engages(&self, user: UserId) -> bool {
        self.participants.contains_key(&user) || self.rings(user)
    }

    /// Everyone who hears about the call: the caller, invitees, participants.
    pub fn audience(&self) -> Vec<UserId> {
        let mut users: Vec<UserId> = std::iter::once(self.caller)
            .chain(self.invites.keys().copied())
            .chain(self.participants.keys().copied())
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    /// The earliest moment something happens on its own.
    pub(crate) fn deadline(&self, cfg: &CallConfig) -> Option<Instant> {
        let away = self
            .participants
            .values()
            .filter_map(|p| p.away_since)
            .map(|t| t + cfg.reconnect_grace)
            .min();
        match (self.ring_until, away) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn duration(&self, now: Instant) -> Duration {
        self.connected_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// Ends the call: `unanswered` is the outcome if nobody ever joined.
    fn end(&mut self, now: Instant, unanswered: Outcome, connection_lost: bool, out: &mut Vec<Action>) {
        if self.over {
            return;
        }
        self.over = true;
        self.ring_until = None;
        let outcome = match self.connected_at {
            Some(_) => Outcome::Completed,
            None => unanswered,
        };
        let duration = self.duration(now);
        out.push(Action::Ended {
            call: self.id,
            outcome,
            duration,
            connection_lost,
            notify: self.audience(),
        });
        out.push(Action::Record(CallRecord {
            call: self.id,
            conv: self.conv,
            scope: self.scope,
            caller: self.caller,
            media: self.media,
            outcome,
            duration,
        }));
    }

    /// An accept (`accept`) or decline from `ep`. In a group call anyone may
    /// join: the driver lets only the conversation's members this far.
    pub(crate) fn answer(
        &mut self,
        now: Instant,
        ep: Endpoint,
        accept: bool,
        cfg: &CallConfig,
        out: &mut Vec<Action>,
    ) -> Result<Answered, CallError> {
        if let Some(p) = self.participants.get_mut(&ep.user) {
            if !accept {
                return Err(CallError::AlreadyInCall);
            }
            if p.device != ep.device {
                return Err(CallError::AnsweredElsewhere);
            }
            // The same device again (typically after a reconnect): it renews its media leg.
            p.link = ep.link;
            p.away_since = None;
            return Ok(Answered::Rejoined);
        }
        let invite = self.invites.get(&ep.user).copied();
        match (invite, self.scope) {
            (None, Scope::Direct) => return Err(CallError::NotInvited),
            (None, Scope::Group) if !accept => return Err(CallError::NotInvited),
            _ => {}
        }
        if !accept {
            self.decline(now, ep.user, Some(ep.device), out);
            return Ok(Answered::Declined);
        }
        if self.participants.len() >= cfg.max_participants {
            return Err(CallError::Full);
        }
        self.participants.insert(
            ep.user,
            Participant {
                device: ep.device,
                link: ep.link,
                away_since: None,
            },
        );
        self.invites.insert(ep.user, Invite::Joined);
        if self.connected_at.is_none() {
            self.connected_at = Some(now);
        }
        if self.scope == Scope::Direct {
            self.ring_until = None;
        }
        if invite == Some(Invite::Ringing) {
            out.push(Action::StopRinging {
                call: self.id,
                user: ep.user,
                device: Some(ep.device),
                accepted: true,
            });
        }
        out.push(Action::Joined {
            call: self.id,
            user: ep.user,
            device: ep.device,
            notify: self.audience(),
        });
        Ok(Answered::Joined)
    }

    /// `user` declines (on `device`, if the decline came from one).
    fn decline(&mut self, now: Instant, user: UserId, device: Option<DeviceId>, out: &mut Vec<Action>) {
        if !self.rings(user) {
            // Declining twice, or after ringing stopped: nothing left to stop.
            return;
        }
        self.invites.insert(user, Invite::Declined);
        out.push(Action::StopRinging {
            call: self.id,
            user,
            device,
            accepted: false,
        });
        let anyone_ringing = self.invites.values().any(|i| *i == Invite::Ringing);
        if self.scope == Scope::Direct || (self.connected_at.is_none() && !anyone_ringing) {
            self.end(now, Outcome::Declined, false, out);
        }
    }

    /// `user` hangs up: the caller cancels, a participant leaves, a ringing callee declines.
    pub(crate) fn hang_up(
        &mut self,
        now: Instant,
        user: UserId,
        out: &mut Vec<Action>,
    ) -> Result<(), CallError> {
        if user == self.caller && self.connected_at.is_none() {
            self.end(now, Outcome::Cancelled, false, out);
            return Ok(());
        }
        if self.participants.contains_key(&user) {
            self.leave(now, user, false, out);
            return Ok(());
        }
        if self.rings(user) {
            self.decline(now, user, None, out);
            return Ok(());
        }
        Err(CallError::NotInvited)
    }

    fn leave(&mut self, now: Instant, user: UserId, connection_lost: bool, out: &mut Vec<Action>) {
        let Some(p) = self.participants.remove(&user) else {
            return;
        };
        if user != self.caller {
            self.invites.insert(user, Invite::Unanswered);
        }
        let alone = self.participants.len() < 2;
        if self.scope == Scope::Direct || self.connected_at.is_none() || alone {
            // A caller lost before anyone answered leaves nothing to answer: missed.
            self.end(now, Outcome::Missed, connection_lost, out);
            return;
        }
        out.push(Action::Left {
            call: self.id,
            user,
            device: p.device,
            connection_lost,
            notify: self.audience(),
        });
    }

    /// Fires whatever timer is due at `now`.
    pub(crate) fn on_timeout(&mut self, now: Instant, cfg: &CallConfig, out: &mut Vec<Action>) {
        if self.ring_until.is_some_and(|t| t <= now) {
            self.ring_until = None;
            if self.connected_at.is_none() {
                self.end(now, Outcome::Missed, false, out);
                return;
            }
            let ringing: Vec<UserId> = self
                .invites
                .iter()
                .filter(|(_, i)| **i == Invite::Ringing)
                .map(|(u, _)| *u)
                .collect();
            for user in ringing {
                self.invites.insert(user, Invite::Unanswered);
                out.push(Action::StopRinging {
                    call: self.id,
                    user,
                    device: None,
                    accepted: false,
                });
            }
        }
        let gone: Vec<UserId> = self
            .participants
            .iter()
            .filter(|(_, p)| p.away_since.is_some_and(|t| t + cfg.reconnect_grace <= now))
            .map(|(u, _)| *u)
            .collect();
        for user in gone {
            if self.over {
                return;
            }
            self.leave(now, user, true, out);
        }
    }

    /// The connection `ep.link` of a device went away.
    pub(crate) fn link_down(&mut self, now: Instant, ep: Endpoint) {
        if let Some(p) = self.participants.get_mut(&ep.user)
            && p.device == ep.device
            && p.link == ep.link
            && p.away_since.is_none()
        {
            p.away_since = Some(now);
        }
    }

    /// A device of `ep.user` connected on `ep.link`.
    pub(crate) fn link_up(&mut self, ep: Endpoint, out: &mut Vec<Action>) {
        if let Some(p) = self.participants.get_mut(&ep.user)
            && p.device == ep.device
        {
            p.link = ep.link;
            p.away_since = None;
        }
        if self.rings(ep.user) {
            out.push(Action::Ring {
                call: self.id,
                users: vec![ep.user],
            });
        }
    }
}
