//! Every transition of the call state machine, one scenario each, in
//! simulated time.

use std::time::{Duration, Instant};

use parley_call::{
    Action, Answered, CallConfig, CallError, CallId, CallRecord, CallState, ConvId, DeviceId, Endpoint,
    Invitation, Invite, LinkId, MediaKind, Outcome, Scope, Started, Switchboard, UserId,
};

const ANN: UserId = UserId(1);
const BEN: UserId = UserId(2);
const CAT: UserId = UserId(3);
const DAN: UserId = UserId(4);

/// A device of `user`: device n of user u is `u*10+n`, on link `u*100+n`.
fn dev(user: UserId, n: i64) -> Endpoint {
    Endpoint {
        user,
        device: DeviceId(user.0 * 10 + n),
        link: LinkId((user.0 * 100 + n) as u64),
    }
}

struct Sim {
    board: Switchboard,
    now: Instant,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            board: Switchboard::new(CallConfig::default()),
            now: Instant::now(),
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        if let Some(t) = self.board.poll_timeout()
            && t <= self.now
        {
            self.board.handle_timeout(self.now);
        }
    }

    fn actions(&mut self) -> Vec<Action> {
        self.board.drain_actions().collect()
    }

    fn direct(&mut self, id: i64, caller: Endpoint, callee: UserId) -> Result<Started, CallError> {
        let conv = ConvId(100 + caller.user.0.min(callee.0) * 10 + caller.user.0.max(callee.0));
        self.board.start(
            self.now,
            Invitation {
                call: CallId(id),
                conv,
                scope: Scope::Direct,
                media: MediaKind::Audio,
                caller,
                callees: vec![callee],
            },
        )
    }

    fn group(&mut self, id: i64, caller: Endpoint, members: &[UserId]) -> Result<Started, CallError> {
        self.board.start(
            self.now,
            Invitation {
                call: CallId(id),
                conv: ConvId(900),
                scope: Scope::Group,
                media: MediaKind::Video,
                caller,
                callees: members.to_vec(),
            },
        )
    }
}

fn records(actions: &[Action]) -> Vec<CallRecord> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(r) => Some(*r),
            _ => None,
        })
        .collect()
}

fn ended(actions: &[Action]) -> Option<(Outcome, Duration, bool)> {
    actions.iter().find_map(|a| match a {
        Action::Ended {
            outcome,
            duration,
            connection_lost,
            ..
        } => Some((*outcome, *duration, *connection_lost)),
        _ => None,
    })
}

fn only_record(actions: &[Action]) -> CallRecord {
    let r = records(actions);
    assert_eq!(r.len(), 1, "exactly one record: {actions:?}");
    r[0]
}

#[test]
fn invite_rings_every_callee_and_tells_the_caller() {
    let mut s = Sim::new();
    assert_eq!(s.direct(1, dev(ANN, 1), BEN), Ok(Started::Ringing(CallId(1))));
    let a = s.actions();
    assert_eq!(
        a,
        vec![
            Action::Ring {
                call: CallId(1),
                users: vec![BEN]
            },
            Action::Ringing {
                call: CallId(1),
                caller: ANN
            }
        ]
    );
    let call = s.board.call(CallId(1)).unwrap();
    assert_eq!(call.state(), CallState::Ringing);
    assert!(call.rings(BEN));
    assert_eq!(s.board.poll_timeout(), Some(s.now + Duration::from_secs(45)));
}

#[test]
fn accept_on_one_device_stops_the_others_and_connects() {
    let mut s = Sim::new();
    s.direct(1, dev(ANN, 1), BEN).unwrap();
    s.actions();
    s.advance(Duration::from_secs(3));
    assert_eq!(
        s.board.answer(s.now, CallId(1), dev(BEN, 2), true),
        Ok(Answered::Joined)
    );
    let a = s.actions();
    assert_eq!(
        a[0],
        Action::StopRinging {
            call: CallId(1),
            user: BEN,
            device: Some(dev(BEN, 2).device),
            accepted: true
        }
    );
    assert!(
        matches!(&a[1], Action::Joined { user, notify, .. } if *user == BEN && notify == &vec![ANN, BEN])
    );
    // The other device is too late.
    assert_eq!(
        s.board.answer(s.now, CallId(1), dev(BEN, 1), true),
        Err(CallError::AnsweredElsewhere)
    );
    assert_eq!(
        s.board.answer(s.now, CallId(1), dev(BEN, 1), false),
        Err(CallError::AlreadyInCall)
    );
    assert!(s.actions().is_empty());
    let call = s.board.call(CallId(1)).unwrap();
    assert_eq!(call.state(), CallState::Connected);
    assert_eq!(call.participant(BEN).unwrap().device, dev(BEN, 2).device);
    // Connected calls have no ring timer.
    assert_eq!(s.board.poll_timeout(), None);
}

