//! Voice calls end to end through a real in-process server (signalling over TLS, media through
//! its relay over loopback UDP with DTLS-SRTP), every participant sending a tone of its own.
//!
//! * 1:1: two friends call each other. Each side must hear the other's tone, the jitter buffer
//!   must not conceal anything once playing at 0 % loss, and the call must leave a completed
//!   call record with its duration in the conversation.
//! * group: three members of a group conversation. Each must hear the two others' tones, mixed,
//!   and not its own, with one voice per other participant in its statistics.

mod common;

use std::time::Duration;

use common::{befriend, init_tracing, loopback_options, start_server, user};

use parley_client::pb::{self, event::Kind as Ev};
use parley_client::{Client, ClientEvent};
use parley_media::analysis::{dominant_frequency, tone_amplitudes};
use parley_media::{MemorySink, ToneSource};
use parley_server::ServerHandle;
use parley_voice::{CallPhase, CallStats, VoiceCall, next_incoming_call};
use tokio::sync::{broadcast, watch};

const WAIT: Duration = Duration::from_secs(10);
/// Frames (20 ms) after playout starts that may still be start-up.
const STARTUP_FRAMES: u64 = 50;
/// Frames each side must play in all: three seconds of call.
const CALL_FRAMES: u64 = 150;

/// Waits until the receiver has played `frames` frames; returns that snapshot.
async fn played(stats: &mut watch::Receiver<CallStats>, frames: u64) -> CallStats {
    let wait = stats.wait_for(|s| s.receive.frames_played >= frames);
    tokio::time::timeout(WAIT, wait)
        .await
        .expect("audio plays in time")
        .expect("audio task running")
        .clone()
}

async fn call_record(rx: &mut broadcast::Receiver<ClientEvent>, conv: i64) -> pb::Message {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(ClientEvent::Server(Ev::Message(m)))
                    if m.conv_id == conv && m.kind == pb::MessageKind::CallRecord as i32 =>
                {
                    return m;
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    };
    tokio::time::timeout(WAIT, wait).await.expect("a call record")
}

