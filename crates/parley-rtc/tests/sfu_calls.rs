//! Calls through a real relay on loopback: real UDP, ICE, DTLS-SRTP.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_audio_arrives_in_order_with_timestamps() {
    let sfu = loopback_sfu(8);
    let mut a = join(&sfu, 1, 100, 0).await;
    let mut b = join(&sfu, 1, 200, 0).await;
    a.wait_connected().await;
    b.wait_connected().await;

    let sender = tokio::spawn(async move {
        send_frames(&a.peer, 0xA, 200, Duration::from_millis(20)).await;
        a
    });
    let got = b.collect_audio(200, Duration::from_secs(2)).await;
    let a = sender.await.expect("sender");

    assert_eq!(got.len(), 200, "all frames arrive on loopback");
    for (i, pkt) in got.iter().enumerate() {
        let i = i as u32;
        assert_eq!(pkt.payload, payload(0xA, i), "frame {i} payload");
        assert_eq!(pkt.rtp_timestamp, i * 960, "frame {i} timestamp");
        assert_eq!(pkt.slot, 0);
        assert_eq!(pkt.source_id, Some(a.source_id));
    }
    for w in got.windows(2) {
        assert_eq!(w[1].seq_no, w[0].seq_no + 1, "sequence numbers are consecutive");
        assert!(w[1].arrival >= w[0].arrival);
    }
    let stats = sfu
        .participant_stats(1, 100)
        .await
        .expect("relay up")
        .expect("participant");
    assert!(stats.connected);
    assert_eq!(stats.packets_in, 200);
    let stats_b = sfu
        .participant_stats(1, 200)
        .await
        .expect("relay up")
        .expect("participant");
    assert_eq!(stats_b.packets_out, 200);
    assert_eq!(stats_b.receiving_from, vec![(0, 100)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_call_each_participant_hears_both_others() {
    let sfu = loopback_sfu(3);
    // Three participants: one sendrecv line plus one receive-only line each.
    let mut peers = Vec::new();
    for (i, participant) in [(0u8, 10), (1, 20), (2, 30)] {
        let p = join(&sfu, 7, participant, 1).await;
        peers.push((i, p));
    }
    for (_, p) in &mut peers {
        p.wait_connected().await;
    }
    let sources: Vec<u32> = peers.iter().map(|(_, p)| p.source_id).collect();

    let mut receivers = Vec::new();
    for (i, mut p) in peers {
        receivers.push(tokio::spawn(async move {
            let send = send_frames(&p.peer, i, 50, Duration::from_millis(10));
            let (_, got) = tokio::join!(send, collect_audio(&mut p.events, 100, Duration::from_secs(2)));
            (i, p, got)
        }));
    }
    for r in receivers {
        let (i, p, got) = r.await.expect("participant task");
        let mut by_source = std::collections::BTreeMap::<u32, Vec<_>>::new();
        for pkt in got {
            by_source
                .entry(pkt.source_id.expect("relay stamps the source"))
                .or_default()
                .push(pkt);
        }
        let expected: Vec<u32> = sources.iter().copied().filter(|s| *s != p.source_id).collect();
        assert_eq!(
            by_source.keys().copied().collect::<Vec<_>>(),
            expected,
            "participant {i} hears the others"
        );
        let mut slots = Vec::new();
        for (source, pkts) in &by_source {
            let sender = sources.iter().position(|s| s == source).expect("known source") as u8;
            assert_eq!(pkts.len(), 50, "participant {i} gets all of {sender}'s frames");
            for (n, pkt) in pkts.iter().enumerate() {
                assert_eq!(pkt.payload, payload(sender, n as u32));
                assert_eq!(pkt.rtp_timestamp, n as u32 * 960);
            }
            assert!(
                pkts.iter().all(|p| p.slot == pkts[0].slot),
                "one source stays on one slot"
            );
            slots.push(pkts[0].slot);
        }
        slots.sort_unstable();
        assert_eq!(slots, vec![0, 1], "the two others use both slots");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaver_frees_its_slot_for_the_next_joiner() {
    let sfu = loopback_sfu(3);
    let mut a = join(&sfu, 9, 1, 1).await;
    let mut b = join(&sfu, 9, 2, 1).await;
    a.wait_connected().await;
    b.wait_connected().await;
    assert!(sfu.leave(9, 2).await.expect("relay up"));
    assert!(
        !sfu.leave(9, 2).await.expect("relay up"),
        "leaving twice is a no-op"
    );
    let mut c = join(&sfu, 9, 3, 1).await;
    c.wait_connected().await;
    let stats = sfu
        .participant_stats(9, 1)
        .await
        .expect("relay up")
        .expect("participant");
    assert_eq!(stats.receiving_from, vec![(0, 3)]);

    send_frames(&c.peer, 0xC, 20, Duration::from_millis(5)).await;
    let got = a.collect_audio(20, Duration::from_secs(1)).await;
    assert_eq!(got.len(), 20);
    assert!(
        got.iter()
            .all(|p| p.source_id == Some(c.source_id) && p.slot == 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_offers_are_refused_with_typed_errors() {
    use parley_rtc::sfu::SfuError;
    let sfu = loopback_sfu(8);
    for bad in [
        "",
        "hello",
        "v=0\r\n",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio",
    ] {
        let err = sfu.join(1, 1, bad).await.expect_err("refused");
        assert!(
            matches!(err, SfuError::MalformedSdp(_) | SfuError::RejectedSdp(_)),
            "{bad:?} gave {err:?}"
        );
    }
    let (peer, _events) = new_peer(0);
    let offer = peer.create_offer().await.expect("offer");
    // A truncated offer and one without a DTLS fingerprint.
    let truncated = &offer[..offer.len() / 2];
    assert!(sfu.join(1, 1, truncated).await.is_err());
    let no_fingerprint: String = offer
        .lines()
        .filter(|l| !l.starts_with("a=fingerprint"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    assert!(matches!(
        sfu.join(1, 1, &no_fingerprint).await,
        Err(SfuError::RejectedSdp(_))
    ));
    let huge = format!("{offer}{}", "a=x-pad:0\r\n".repeat(10_000));
    assert!(matches!(
        sfu.join(1, 1, &huge).await,
        Err(SfuError::OfferTooLarge { .. })
    ));

    // The relay is still fine and nothing was left behind.
    let stats = sfu.stats().await.expect("relay up");
    assert_eq!((stats.calls, stats.legs), (0, 0));
    sfu.join(1, 1, &offer).await.expect("a good offer still joins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_and_relay_limits_are_enforced() {
    use parley_rtc::sfu::{Sfu, SfuConfig, SfuError};
    init_tracing();
    let sfu = Sfu::start(SfuConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        max_participants: 2,
        max_calls: 2,
        ..SfuConfig::default()
    })
    .expect("relay starts");
    let offer = || async {
        let (peer, _) = new_peer(0);
        peer.create_offer().await.expect("offer")
    };
    sfu.join(1, 1, &offer().await).await.expect("first");
    sfu.join(1, 2, &offer().await).await.expect("second");
    assert_eq!(
        sfu.join(1, 3, &offer().await).await.unwrap_err(),
        SfuError::CallFull { limit: 2 }
    );
    // Joining again replaces the old leg rather than counting twice.
    sfu.join(1, 2, &offer().await).await.expect("rejoin");
    sfu.join(2, 1, &offer().await).await.expect("second call");
    assert_eq!(
        sfu.join(3, 1, &offer().await).await.unwrap_err(),
        SfuError::TooManyCalls { limit: 2 }
    );
    assert!(sfu.close_call(1).await.expect("relay up"));
    sfu.join(3, 1, &offer().await)
        .await
        .expect("room for a call again");
    let stats = sfu.stats().await.expect("relay up");
    assert_eq!((stats.calls, stats.legs), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_reports_connects_and_departures() {
    use parley_rtc::sfu::{LeaveReason, SfuEvent};
    let sfu = loopback_sfu(8);
    let mut events = sfu.subscribe();
    let mut next = async move || {
        tokio::time::timeout(CONNECT_TIMEOUT, events.recv())
            .await
            .expect("event in time")
            .expect("event")
    };
    let mut a = join(&sfu, 4, 1, 0).await;
    a.wait_connected().await;
    assert_eq!(
        next().await,
        SfuEvent::Connected {
            call: 4,
            participant: 1
        }
    );
    let mut b = join(&sfu, 4, 2, 0).await;
    b.wait_connected().await;
    assert_eq!(
        next().await,
        SfuEvent::Connected {
            call: 4,
            participant: 2
        }
    );

    // A client hanging up closes DTLS; the relay drops the leg at once.
    a.peer.close().await;
    assert_eq!(
        next().await,
        SfuEvent::Left {
            call: 4,
            participant: 1,
            reason: LeaveReason::Disconnected
        }
    );
    assert!(sfu.close_call(4).await.expect("relay up"));
    assert_eq!(
        next().await,
        SfuEvent::Left {
            call: 4,
            participant: 2,
            reason: LeaveReason::CallClosed
        }
    );
    // B hears that the relay closed its leg.
    let closed = tokio::time::timeout(CONNECT_TIMEOUT, async {
        while let Some(ev) = b.events.recv().await {
            if ev == parley_rtc::peer::PeerEvent::State(parley_rtc::peer::ConnectionState::Closed) {
                return true;
            }
        }
        false
    })
    .await
    .expect("close in time");
    assert!(closed);
    assert_eq!(sfu.stats().await.expect("relay up").legs, 0);
}