#[test]
fn decline_ends_a_direct_call_as_declined() {
    let mut s = Sim::new();
    s.direct(1, dev(ANN, 1), BEN).unwrap();
    s.actions();
    assert_eq!(
        s.board.answer(s.now, CallId(1), dev(BEN, 1), false),
        Ok(Answered::Declined)
    );
    let a = s.actions();
    assert!(matches!(a[0], Action::StopRinging { accepted: false, .. }));
    assert_eq!(ended(&a), Some((Outcome::Declined, Duration::ZERO, false)));
    assert_eq!(only_record(&a).outcome, Outcome::Declined);
    assert!(s.board.is_empty());
}

#[test]
fn callee_hanging_up_while_ringing_declines() {
    let mut s = Sim::new();
    s.direct(1, dev(ANN, 1), BEN).unwrap();
    s.actions();
    s.board.hang_up(s.now, CallId(1), BEN).unwrap();
    assert_eq!(only_record(&s.actions()).outcome, Outcome::Declined);
}

#[test]
fn busy_callee_refuses_and_leaves_a_busy_record() {
    let mut s = Sim::new();
    s.direct(1, dev(ANN, 1), BEN).unwrap();
    s.board.answer(s.now, CallId(1), dev(BEN, 1), true).unwrap();
    s.actions();
    assert_eq!(s.direct(2, dev(CAT, 1), BEN), Err(CallError::Busy));
    let a = s.actions();
    assert!(ended(&a).is_none(), "nothing rang, nothing ends");
    let r = only_record(&a);
    assert_eq!((r.call, r.outcome, r.caller), (CallId(2), Outcome::Busy, CAT));
    assert!(s.board.call(CallId(2)).is_none());
    // Ringing for another call is busy too.
    assert_eq!(s.direct(3, dev(DAN, 1), ANN), Err(CallError::Busy));
    s.actions();
    s.direct(4, dev(CAT, 1), DAN).unwrap();
    s.actions();
    assert_eq!(s.direct(5, dev(BEN, 1), DAN), Err(CallError::AlreadyInCall));
}

#[test]
fn caller_in_a_call_cannot_start_another() {
    let mut s = Sim::new();
    s.direct(1, dev(ANN, 1), BEN).unwrap();
    assert_eq!(s.direct(2, dev(ANN, 2), CAT), Err(CallError::AlreadyInCall));
    assert_eq!(s.direct(1, dev(CAT, 1), DAN), Err(CallError::DuplicateId));
    // The same conversation again from the caller's other device.
    assert_eq!(s.direct(3, dev(ANN, 2), BEN), Err(CallError::AlreadyInCall));
}

#[test]
fn no_answer_times_out_as_missed() {
    let mut s = Sim::new();
    s.direct(1, dev(ANN, 1), BEN).unwrap();
    s.actions();
    s.advance(Duration::from_secs(44));
    assert!(s.actions().is_empty());
    s.advance(Duration::from_secs(1));
    let a = s.actions();
    assert_eq!(ended(&a), Some((Outcome::Missed, Duration::ZERO, false)));
    assert_eq!(only_record(&a).outcome, Outcome::Missed);
    assert!(s.board.is_empty());
    assert_eq!(s.board.poll_timeout(), None);
    assert_eq!(
        s.board.answer(s.now, CallId(1), dev(BEN, 1), true),
        Err(CallError::NoSuchCall)
    );
}

#[test]
fn ring_timeout_is_configurable() {
    let mut s = Sim::new();
    s.board = Switchboard::new(CallConfig {
        ring_timeout: Duration::from_secs(1),
        ..CallConfig::default()
    });
    s.direct(1, dev(ANN, 1), BEN).unwrap();
    s.advance(Duration::from_millis(1000));
    assert_eq!(only_record(&s.actions()).outcome, Outcome::Missed);
}

