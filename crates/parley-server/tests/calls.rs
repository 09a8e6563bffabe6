//! Call signalling end to end, over TLS through the SDK: every callee device
//! rings, the first accept wins, decline, busy, no answer, cancel, glare,
//! dropped peers, group calls, refusals, and the call-record message each
//! call leaves in its conversation (on every database engine).

mod common;

use std::time::Duration;

use common::{TestServer, assert_no_event, code, on_every_database, wait_event};
use parley_client::pb::{self, event::Kind as Ev};
use parley_client::{Client, ClientEvent};
use parley_rtc::peer::{ConnectionState, Peer, PeerConfig, PeerEvent};
use parley_server::Config;
use tokio::sync::broadcast::Receiver;

/// Short timers so that timeouts are observed in about a second.
fn quick(cfg: &mut Config) {
    cfg.call_ring_timeout = Duration::from_millis(1000);
    cfg.call_reconnect_grace = Duration::from_millis(1000);
}

/// Two friends with their direct conversation.
async fn friends(server: &TestServer, a: &str, b: &str) -> (Client, pb::User, Client, pb::User, i64) {
    let (ca, ua) = server.user(a).await;
    let (cb, ub) = server.user(b).await;
    befriend(&ca, &cb, ub.id).await;
    let conv = ca.open_direct(ub.id).await.unwrap();
    (ca, ua, cb, ub, conv.id)
}

async fn befriend(a: &Client, b: &Client, b_id: i64) {
    a.send_friend_request(b_id, "").await.unwrap();
    let req = b.friend_requests().await.unwrap().incoming[0].id;
    b.answer_friend_request(req, true).await.unwrap();
}

async fn ringing(rx: &mut Receiver<ClientEvent>) -> pb::CallInfo {
    wait_event(rx, "an incoming call", |k| match k {
        Ev::CallIncoming(c) => Some(c.clone()),
        _ => None,
    })
    .await
}

async fn ended(rx: &mut Receiver<ClientEvent>, call_id: i64) -> pb::CallEnded {
    wait_event(rx, "the end of the call", |k| match k {
        Ev::CallEnded(e) if e.call_id == call_id => Some(*e),
        _ => None,
    })
    .await
}

/// The next call-record message of `conv`.
async fn record(rx: &mut Receiver<ClientEvent>, conv: i64) -> pb::Message {
    wait_event(rx, "a call record", |k| match k {
        Ev::Message(m) if m.conv_id == conv && m.kind == pb::MessageKind::CallRecord as i32 => {
            Some(m.clone())
        }
        _ => None,
    })
    .await
}

fn outcome(m: &pb::Message) -> pb::CallOutcome {
    m.call
        .as_ref()
        .map_or(pb::CallOutcome::Unspecified, |c| c.outcome())
}

