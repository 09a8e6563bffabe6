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