#[test]
fn caller_cancel_before_answer() {
    let mut s = Sim::new();
    s.direct(1, dev(ANN, 1), BEN).unwrap();
    s.actions();
    s.advance(Duration::from_secs(5));
    s.board.hang_up(s.now, CallId(1), ANN).unwrap();
    let a = s.actions();
    let Some(Action::Ended { notify, .. }) = a.iter().find(|x| matches!(x, Action::Ended { .. })) else {
        panic!("no end: {a:?}");
    };
    assert_eq!(notify, &vec![ANN, BEN], "the callee stops ringing too");
    assert_eq!(only_record(&a).outcome, Outcome::Cancelled);
}

#[test]
fn hang_up_by_either_side_completes_with_duration() {
    for hanger in [ANN, BEN] {
        let mut s = Sim::new();
        s.direct(1, dev(ANN, 1), BEN).unwrap();
        s.advance(Duration::from_secs(2));
        s.board.answer(s.now, CallId(1), dev(BEN, 1), true).unwrap();
        s.actions();
        s.advance(Duration::from_secs(192));
        s.board.hang_up(s.now, CallId(1), hanger).unwrap();
        let a = s.actions();
        assert_eq!(
            ended(&a),
            Some((Outcome::Completed, Duration::from_secs(192), false))
        );
        let r = only_record(&a);
        assert_eq!(
            (r.outcome, r.duration, r.caller),
            (Outcome::Completed, Duration::from_secs(192), ANN)
        );
        assert_eq!(
            s.board.hang_up(s.now, CallId(1), hanger),
            Err(CallError::NoSuchCall)
        );
    }
}

#[test]
fn glare_merges_both_invites_into_one_connected_call() {
    let mut s = Sim::new();
    s.direct(1, dev(ANN, 1), BEN).unwrap();
    s.actions();
    // Ben calls Ann at the same moment: his invite becomes an accept of hers.
    assert_eq!(s.direct(2, dev(BEN, 1), ANN), Ok(Started::Joined(CallId(1))));
    let a = s.actions();
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Joined { user, .. } if *user == BEN))
    );
    assert!(records(&a).is_empty());
    assert_eq!(s.board.len(), 1);
    assert_eq!(s.board.call(CallId(1)).unwrap().state(), CallState::Connected);
}

#[test]
fn dropped_peer_ends_the_call_after_the_grace() {
    let mut s = Sim::new();
    s.direct(1, dev(ANN, 1), BEN).unwrap();
    s.board.answer(s.now, CallId(1), dev(BEN, 1), true).unwrap();
    s.actions();
    s.advance(Duration::from_secs(10));
    s.board.link_down(s.now, dev(BEN, 1));
    assert_eq!(s.board.poll_timeout(), Some(s.now + Duration::from_secs(15)));
    s.advance(Duration::from_secs(14));
    assert!(s.actions().is_empty());
    s.advance(Duration::from_secs(1));
    let a = s.actions();
    // Connected 10 s, then 15 s of grace during which it still counted.
    assert_eq!(
        ended(&a),
        Some((Outcome::Completed, Duration::from_secs(25), true))
    );
    assert_eq!(only_record(&a).outcome, Outcome::Completed);
}

#[test]
fn reconnect_within_the_grace_keeps_the_call() {
    let mut s = Sim::new();
    s.direct(1, dev(ANN, 1), BEN).unwrap();
    s.board.answer(s.now, CallId(1), dev(BEN, 1), true).unwrap();
    s.actions();
    s.board.link_down(s.now, dev(BEN, 1));
    s.advance(Duration::from_secs(5));
    let back = Endpoint {
        link: LinkId(999),
        ..dev(BEN, 1)
    };
    s.board.link_up(back);
    // The old link's close arriving late must not count against the device.
    s.board.link_down(s.now, dev(BEN, 1));
    s.advance(Duration::from_secs(60));
    assert!(s.actions().is_empty());
    assert_eq!(
        s.board
            .call(CallId(1))
            .unwrap()
            .participant(BEN)
            .unwrap()
            .away_since,
        None
    );
    // The device renews its media leg by accepting again.
    assert_eq!(
        s.board.answer(s.now, CallId(1), back, true),
        Ok(Answered::Rejoined)
    );
    // A different device of the same user's link going down changes nothing either.
    s.board.link_down(s.now, dev(BEN, 2));
    assert_eq!(s.board.poll_timeout(), None);
}