/// The call records stored in `conv`, oldest first, as a later sync sees them.
async fn stored_records(c: &Client, conv: i64) -> Vec<pb::Message> {
    let batch = c.sync(conv, 0, 100).await.unwrap();
    batch
        .messages
        .into_iter()
        .filter(|m| m.kind == pb::MessageKind::CallRecord as i32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_callee_device_rings_and_the_first_accept_wins() {
    on_every_database(quick, |server| async move {
        let (ann, ua, ben1, ub, conv) = friends(&server, "ann", "ben").await;
        let ben2 = server.device("ben").await;
        let (mut a_rx, mut b1_rx, mut b2_rx) = (ann.events(), ben1.events(), ben2.events());

        let joined = ann.start_call(conv, pb::MediaKind::Audio, "").await.unwrap();
        let call = joined.call.unwrap();
        assert_eq!((call.caller_id, call.state()), (ua.id, pb::CallState::Ringing));
        assert!(joined.sdp_answer.is_empty(), "no offer, no media leg");
        wait_event(&mut a_rx, "ringing", |k| {
            matches!(k, Ev::CallRinging(c) if c.call_id == call.call_id).then_some(())
        })
        .await;
        assert_eq!(ringing(&mut b1_rx).await.call_id, call.call_id);
        assert_eq!(ringing(&mut b2_rx).await.call_id, call.call_id);

        let accepted = ben2
            .answer_call(call.call_id, true, "")
            .await
            .unwrap()
            .expect("joined");
        assert_eq!(accepted.call.unwrap().state(), pb::CallState::Connected);
        let elsewhere = wait_event(&mut b1_rx, "answered elsewhere", |k| match k {
            Ev::CallAnsweredElsewhere(e) => Some(*e),
            _ => None,
        })
        .await;
        assert_eq!(
            (elsewhere.session_id, elsewhere.accepted),
            (ben2.session_id(), true)
        );
        let acc = wait_event(&mut a_rx, "accepted", |k| match k {
            Ev::CallAccepted(a) => Some(*a),
            _ => None,
        })
        .await;
        assert_eq!((acc.user_id, acc.session_id), (ub.id, ben2.session_id()));
        // The slower device is told, not connected.
        assert_eq!(
            code(ben1.answer_call(call.call_id, true, "").await),
            pb::ErrorCode::AlreadyExists
        );
        assert_eq!(ann.calls().await.unwrap().len(), 1);

        ben1.hang_up(call.call_id).await.unwrap();
        let end = ended(&mut a_rx, call.call_id).await;
        assert_eq!(end.outcome(), pb::CallOutcome::Completed);
        assert!(!end.connection_lost);
        let rec = record(&mut b1_rx, conv).await;
        assert_eq!(
            (rec.sender_id, outcome(&rec)),
            (ua.id, pb::CallOutcome::Completed)
        );
        assert!(rec.text.starts_with("voice call 00:0"), "{}", rec.text);
        assert!(ann.calls().await.unwrap().is_empty());
        assert_eq!(stored_records(&ben2, conv).await.len(), 1);
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decline_cancel_and_no_answer_leave_their_records() {
    on_every_database(quick, |server| async move {
        let (ann, _, ben, _, conv) = friends(&server, "ann", "ben").await;
        let (mut a_rx, mut b_rx) = (ann.events(), ben.events());

        // Declined.
        let call = ann
            .start_call(conv, pb::MediaKind::Video, "")
            .await
            .unwrap()
            .call
            .unwrap();
        ringing(&mut b_rx).await;
        assert!(ben.answer_call(call.call_id, false, "").await.unwrap().is_none());
        assert_eq!(
            ended(&mut a_rx, call.call_id).await.outcome(),
            pb::CallOutcome::Declined
        );
        let rec = record(&mut a_rx, conv).await;
        assert_eq!(outcome(&rec), pb::CallOutcome::Declined);
        assert_eq!(rec.text, "declined video call");

        // Cancelled by the caller.
        let call = ann
            .start_call(conv, pb::MediaKind::Audio, "")
            .await
            .unwrap()
            .call
            .unwrap();
        ringing(&mut b_rx).await;
        ann.hang_up(call.call_id).await.unwrap();
        assert_eq!(
            ended(&mut b_rx, call.call_id).await.outcome(),
            pb::CallOutcome::Cancelled
        );
        assert_eq!(
            outcome(&record(&mut b_rx, conv).await),
            pb::CallOutcome::Cancelled
        );

        // Nobody answers within the (shortened) ring timeout.
        let call = ann
            .start_call(conv, pb::MediaKind::Audio, "")
            .await
            .unwrap()
            .call
            .unwrap();
        ringing(&mut b_rx).await;
        let end = ended(&mut b_rx, call.call_id).await;
        assert_eq!(end.outcome(), pb::CallOutcome::Missed);
        assert_eq!(outcome(&record(&mut b_rx, conv).await), pb::CallOutcome::Missed);
        assert_eq!(
            code(ben.answer_call(call.call_id, true, "").await),
            pb::ErrorCode::NotFound
        );

        let stored: Vec<_> = stored_records(&ben, conv).await.iter().map(outcome).collect();
        assert_eq!(
            stored,
            [
                pb::CallOutcome::Declined,
                pb::CallOutcome::Cancelled,
                pb::CallOutcome::Missed
            ]
        );
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_callee_refuses_and_the_attempt_is_recorded() {
    on_every_database(quick, |server| async move {
        let (ann, _, ben, ub, conv) = friends(&server, "ann", "ben").await;
        let (cat, _) = server.user("cat").await;
        befriend(&cat, &ben, ub.id).await;
        let cat_conv = cat.open_direct(ub.id).await.unwrap().id;
        let mut c_rx = cat.events();
        let call = ann
            .start_call(conv, pb::MediaKind::Audio, "")
            .await
            .unwrap()
            .call
            .unwrap();
        ben.answer_call(call.call_id, true, "").await.unwrap();

        assert_eq!(
            code(cat.start_call(cat_conv, pb::MediaKind::Audio, "").await),
            pb::ErrorCode::Busy
        );
        let rec = record(&mut c_rx, cat_conv).await;
        assert_eq!(outcome(&rec), pb::CallOutcome::CallBusy);
        // Ann, in the call, cannot start another one either.
        let (dan, ud) = server.user("dan").await;
        befriend(&ann, &dan, ud.id).await;
        let dan_conv = ann.open_direct(ud.id).await.unwrap().id;
        assert_eq!(
            code(ann.start_call(dan_conv, pb::MediaKind::Audio, "").await),
            pb::ErrorCode::Busy
        );
        ann.hang_up(call.call_id).await.unwrap();
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glare_two_invites_meet_in_one_connected_call() {
    on_every_database(quick, |server| async move {
        let (ann, ua, ben, ub, conv) = friends(&server, "ann", "ben").await;
        let (mut a_rx, mut b_rx) = (ann.events(), ben.events());
        let (a, b) = tokio::join!(
            ann.start_call(conv, pb::MediaKind::Audio, ""),
            ben.start_call(conv, pb::MediaKind::Audio, "")
        );
        let (a, b) = (a.unwrap().call.unwrap(), b.unwrap().call.unwrap());
        assert_eq!(a.call_id, b.call_id, "one call");
        let connected = ann.calls().await.unwrap();
        assert_eq!(connected.len(), 1);
        assert_eq!(connected[0].state(), pb::CallState::Connected);
        let mut who = connected[0].participant_ids.clone();
        who.sort_unstable();
        let mut expected = vec![ua.id, ub.id];
        expected.sort_unstable();
        assert_eq!(who, expected);
        ben.hang_up(a.call_id).await.unwrap();
        assert_eq!(
            ended(&mut a_rx, a.call_id).await.outcome(),
            pb::CallOutcome::Completed
        );
        assert_eq!(
            outcome(&record(&mut b_rx, conv).await),
            pb::CallOutcome::Completed
        );
        assert_eq!(stored_records(&ann, conv).await.len(), 1, "one call, one record");
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_peer_ends_the_call_after_the_grace() {
    on_every_database(quick, |server| async move {
        let (ann, _, ben, _, conv) = friends(&server, "ann", "ben").await;
        let mut a_rx = ann.events();
        let call = ann
            .start_call(conv, pb::MediaKind::Audio, "")
            .await
            .unwrap()
            .call
            .unwrap();
        ben.answer_call(call.call_id, true, "").await.unwrap();
        wait_event(&mut a_rx, "accepted", |k| {
            matches!(k, Ev::CallAccepted(_)).then_some(())
        })
        .await;
        // Ben's device vanishes and does not come back.
        ben.close().await;
        let end = ended(&mut a_rx, call.call_id).await;
        assert!(end.connection_lost);
        assert_eq!(end.outcome(), pb::CallOutcome::Completed);
        assert!(end.duration_ms >= 1000, "the grace counts as connected time");
        assert_eq!(
            outcome(&record(&mut a_rx, conv).await),
            pb::CallOutcome::Completed
        );
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_friends_can_be_called_and_blocked_callers_are_refused_silently() {
    on_every_database(quick, |server| async move {
        let (ann, _, ben, ub, conv) = friends(&server, "ann", "ben").await;
        let (eve, _) = server.user("eve").await;
        let mut b_rx = ben.events();
        // Not a member of the conversation at all.
        assert_eq!(
            code(eve.start_call(conv, pb::MediaKind::Audio, "").await),
            pb::ErrorCode::NotFound
        );
        // Blocked: refused like a message, and nothing rings.
        ben.block(ann.user().unwrap().id).await.unwrap();
        assert_eq!(
            code(ann.start_call(conv, pb::MediaKind::Audio, "").await),
            pb::ErrorCode::Forbidden
        );
        ben.unblock(ann.user().unwrap().id).await.unwrap();
        // No longer friends: a stranger again.
        let _ = ann.remove_friend(ub.id).await;
        assert_eq!(
            code(ann.start_call(conv, pb::MediaKind::Audio, "").await),
            pb::ErrorCode::Forbidden
        );
        assert_no_event(&mut b_rx, Duration::from_millis(200), "a ring", |k| {
            matches!(k, Ev::CallIncoming(_))
        })
        .await;
        // Nobody outside a call can answer or end it.
        assert_eq!(
            code(eve.answer_call(12345, true, "").await),
            pb::ErrorCode::NotFound
        );
        assert_eq!(code(eve.hang_up(12345).await), pb::ErrorCode::NotFound);
        assert!(stored_records(&ann, conv).await.is_empty());
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_call_rings_members_who_join_and_leave() {
    on_every_database(quick, |server| async move {
        let (ann, ua, ben, ub, _) = friends(&server, "ann", "ben").await;
        let (cat, uc) = server.user("cat").await;
        befriend(&ann, &cat, uc.id).await;
        let group = ann.create_group("band", &[ub.id, uc.id]).await.unwrap().id;
        let (mut a_rx, mut b_rx, mut c_rx) = (ann.events(), ben.events(), cat.events());

        let call = ann
            .start_call(group, pb::MediaKind::Audio, "")
            .await
            .unwrap()
            .call
            .unwrap();
        assert!(call.group);
        ringing(&mut b_rx).await;
        ringing(&mut c_rx).await;
        ben.answer_call(call.call_id, true, "").await.unwrap();
        // Cat joins by starting a call in the group, which joins the active one.
        let joined = cat.start_call(group, pb::MediaKind::Audio, "").await.unwrap();
        let mut who = joined.call.unwrap().participant_ids;
        who.sort_unstable();
        let mut all = vec![ua.id, ub.id, uc.id];
        all.sort_unstable();
        assert_eq!(who, all);
        // Ann leaves; the call goes on until only one is left.
        ann.hang_up(call.call_id).await.unwrap();
        let left = wait_event(&mut b_rx, "left", |k| match k {
            Ev::CallLeft(l) => Some(*l),
            _ => None,
        })
        .await;
        assert_eq!(left.user_id, ua.id);
        cat.hang_up(call.call_id).await.unwrap();
        assert_eq!(
            ended(&mut b_rx, call.call_id).await.outcome(),
            pb::CallOutcome::Completed
        );
        assert_eq!(
            outcome(&record(&mut a_rx, group).await),
            pb::CallOutcome::Completed
        );
        server
    })
    .await;
}

/// A client media leg on loopback, its offer made.
async fn peer() -> (Peer, tokio::sync::mpsc::Receiver<PeerEvent>, String) {
    let (peer, events) = Peer::new(PeerConfig {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        recv_only_audio: 0,
        ..PeerConfig::default()
    })
    .expect("peer binds");
    let offer = peer.create_offer().await.expect("offer");
    (peer, events, offer)
}

async fn connected(events: &mut tokio::sync::mpsc::Receiver<PeerEvent>) {
    let wait = async {
        while let Some(ev) = events.recv().await {
            if matches!(ev, PeerEvent::State(ConnectionState::Connected)) {
                return true;
            }
        }
        false
    };
    let ok = tokio::time::timeout(common::EVENT_WAIT, wait).await;
    assert_eq!(ok, Ok(true), "media leg connected to the relay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_device_gets_its_own_relay_answer_and_connects_its_media() {
    on_every_database(quick, |server| async move {
        let (ann, _, ben, _, conv) = friends(&server, "ann", "ben").await;
        let mut a_rx = ann.events();
        let (a_peer, mut a_events, a_offer) = peer().await;
        let (b_peer, mut b_events, b_offer) = peer().await;

        let joined = ann
            .start_call(conv, pb::MediaKind::Audio, &a_offer)
            .await
            .unwrap();
        let call = joined.call.unwrap().call_id;
        assert!(joined.sdp_answer.contains("a=ice-ufrag"), "a real SDP answer");
        let port = server.handle.media_addr.port().to_string();
        assert!(
            joined.sdp_answer.contains(&port),
            "the answer points at the relay"
        );
        a_peer.accept_answer(&joined.sdp_answer).await.unwrap();

        let answer = ben
            .answer_call(call, true, &b_offer)
            .await
            .unwrap()
            .expect("joined");
        assert_ne!(answer.sdp_answer, joined.sdp_answer, "credentials are per device");
        b_peer.accept_answer(&answer.sdp_answer).await.unwrap();
        connected(&mut a_events).await;
        connected(&mut b_events).await;
        // The answers never travel in events.
        assert_no_event(&mut a_rx, Duration::from_millis(100), "an SDP in an event", |k| {
            format!("{k:?}").contains("ice-ufrag")
        })
        .await;

        ann.hang_up(call).await.unwrap();
        assert_eq!(ended(&mut a_rx, call).await.outcome(), pb::CallOutcome::Completed);
        a_peer.close().await;
        b_peer.close().await;
        // A garbage offer is refused and leaves no half-joined device behind.
        let (cat_conv, cat) = {
            let (cat, uc) = server.user("cat").await;
            befriend(&ann, &cat, uc.id).await;
            (ann.open_direct(uc.id).await.unwrap().id, cat)
        };
        assert_eq!(
            code(cat.start_call(cat_conv, pb::MediaKind::Audio, "not sdp").await),
            pb::ErrorCode::InvalidArgument
        );
        assert!(cat.calls().await.unwrap().is_empty());
        // It is refused before anything rings: the callee never hears of it.
        assert_no_event(
            &mut a_rx,
            Duration::from_millis(300),
            "a ring for a garbage offer",
            |k| format!("{k:?}").contains("CallIncoming"),
        )
        .await;

        server
    })
    .await;
}
