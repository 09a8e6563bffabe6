//! The relay under bad conditions: strangers sending junk at its port, and a lossy,
//! jittery path to a participant.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};

/// A STUN binding request naming `username`, with an integrity value no one signed.
fn forged_stun(username: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    let mut push = |typ: u16, value: &[u8]| {
        attrs.extend_from_slice(&typ.to_be_bytes());
        attrs.extend_from_slice(&(value.len() as u16).to_be_bytes());
        attrs.extend_from_slice(value);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
    };
    push(0x0006, username.as_bytes());
    push(0x0024, &[0x6e, 0x7f, 0x1e, 0xff]);
    push(0x0008, &[0xab; 20]);
    push(0x8028, &[0xde, 0xad, 0xbe, 0xef]);
    let mut msg = vec![0x00, 0x01];
    msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    msg.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    msg.extend_from_slice(&[9; 12]);
    msg.extend_from_slice(&attrs);
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_get_nothing_and_do_not_disturb_a_call() {
    let sfu = loopback_sfu(8);
    let relay = sfu.local_addr();
    let (peer_b, events_b) = new_peer(0);
    let offer_b = peer_b.create_offer().await.expect("offer");
    let mut a = join(&sfu, 5, 1, 0).await;
    let joined_b = sfu.join(5, 2, &offer_b).await.expect("join");
    peer_b.accept_answer(&joined_b.answer_sdp).await.expect("answer");
    let mut b = TestPeer {
        peer: peer_b,
        events: events_b,
        source_id: joined_b.source_id,
    };
    a.wait_connected().await;
    b.wait_connected().await;
    // The stranger knows B's ICE username (it is not secret on the wire) but not
    // the password, which only travelled through signalling.
    let b_ufrag = ice_ufrag(&joined_b.answer_sdp);

    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    stranger
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let attack = std::thread::spawn(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let mut sent = 0u32;
        for round in 0..400u32 {
            let mut junk = vec![0u8; rng.random_range(1..1400)];
            rng.fill(&mut junk[..]);
            let datagram = match round % 6 {
                0 => junk,
                1 => forged_stun("nobody:stranger"),
                2 => forged_stun(&format!("{b_ufrag}:stranger")),
                // A DTLS ClientHello header followed by noise.
                3 => [
                    &[0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 60][..],
                    &junk[..60.min(junk.len())],
                ]
                .concat(),
                // An RTP header (Opus payload type) followed by noise.
                4 => [
                    &[0x80, 111, 0, round as u8, 0, 0, 0, 1, 0xca, 0xfe, 0xba, 0xbe][..],
                    &junk[..],
                ]
                .concat(),
                _ => vec![0x80; 3000],
            };
            if stranger.send_to(&datagram, relay).is_ok() {
                sent += 1;
            }
            std::thread::sleep(Duration::from_micros(2500));
        }
        let mut buf = [0u8; 2048];
        let answered = stranger.recv_from(&mut buf).is_ok();
        (sent, answered)
    });

    let sender = tokio::spawn(async move {
        send_frames(&a.peer, 0xA, 100, Duration::from_millis(10)).await;
        a
    });
    let got = b.collect_audio(100, Duration::from_secs(2)).await;
    let _a = sender.await.expect("sender");
    let (sent, answered) = tokio::task::spawn_blocking(move || attack.join().expect("attacker"))
        .await
        .expect("join attacker");

    assert_eq!(sent, 400);
    assert!(!answered, "the relay never answers a stranger");
    assert_eq!(got.len(), 100, "the call carried on undisturbed");
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, p)| p.payload == payload(0xA, i as u32))
    );
    let stats = sfu.stats().await.expect("relay up");
    assert_eq!(stats.legs, 2);
    assert!(
        stats.dropped_unknown + stats.dropped_malformed + stats.dropped_oversized >= 400,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_jittery_path_loses_audio_for_good_but_the_stream_continues() {
    const FRAMES: u32 = 150;
    let sfu = loopback_sfu(8);
    let relay = sfu.local_addr();
    let path = ImpairedPath::start(relay, 42, 0.10, Duration::from_millis(20)).await;

    let mut a = join(&sfu, 6, 1, 0).await;
    let (peer_b, events_b) = new_peer(0);
    let offer = peer_b.create_offer().await.expect("offer");
    let joined = sfu.join(6, 2, &offer).await.expect("join");
    peer_b
        .accept_answer(&route_answer_via(&joined.answer_sdp, relay, path.addr))
        .await
        .expect("answer");
    let mut b = TestPeer {
        peer: peer_b,
        events: events_b,
        source_id: joined.source_id,
    };
    a.wait_connected().await;
    b.wait_connected().await;

    let sender = tokio::spawn(async move {
        send_frames(&a.peer, 0xA, FRAMES, Duration::from_millis(20)).await;
        a
    });
    let got = b.collect_audio(FRAMES as usize, Duration::from_secs(1)).await;
    let _a = sender.await.expect("sender");

    let dropped = path.dropped.load(std::sync::atomic::Ordering::Relaxed);
    let frames: Vec<u32> = got.iter().map(|p| p.rtp_timestamp / 960).collect();
    let unique: BTreeSet<u32> = frames.iter().copied().collect();
    assert_eq!(
        unique.len(),
        frames.len(),
        "no frame arrives twice: audio is never retransmitted"
    );
    assert!(dropped > 0, "the path dropped something");
    // Every frame the path let through arrives once; the dropped ones never come back.
    // (RTCP shares the loss, so not every drop is a frame.)
    assert!(
        got.len() as u64 >= u64::from(FRAMES) - dropped,
        "{} received, {dropped} dropped",
        got.len()
    );
    assert!(got.len() < FRAMES as usize, "losses stay lost");
    assert!(
        unique.iter().rev().take(1).all(|last| *last >= FRAMES - 10),
        "the stream runs to the end"
    );
    for pkt in &got {
        let i = pkt.rtp_timestamp / 960;
        assert_eq!(pkt.payload, payload(0xA, i), "frame {i} intact");
    }
    // Sequence numbers keep the gaps the jitter buffer needs to see the losses.
    let first = got
        .iter()
        .map(|p| (p.seq_no, p.rtp_timestamp / 960))
        .min()
        .expect("some packets");
    for pkt in &got {
        assert_eq!(pkt.seq_no - first.0, u64::from(pkt.rtp_timestamp / 960 - first.1));
    }
    let stats = b.peer.stats().await.expect("peer up");
    assert!(stats.packets_in > 0);
}
