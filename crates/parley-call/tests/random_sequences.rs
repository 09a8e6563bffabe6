//! Random event sequences against the switchboard: it never panics, and the
//! invariants users rely on hold after every step.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parley_call::{
    Action, CallConfig, CallError, CallId, ConvId, DeviceId, Endpoint, Invitation, LinkId, MediaKind, Scope,
    Started, Switchboard, UserId,
};
use proptest::prelude::*;

const USERS: i64 = 5;

#[derive(Debug, Clone)]
enum Input {
    Direct {
        caller: i64,
        device: i64,
        callee: i64,
    },
    Group {
        caller: i64,
        device: i64,
    },
    Answer {
        call: i64,
        user: i64,
        device: i64,
        accept: bool,
    },
    HangUp {
        call: i64,
        user: i64,
    },
    LinkDown {
        user: i64,
        device: i64,
        link: u64,
    },
    LinkUp {
        user: i64,
        device: i64,
        link: u64,
    },
    Wait {
        millis: u64,
    },
}

fn input() -> impl Strategy<Value = Input> {
    let user = 0..USERS;
    let device = 0..2i64;
    let call = 1..12i64;
    prop_oneof![
        (user.clone(), device.clone(), user.clone()).prop_map(|(caller, device, callee)| Input::Direct {
            caller,
            device,
            callee
        }),
        (user.clone(), device.clone()).prop_map(|(caller, device)| Input::Group { caller, device }),
        (call.clone(), user.clone(), device.clone(), any::<bool>()).prop_map(
            |(call, user, device, accept)| {
                Input::Answer {
                    call,
                    user,
                    device,
                    accept,
                }
            }
        ),
        (call, user.clone()).prop_map(|(call, user)| Input::HangUp { call, user }),
        (user.clone(), device.clone(), 0..2u64).prop_map(|(user, device, link)| Input::LinkDown {
            user,
            device,
            link
        }),
        (user, device, 0..2u64).prop_map(|(user, device, link)| Input::LinkUp { user, device, link }),
        (0..60_000u64).prop_map(|millis| Input::Wait { millis }),
    ]
}

fn ep(user: i64, device: i64, link: u64) -> Endpoint {
    Endpoint {
        user: UserId(user),
        device: DeviceId(user * 10 + device),
        link: LinkId(link),
    }
}

/// Tracks what came out, checking the invariants as it goes.
#[derive(Default)]
struct Ledger {
    started: HashSet<CallId>,
    records: HashMap<CallId, usize>,
    ended: HashSet<CallId>,
}

impl Ledger {
    fn take(&mut self, board: &mut Switchboard) {
        let actions: Vec<Action> = board.drain_actions().collect();
        for action in actions {
            match action {
                Action::Record(r) => {
                    *self.records.entry(r.call).or_default() += 1;
                    assert_eq!(self.records[&r.call], 1, "second record for {:?}", r.call);
                    assert!(board.call(r.call).is_none(), "a recorded call is gone");
                }
                Action::Ended { call, .. } => {
                    assert!(self.ended.insert(call), "{call:?} ended twice");
                    assert!(self.started.contains(&call), "{call:?} ended but never started");
                }
                Action::Ring { call, .. }
                | Action::Ringing { call, .. }
                | Action::StopRinging { call, .. }
                | Action::Joined { call, .. }
                | Action::Left { call, .. } => {
                    assert!(!self.ended.contains(&call), "{call:?} acted on after it ended");
                }
            }
        }
    }

    fn start(&mut self, result: Result<Started, CallError>) {
        if let Ok(Started::Ringing(id)) = result {
            self.started.insert(id);
        }
    }

    fn check(&self, board: &Switchboard) {
        let mut in_call: HashMap<UserId, CallId> = HashMap::new();
        for user in (0..USERS).map(UserId) {
            for call in board.calls_of(user) {
                let participants: Vec<_> = call.participants().collect();
                assert!(participants.len() <= board.config().max_participants);
                if call.scope() == Scope::Direct {
                    assert!(participants.len() <= 2);
                }
                if call.participant(user).is_some() {
                    let other = in_call.insert(user, call.id());
                    assert!(
                        other.is_none() || other == Some(call.id()),
                        "{user:?} in two calls at once"
                    );
                }
                assert!(!call.is_over());
            }
        }
    }
}

fn invitation(
    next_id: &mut i64,
    conv: ConvId,
    scope: Scope,
    caller: Endpoint,
    callees: Vec<UserId>,
) -> Invitation {
    let call = CallId(*next_id);
    *next_id += 1;
    Invitation {
        call,
        conv,
        scope,
        media: MediaKind::Audio,
        caller,
        callees,
    }
}

fn run(inputs: &[Input]) {
    let cfg = CallConfig {
        ring_timeout: Duration::from_secs(45),
        reconnect_grace: Duration::from_secs(15),
        max_participants: 3,
    };
    let mut board = Switchboard::new(cfg);
    let mut now = Instant::now();
    let mut next_id = 1;
    let mut ledger = Ledger::default();
    for input in inputs {
        match *input {
            Input::Direct {
                caller,
                device,
                callee,
            } => {
                let (lo, hi) = (caller.min(callee), caller.max(callee));
                let callees = vec![UserId(callee)];
                let inv = invitation(
                    &mut next_id,
                    ConvId(lo * 10 + hi),
                    Scope::Direct,
                    ep(caller, device, 0),
                    callees,
                );
                ledger.start(board.start(now, inv));
            }
            Input::Group { caller, device } => {
                let everyone = (0..USERS).map(UserId).collect();
                let inv = invitation(
                    &mut next_id,
                    ConvId(1000),
                    Scope::Group,
                    ep(caller, device, 0),
                    everyone,
                );
                ledger.start(board.start(now, inv));
            }
            Input::Answer {
                call,
                user,
                device,
                accept,
            } => {
                let _ = board.answer(now, CallId(call), ep(user, device, 0), accept);
            }
            Input::HangUp { call, user } => {
                let _ = board.hang_up(now, CallId(call), UserId(user));
            }
            Input::LinkDown { user, device, link } => board.link_down(now, ep(user, device, link)),
            Input::LinkUp { user, device, link } => board.link_up(ep(user, device, link)),
            Input::Wait { millis } => {
                now += Duration::from_millis(millis);
                if board.poll_timeout().is_some_and(|t| t <= now) {
                    board.handle_timeout(now);
                }
                assert!(
                    board.poll_timeout().is_none_or(|t| t > now),
                    "a due timer was left"
                );
            }
        }
        ledger.take(&mut board);
        ledger.check(&board);
    }
    // Everyone hangs up everything: every call started ends, with one record each.
    let ids: Vec<CallId> = (1..next_id).map(CallId).collect();
    for id in ids {
        while let Some(call) = board.call(id) {
            let user = call.participants().next().map_or(call.caller(), |(u, _)| u);
            board
                .hang_up(now, id, user)
                .expect("a participant may always hang up");
            ledger.take(&mut board);
        }
    }
    assert!(board.is_empty());
    assert_eq!(board.poll_timeout(), None);
    for id in &ledger.started {
        assert_eq!(ledger.records.get(id), Some(&1), "{id:?} has no record");
        assert!(ledger.ended.contains(id));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_the_invariants(inputs in prop::collection::vec(input(), 1..60)) {
        run(&inputs);
    }
}