fn assert_tone(samples: &[i16], hz: f64, who: &str) {
    let measured = dominant_frequency(samples).unwrap_or_else(|| panic!("{who} heard nothing"));
    assert!(
        (measured - hz).abs() < 5.0,
        "{who} heard {measured:.1} Hz, expected {hz} Hz"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friends_hear_each_others_tone_through_the_relay() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let (ann, _) = user(&server, "ann").await;
    let (ben, ben_user) = user(&server, "ben").await;
    befriend(&ann, &ben, ben_user.id).await;
    let conv = ann.open_direct(ben_user.id).await.unwrap().id;
    let mut ben_events = ben.events();

    let caller_source = ToneSource::new(440.0, 0.3).unwrap();
    let mut ann_call = VoiceCall::place(&ann, conv, caller_source, MemorySink::new(20), loopback_options())
        .await
        .unwrap();
    assert_eq!(ann_call.phase(), CallPhase::Ringing);
    let incoming = tokio::time::timeout(WAIT, next_incoming_call(&mut ben_events))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(incoming.call_id, ann_call.call_id());
    let callee_source = ToneSource::new(660.0, 0.3).unwrap();
    let mut ben_call = VoiceCall::answer(
        &ben,
        incoming.call_id,
        callee_source,
        MemorySink::new(20),
        loopback_options(),
    )
    .await
    .unwrap();
    tokio::time::timeout(WAIT, ann_call.wait_answered())
        .await
        .unwrap()
        .unwrap();

    let (mut ann_stats, mut ben_stats) = (ann_call.stats_watch(), ben_call.stats_watch());
    let ann_startup = played(&mut ann_stats, STARTUP_FRAMES).await;
    let ben_startup = played(&mut ben_stats, STARTUP_FRAMES).await;
    let ann_steady = played(&mut ann_stats, CALL_FRAMES).await;
    let ben_steady = played(&mut ben_stats, CALL_FRAMES).await;
    for (who, startup, steady) in [
        ("ann", &ann_startup, &ann_steady),
        ("ben", &ben_startup, &ben_steady),
    ] {
        assert_eq!(
            steady.receive.concealed_frames, startup.receive.concealed_frames,
            "{who} concealed frames after start-up: {:?}",
            steady.receive
        );
        assert!(
            steady.connected && steady.frames_sent >= CALL_FRAMES,
            "{who}: {steady:?}"
        );
        assert!(
            steady.jitter_buffer_delay_ms() < 200.0,
            "{who}: {:?}",
            steady.receive
        );
        assert_eq!(steady.participants.len(), 1, "{who}: {:?}", steady.participants);
        // The loss adapter sets the encoder from the start: the clean-link 32 kbit/s plus room
        // for the FEC its initial 10 % guess asks for, and at no loss the guess only falls.
        let encoder = steady.encoder;
        assert!(
            encoder.bitrate_bps > 32_000 && (2..=10).contains(&encoder.expected_loss_percent),
            "{who}: {encoder:?}"
        );
        println!("{who}: {}", steady.summary());
    }

    let ann_done = ann_call.hang_up().await.unwrap();
    let end = tokio::time::timeout(WAIT, ben_call.ended()).await.unwrap();
    assert_eq!(end.outcome, pb::CallOutcome::Completed);
    assert_eq!(ann_done.end, Some(end), "both sides see the same end");
    assert!(end.duration >= Duration::from_secs(2), "{end:?}");
    let ben_done = ben_call.finish().await.unwrap();

    assert_tone(ann_done.sink.samples(), 660.0, "ann");
    assert_tone(ben_done.sink.samples(), 440.0, "ben");

    let record = call_record(&mut ben_events, conv).await;
    let history = ben.history(conv, 0, 20).await.unwrap();
    let stored = history
        .messages
        .iter()
        .find(|m| m.seq == record.seq)
        .expect("the call record is in the history");
    let details = stored.call.expect("call details");
    assert_eq!(details.outcome(), pb::CallOutcome::Completed);
    assert_eq!(details.call_id, incoming.call_id);
    assert_eq!(Duration::from_millis(details.duration_ms), end.duration);

    ann.close().await;
    ben.close().await;
    server.shutdown().await;
}

/// Ann, Ben and Cat, Ann friends with both, and a group conversation of the three.
async fn group_of_three(server: &ServerHandle) -> ([Client; 3], i64) {
    let (ann, _) = user(server, "ann").await;
    let (ben, ben_user) = user(server, "ben").await;
    let (cat, cat_user) = user(server, "cat").await;
    for (friend, id) in [(&ben, ben_user.id), (&cat, cat_user.id)] {
        befriend(&ann, friend, id).await;
    }
    let group = ann
        .create_group("trio", &[ben_user.id, cat_user.id])
        .await
        .unwrap()
        .id;
    ([ann, ben, cat], group)
}

/// Waits until the call hears `voices` voices, each having played `frames` frames.
async fn hearing(stats: &mut watch::Receiver<CallStats>, voices: usize, frames: u64) -> CallStats {
    let latest = stats.clone();
    let wait = stats.wait_for(|s| {
        s.participants.len() == voices && s.participants.iter().all(|p| p.receive.frames_played >= frames)
    });
    match tokio::time::timeout(WAIT, wait).await {
        Ok(Ok(s)) => s.clone(),
        Ok(Err(_)) => panic!("audio task stopped"),
        Err(_) => panic!("{voices} voices did not play in time: {:?}", *latest.borrow()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_in_a_group_each_hear_the_two_others_mixed() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let ([ann, ben, cat], group) = group_of_three(&server).await;
    let (mut ben_events, mut cat_events) = (ben.events(), cat.events());

    let tones = [440.0, 660.0, 880.0];
    let tone = |hz| ToneSource::new(hz, 0.2).unwrap();
    let ann_call = VoiceCall::place(
        &ann,
        group,
        tone(tones[0]),
        MemorySink::new(30),
        loopback_options(),
    )
    .await
    .unwrap();
    assert!(ann_call.info().group);
    let mut calls = vec![ann_call];
    for (client, events, hz) in [
        (&ben, &mut ben_events, tones[1]),
        (&cat, &mut cat_events, tones[2]),
    ] {
        let incoming = tokio::time::timeout(WAIT, next_incoming_call(events))
            .await
            .unwrap()
            .unwrap();
        assert!(incoming.group);
        let call = VoiceCall::answer(
            client,
            incoming.call_id,
            tone(hz),
            MemorySink::new(30),
            loopback_options(),
        )
        .await
        .unwrap();
        calls.push(call);
    }

    let names = ["ann", "ben", "cat"];
    for (who, call) in names.iter().zip(&calls) {
        let steady = hearing(&mut call.stats_watch(), 2, CALL_FRAMES).await;
        let sources: std::collections::BTreeSet<_> =
            steady.participants.iter().map(|p| p.source_id).collect();
        assert_eq!(sources.len(), 2, "{who} hears two distinct sources: {steady:?}");
        assert!(
            steady.participants.iter().all(|p| p.level > 0.01),
            "{who}: {:?}",
            steady.participants
        );
        println!("{who}: {}", steady.summary());
    }

    // Stopped together, so every recording ends with all three still in the call; then each
    // leaves through signalling, and the last but one leaving ends the call.
    let call_id = calls[0].call_id();
    let mut finishing = calls.into_iter().map(|call| tokio::spawn(call.finish()));
    let (ann_done, ben_done, cat_done) = match (finishing.next(), finishing.next(), finishing.next()) {
        (Some(a), Some(b), Some(c)) => {
            let (a, b, c) = tokio::join!(a, b, c);
            (a.unwrap().unwrap(), b.unwrap().unwrap(), c.unwrap().unwrap())
        }
        _ => unreachable!("three calls"),
    };
    ann.hang_up(call_id).await.unwrap();
    ben.hang_up(call_id).await.unwrap();
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match cat_events.recv().await {
                Ok(ClientEvent::Server(Ev::CallEnded(e))) if e.call_id == call_id => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .expect("the call ends once only cat is left");
    assert_eq!(end.outcome(), pb::CallOutcome::Completed);

    for (i, (who, done)) in names.iter().zip([&ann_done, &ben_done, &cat_done]).enumerate() {
        let samples = done.sink.samples();
        // The last two seconds before the media stopped, less the moments of stopping.
        let end = samples.len().saturating_sub(10 * 960);
        let start = end.saturating_sub(100 * 960);
        let amps = tone_amplitudes(&samples[start..end], &tones);
        println!("{who}: 440/660/880 Hz amplitudes {amps:?}");
        for (j, amp) in amps.iter().enumerate() {
            if i == j {
                assert!(*amp < 200.0, "{who} hears its own {} Hz tone: {amps:?}", tones[j]);
            } else {
                assert!(*amp > 2_000.0, "{who} misses the {} Hz tone: {amps:?}", tones[j]);
            }
        }
    }

    ann.close().await;
    ben.close().await;
    cat.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaving_a_group_call_is_confirmed_at_once_and_the_others_go_on() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let ([ann, ben, cat], group) = group_of_three(&server).await;
    let (mut ben_events, mut cat_events) = (ben.events(), cat.events());
    let silence = || parley_media::SilenceSource;
    let ann_call = VoiceCall::place(&ann, group, silence(), MemorySink::new(10), loopback_options())
        .await
        .unwrap();
    let mut others = Vec::new();
    for (client, events) in [(&ben, &mut ben_events), (&cat, &mut cat_events)] {
        let incoming = tokio::time::timeout(WAIT, next_incoming_call(events))
            .await
            .unwrap()
            .unwrap();
        let call = VoiceCall::answer(
            client,
            incoming.call_id,
            silence(),
            MemorySink::new(10),
            loopback_options(),
        )
        .await
        .unwrap();
        others.push(call);
    }
    hearing(&mut ann_call.stats_watch(), 2, 10).await;

    // The call goes on without Ann, so no end confirms her leaving; her own departure does,
    // well within the wait for an end.
    let started = std::time::Instant::now();
    let ann_done = ann_call.hang_up().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ann_done.end, None);
    let mut cat_call = others.pop().unwrap();
    let ben_call = others.pop().unwrap();
    assert!(!matches!(ben_call.phase(), CallPhase::Ended(_)));
    assert!(!matches!(cat_call.phase(), CallPhase::Ended(_)));

    // Ben leaving leaves Cat alone, which ends the call for everyone.
    let ben_done = ben_call.hang_up().await.unwrap();
    let end = tokio::time::timeout(WAIT, cat_call.ended()).await.unwrap();
    assert_eq!(end.outcome, pb::CallOutcome::Completed);
    assert_eq!(ben_done.end, Some(end));
    cat_call.finish().await.unwrap();

    ann.close().await;
    ben.close().await;
    cat.close().await;
    server.shutdown().await;
}
