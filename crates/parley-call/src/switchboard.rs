//! Every active call of a node, and the rules that span calls: busy users,
//! one call per conversation (which is how glare resolves), and which calls a
//! user or a device is part of.
//!
//! Inputs are methods taking `now`; outputs queue up for
//! [`Switchboard::poll_action`]. After each input the driver re-reads
//! [`Switchboard::poll_timeout`] and calls [`Switchboard::handle_timeout`]
//! when it passes, the same shape as str0m's `Rtc` or quinn-proto's connection.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use crate::action::{Action, CallRecord};
use crate::call::{Answered, Call, Invite};
use crate::{CallConfig, CallError, CallId, ConvId, Endpoint, MediaKind, Outcome, Scope, UserId};

/// A new call as the caller asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// The id to give the call.
    pub call: CallId,
    /// Its conversation.
    pub conv: ConvId,
    /// Direct or group.
    pub scope: Scope,
    /// Audio or video.
    pub media: MediaKind,
    /// Who calls, from which device.
    pub caller: Endpoint,
    /// Whom to ring: the peer, or the group's other members.
    pub callees: Vec<UserId>,
}

/// What [`Switchboard::start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// A new call rings its callees.
    Ringing(CallId),
    /// The conversation had an active call already; the caller joined it
    /// instead (glare in a direct conversation, joining in a group).
    Joined(CallId),
}

/// All active calls of one node.
#[derive(Debug, Default)]
pub struct Switchboard {
    cfg: CallConfig,
    calls: HashMap<CallId, Call>,
    by_conv: HashMap<ConvId, CallId>,
    /// Calls each user is caller of, invited to or in. Kept small: a user
    /// is in at most one call and rings for at most one more at a time.
    by_user: HashMap<UserId, Vec<CallId>>,
    actions: VecDeque<Action>,
}

impl Switchboard {
    /// An empty switchboard with these timings and limits.
    pub fn new(cfg: CallConfig) -> Switchboard {
        Switchboard {
            cfg,
            ..Switchboard::default()
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &CallConfig {
        &self.cfg
    }

    /// The active call `id`.
    pub fn call(&self, id: CallId) -> Option<&Call> {
        self.calls.get(&id)
    }

    /// The active call of a conversation.
    pub fn call_in(&self, conv: ConvId) -> Option<&Call> {
        self.by_conv.get(&conv).and_then(|id| self.calls.get(id))
    }

    /// The active calls `user` is caller of, invited to or in.
    pub fn calls_of(&self, user: UserId) -> impl Iterator<Item = &Call> {
        self.by_user
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|id| self.calls.get(id))
    }

    /// Number of active calls.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// True when no call is active.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The next queued action.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Every queued action, in order.
    pub fn drain_actions(&mut self) -> impl Iterator<Item = Action> + '_ {
        self.actions.drain(..)
    }