#[test]
fn caller_lost_while_ringing_ends_as_missed() {
    let mut s = Sim::new();
    s.direct(1, dev(ANN, 1), BEN).unwrap();
    s.actions();
    s.board.link_down(s.now, dev(ANN, 1));
    s.advance(Duration::from_secs(15));
    let a = s.actions();
    assert_eq!(ended(&a), Some((Outcome::Missed, Duration::ZERO, true)));
}

#[test]
fn a_device_logging_in_while_ringing_rings_too() {
    let mut s = Sim::new();
    s.direct(1, dev(ANN, 1), BEN).unwrap();
    s.actions();
    s.board.link_up(dev(BEN, 3));
    assert_eq!(
        s.actions(),
        vec![Action::Ring {
            call: CallId(1),
            users: vec![BEN]
        }]
    );
    s.board.link_up(dev(CAT, 1));
    assert!(s.actions().is_empty());
}

#[test]
fn invalid_inputs_in_each_state_are_typed_errors() {
    let mut s = Sim::new();
    // No call at all.
    assert_eq!(
        s.board.answer(s.now, CallId(7), dev(BEN, 1), true),
        Err(CallError::NoSuchCall)
    );
    assert_eq!(s.board.hang_up(s.now, CallId(7), BEN), Err(CallError::NoSuchCall));
    s.board.link_down(s.now, dev(BEN, 1));
    s.board.handle_timeout(s.now);
    assert_eq!(s.group(8, dev(ANN, 1), &[ANN]), Err(CallError::NobodyToCall));
    assert!(s.actions().is_empty());
    // Ringing: strangers can neither answer nor hang up; the caller cannot answer.
    s.direct(1, dev(ANN, 1), BEN).unwrap();
    s.actions();
    assert_eq!(
        s.board.answer(s.now, CallId(1), dev(CAT, 1), true),
        Err(CallError::NotInvited)
    );
    assert_eq!(
        s.board.answer(s.now, CallId(1), dev(CAT, 1), false),
        Err(CallError::NotInvited)
    );
    assert_eq!(s.board.hang_up(s.now, CallId(1), CAT), Err(CallError::NotInvited));
    assert_eq!(
        s.board.answer(s.now, CallId(1), dev(ANN, 2), true),
        Err(CallError::AnsweredElsewhere)
    );
    assert_eq!(
        s.board.answer(s.now, CallId(1), dev(ANN, 1), false),
        Err(CallError::AlreadyInCall)
    );
    assert!(s.actions().is_empty());
    // Connected: a decline is refused, a stranger still cannot join.
    s.board.answer(s.now, CallId(1), dev(BEN, 1), true).unwrap();
    s.actions();
    assert_eq!(
        s.board.answer(s.now, CallId(1), dev(BEN, 1), false),
        Err(CallError::AlreadyInCall)
    );
    assert_eq!(
        s.board.answer(s.now, CallId(1), dev(CAT, 1), true),
        Err(CallError::NotInvited)
    );
    assert!(s.actions().is_empty());
    // Ended: everything is NoSuchCall.
    s.board.hang_up(s.now, CallId(1), ANN).unwrap();
    s.actions();
    assert_eq!(s.board.hang_up(s.now, CallId(1), BEN), Err(CallError::NoSuchCall));
    assert_eq!(
        s.board.answer(s.now, CallId(1), dev(BEN, 1), true),
        Err(CallError::NoSuchCall)
    );
}

#[test]
fn accepting_while_in_another_call_is_refused() {
    let mut s = Sim::new();
    s.direct(1, dev(ANN, 1), BEN).unwrap();
    // Ben, ringing, starts his own call to Cat and so is in a call.
    s.direct(2, dev(BEN, 1), CAT).unwrap();
    assert_eq!(
        s.board.answer(s.now, CallId(1), dev(BEN, 1), true),
        Err(CallError::AlreadyInCall)
    );
    // Declining is always possible.
    assert_eq!(
        s.board.answer(s.now, CallId(1), dev(BEN, 1), false),
        Ok(Answered::Declined)
    );
}