    /// When [`Switchboard::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls.values().filter_map(|c| c.deadline(&self.cfg)).min()
    }

    /// Fires every timer due at `now`: ringing that ran out, devices whose
    /// reconnect grace passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<CallId> = self
            .calls
            .values()
            .filter(|c| c.deadline(&self.cfg).is_some_and(|t| t <= now))
            .map(Call::id)
            .collect();
        for id in due {
            self.with_call(id, |call, cfg, out| {
                call.on_timeout(now, cfg, out);
                Ok(())
            })
            .ok();
        }
    }

    /// True when `user` is a participant of any call.
    fn in_a_call(&self, user: UserId, except: Option<CallId>) -> bool {
        self.calls_of(user)
            .any(|c| Some(c.id()) != except && c.participant(user).is_some())
    }

    /// True when `user` cannot be rung now.
    fn busy(&self, user: UserId) -> bool {
        self.calls_of(user).any(|c| c.engages(user))
    }

    /// Starts a call, or joins the conversation's active one (see the crate
    /// docs on glare). A busy callee refuses a direct call with
    /// [`CallError::Busy`], and a busy record is still emitted.
    pub fn start(&mut self, now: Instant, inv: Invitation) -> Result<Started, CallError> {
        if self.calls.contains_key(&inv.call) {
            return Err(CallError::DuplicateId);
        }
        if let Some(&active) = self.by_conv.get(&inv.conv) {
            if self
                .calls
                .get(&active)
                .is_some_and(|c| c.participant(inv.caller.user).is_some())
            {
                return Err(CallError::AlreadyInCall);
            }
            return match self.answer(now, active, inv.caller, true)? {
                Answered::Joined | Answered::Rejoined => Ok(Started::Joined(active)),
                // Unreachable for an accept; refusing is the safe reading.
                Answered::Declined => Err(CallError::NoSuchCall),
            };
        }
        if self.in_a_call(inv.caller.user, None) {
            return Err(CallError::AlreadyInCall);
        }
        let mut invites = BTreeMap::new();
        for user in inv.callees.iter().copied().filter(|u| *u != inv.caller.user) {
            let state = if self.busy(user) {
                Invite::Busy
            } else {
                Invite::Ringing
            };
            invites.insert(user, state);
        }
        if invites.is_empty() {
            return Err(CallError::NobodyToCall);
        }
        let ringing: Vec<UserId> = invites
            .iter()
            .filter(|(_, i)| **i == Invite::Ringing)
            .map(|(u, _)| *u)
            .collect();
        let refused = match inv.scope {
            Scope::Direct => ringing.len() < invites.len(),
            Scope::Group => ringing.is_empty(),
        };
        if refused {
            self.actions.push_back(Action::Record(CallRecord {
                call: inv.call,
                conv: inv.conv,
                scope: inv.scope,
                caller: inv.caller.user,
                media: inv.media,
                outcome: Outcome::Busy,
                duration: std::time::Duration::ZERO,
            }));
            return Err(CallError::Busy);
        }
        let call = Call::new(
            inv.call,
            inv.conv,
            inv.scope,
            inv.media,
            inv.caller,
            invites,
            now + self.cfg.ring_timeout,
        );
        for user in call.audience() {
            self.by_user.entry(user).or_default().push(inv.call);
        }
        self.by_conv.insert(inv.conv, inv.call);
        self.calls.insert(inv.call, call);
        self.actions.push_back(Action::Ring {
            call: inv.call,
            users: ringing,
        });
        self.actions.push_back(Action::Ringing {
            call: inv.call,
            caller: inv.caller.user,
        });
        Ok(Started::Ringing(inv.call))
    }

    /// Accepts or declines `call` on `ep`'s device. Accepting on the device
    /// already in the call renews it ([`Answered::Rejoined`]).
    pub fn answer(
        &mut self,
        now: Instant,
        call: CallId,
        ep: Endpoint,
        accept: bool,
    ) -> Result<Answered, CallError> {
        if !self.calls.contains_key(&call) {
            return Err(CallError::NoSuchCall);
        }
        if accept && self.in_a_call(ep.user, Some(call)) {
            return Err(CallError::AlreadyInCall);
        }
        let answered = self.with_call(call, |c, cfg, out| c.answer(now, ep, accept, cfg, out))?;
        if answered == Answered::Joined {
            let calls = self.by_user.entry(ep.user).or_default();
            if !calls.contains(&call) {
                calls.push(call);
            }
        }
        Ok(answered)
    }

    /// `user` hangs up `call`: cancel while it rings (caller), leave
    /// (participant), or decline (callee still ringing).
    pub fn hang_up(&mut self, now: Instant, call: CallId, user: UserId) -> Result<(), CallError> {
        if !self.calls.contains_key(&call) {
            return Err(CallError::NoSuchCall);
        }
        self.with_call(call, |c, _, out| c.hang_up(now, user, out))
    }

    /// The connection `ep.link` of a device closed. A participant on it gets
    /// [`CallConfig::reconnect_grace`] to come back before they leave.
    pub fn link_down(&mut self, now: Instant, ep: Endpoint) {
        for id in self.by_user.get(&ep.user).cloned().unwrap_or_default() {
            if let Some(call) = self.calls.get_mut(&id) {
                call.link_down(now, ep);
            }
        }
    }

    /// A device of `ep.user` logged in on `ep.link`: a participant device is
    /// back, and calls still ringing for the user ring it too.
    pub fn link_up(&mut self, ep: Endpoint) {
        for id in self.by_user.get(&ep.user).cloned().unwrap_or_default() {
            // Link changes never end a call, so the result needs no check.
            self.with_call(id, |c, _, out| {
                c.link_up(ep, out);
                Ok(())
            })
            .ok();
        }
    }

    /// Runs `f` on call `id`, queues its actions, and retires the call if it ended.
    fn with_call<T>(
        &mut self,
        id: CallId,
        f: impl FnOnce(&mut Call, &CallConfig, &mut Vec<Action>) -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Err(CallError::NoSuchCall);
        };
        let mut out = Vec::new();
        let result = f(call, &self.cfg, &mut out);
        let over = call.is_over();
        self.actions.extend(out);
        if over {
            self.retire(id);
        }
        result
    }

    fn retire(&mut self, id: CallId) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        if self.by_conv.get(&call.conv()) == Some(&id) {
            self.by_conv.remove(&call.conv());
        }
        for user in call.audience() {
            if let Entry::Occupied(mut e) = self.by_user.entry(user) {
                e.get_mut().retain(|c| *c != id);
                if e.get().is_empty() {
                    e.remove();
                }
            }
        }
    }
}