#[test]
fn group_call_members_join_and_leave() {
    let mut s = Sim::new();
    s.group(1, dev(ANN, 1), &[ANN, BEN, CAT, DAN]).unwrap();
    let a = s.actions();
    assert_eq!(
        a[0],
        Action::Ring {
            call: CallId(1),
            users: vec![BEN, CAT, DAN]
        }
    );
    s.advance(Duration::from_secs(1));
    s.board.answer(s.now, CallId(1), dev(BEN, 1), true).unwrap();
    assert_eq!(s.board.call(CallId(1)).unwrap().state(), CallState::Connected);
    // Cat declines: only her ringing stops.
    s.board.answer(s.now, CallId(1), dev(CAT, 1), false).unwrap();
    s.actions();
    assert_eq!(s.board.len(), 1);
    // Dan's ringing times out but the call goes on.
    s.advance(Duration::from_secs(45));
    let a = s.actions();
    assert_eq!(
        a,
        vec![Action::StopRinging {
            call: CallId(1),
            user: DAN,
            device: None,
            accepted: false
        }]
    );
    // Dan may still join while the call lasts, by answering or by starting a call there.
    assert_eq!(
        s.group(2, dev(DAN, 1), &[ANN, BEN, CAT]),
        Ok(Started::Joined(CallId(1)))
    );
    assert_eq!(
        s.board
            .call(CallId(1))
            .unwrap()
            .invites()
            .find(|(u, _)| *u == DAN)
            .unwrap()
            .1,
        Invite::Joined
    );
    s.actions();
    // The caller leaves; Ben and Dan go on.
    s.board.hang_up(s.now, CallId(1), ANN).unwrap();
    let a = s.actions();
    assert!(matches!(a[..], [Action::Left { user, connection_lost: false, .. }] if user == ANN));
    s.advance(Duration::from_secs(60));
    // Dan drops and does not come back: Ben alone ends the call.
    s.board.link_down(s.now, dev(DAN, 1));
    s.advance(Duration::from_secs(15));
    let a = s.actions();
    assert_eq!(
        ended(&a),
        Some((Outcome::Completed, Duration::from_secs(120), true))
    );
    assert_eq!(only_record(&a).scope, Scope::Group);
}

#[test]
fn group_call_limits_participants() {
    let mut s = Sim::new();
    s.board = Switchboard::new(CallConfig {
        max_participants: 2,
        ..CallConfig::default()
    });
    s.group(1, dev(ANN, 1), &[BEN, CAT]).unwrap();
    s.board.answer(s.now, CallId(1), dev(BEN, 1), true).unwrap();
    assert_eq!(
        s.board.answer(s.now, CallId(1), dev(CAT, 1), true),
        Err(CallError::Full)
    );
}

#[test]
fn group_call_everyone_declines_or_nobody_answers() {
    let mut s = Sim::new();
    s.group(1, dev(ANN, 1), &[BEN, CAT]).unwrap();
    s.board.answer(s.now, CallId(1), dev(BEN, 1), false).unwrap();
    assert_eq!(s.board.len(), 1, "Cat still rings");
    s.board.hang_up(s.now, CallId(1), CAT).unwrap();
    assert_eq!(only_record(&s.actions()).outcome, Outcome::Declined);

    s.group(2, dev(ANN, 1), &[BEN, CAT]).unwrap();
    s.advance(Duration::from_secs(45));
    assert_eq!(only_record(&s.actions()).outcome, Outcome::Missed);
}

#[test]
fn group_call_skips_busy_members_and_refuses_when_all_are() {
    let mut s = Sim::new();
    s.direct(1, dev(BEN, 1), CAT).unwrap();
    s.actions();
    s.group(2, dev(ANN, 1), &[BEN, CAT, DAN]).unwrap();
    let a = s.actions();
    assert_eq!(
        a[0],
        Action::Ring {
            call: CallId(2),
            users: vec![DAN]
        }
    );
    s.board.hang_up(s.now, CallId(2), ANN).unwrap();
    s.actions();
    s.direct(3, dev(DAN, 1), ANN).unwrap();
    assert_eq!(s.group(4, dev(ANN, 2), &[BEN, CAT, DAN]), Err(CallError::Busy));
    assert_eq!(only_record(&s.actions()).outcome, Outcome::Busy);
}
