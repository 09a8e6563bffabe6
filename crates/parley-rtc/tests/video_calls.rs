//! Video through a real relay on loopback: H.264-shaped access units, NACK/RTX on a
//! lossy path, keyframe requests, the bandwidth estimate and sender reports.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::*;
use parley_rtc::MediaKind;
use parley_rtc::peer::{EncodedAudio, PeerConfig, SenderReport, VideoEvent};
use parley_rtc::sfu::{Sfu, SfuConfig};

const GOP: u32 = 30;

/// Sends `count` frames of `slice_len` bytes at 25 fps.
async fn send_video(peer: &parley_rtc::peer::Peer, sender: u8, count: u32, slice_len: usize) {
    let mut tick = tokio::time::interval(Duration::from_millis(40));
    for i in 0..count {
        tick.tick().await;
        peer.send_video(video_frame(sender, i, GOP, slice_len))
            .expect("frame queued");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_frames_cross_the_relay_whole_and_in_order() {
    const FRAMES: u32 = 60;
    let sfu = loopback_sfu(8);
    let mut a = join_video(&sfu, 1, 100, video_config(0), str::to_owned).await;
    let mut b = join_video(&sfu, 1, 200, video_config(0), str::to_owned).await;
    a.wait_connected().await;
    b.wait_connected().await;

    let sender = tokio::spawn(async move {
        send_video(&a.peer, 0xA, FRAMES, 3000).await;
        a
    });
    let mut others = Vec::new();
    let got = b
        .collect_frames(FRAMES as usize, Duration::from_secs(2), &mut others)
        .await;
    let a = sender.await.expect("sender");

    assert_eq!(got.len(), FRAMES as usize, "every frame arrives on loopback");
    for (i, f) in got.iter().enumerate() {
        let expected = video_frame(0xA, i as u32, GOP, 3000);
        assert_eq!(f.rtp_timestamp, expected.rtp_timestamp, "frame {i} timestamp");
        assert_eq!(f.data, expected.data, "frame {i} bytes");
        assert_eq!(f.keyframe, expected.keyframe, "frame {i} keyframe flag");
        assert!(f.contiguous, "frame {i} contiguous");
        assert_eq!(f.slot, 0);
        assert_eq!(f.source_id, Some(a.source_id));
    }
    assert!(got[0].data.len() > 9000, "keyframes span many FU-A packets");
    let stats = sfu
        .participant_stats(1, 200)
        .await
        .expect("relay up")
        .expect("participant");
    assert_eq!(stats.receiving_video_from, vec![(0, 100)]);
    assert_eq!(
        stats.receiving_from,
        vec![(0, 100)],
        "audio slots are numbered apart"
    );
    let b_stats = b.peer.stats().await.expect("peer up");
    assert_eq!(b_stats.video_frames_in, u64::from(FRAMES));
    assert_eq!(b_stats.video_frames_lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_and_rtx_recover_video_on_a_lossy_path() {
    const FRAMES: u32 = 120;
    let sfu = loopback_sfu(8);
    let relay = sfu.local_addr();
    let path = ImpairedPath::start(relay, 7, 0.10, Duration::from_millis(10)).await;

    let mut a = join_video(&sfu, 2, 1, video_config(0), str::to_owned).await;
    let mut b = join_video(&sfu, 2, 2, video_config(0), |answer| {
        route_answer_via(answer, relay, path.addr)
    })
    .await;
    a.wait_connected().await;
    b.wait_connected().await;

    let sender = tokio::spawn(async move {
        // Each delta frame is 3–4 packets: at 10 % packet loss a third of them would
        // be broken without repair.
        send_video(&a.peer, 0xA, FRAMES, 3000).await;
        a
    });
    let mut others = Vec::new();
    let got = b
        .collect_frames(FRAMES as usize, Duration::from_secs(2), &mut others)
        .await;
    let _a = sender.await.expect("sender");

    let dropped = path.dropped.load(std::sync::atomic::Ordering::Relaxed);
    let intact = got
        .iter()
        .filter(|f| f.data == video_frame(0xA, f.rtp_timestamp / 3600, GOP, 3000).data)
        .count();
    let contiguous = got.iter().filter(|f| f.contiguous).count();
    eprintln!(
        "lossy path: {dropped} datagrams dropped, {} of {FRAMES} frames received, {contiguous} contiguous",
        got.len()
    );
    assert!(dropped >= 20, "the path dropped packets ({dropped})");
    assert_eq!(intact, got.len(), "every frame handed out is whole");
    assert!(
        got.windows(2).all(|w| w[0].rtp_timestamp < w[1].rtp_timestamp),
        "frames come in order, once"
    );
    assert!(
        contiguous as u32 >= FRAMES * 9 / 10,
        "NACK/RTX repaired most losses: {contiguous} of {FRAMES} contiguous"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_requests_reach_the_sender() {
    let sfu = loopback_sfu(8);
    let mut a = join_video(&sfu, 3, 1, video_config(0), str::to_owned).await;
    let mut b = join_video(&sfu, 3, 2, video_config(0), str::to_owned).await;
    a.wait_connected().await;
    b.wait_connected().await;

    // The relay asks on its own when a receiver's video slot is wired up.
    let asked = a
        .wait_video_event(CONNECT_TIMEOUT, |e| *e == VideoEvent::KeyframeRequested)
        .await;
    assert_eq!(asked, Some(VideoEvent::KeyframeRequested));

    for i in 0..5 {
        a.peer
            .send_video(video_frame(0xA, i, GOP, 500))
            .expect("frame queued");
    }
    let mut others = Vec::new();
    let got = b.collect_frames(5, Duration::from_secs(2), &mut others).await;
    assert_eq!(got.len(), 5);
    // Past the relay's throttle, so this request is not folded into the first one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while a.video.try_recv().is_ok() {}

    b.peer.request_keyframe(0).expect("request queued");
    let asked = a
        .wait_video_event(CONNECT_TIMEOUT, |e| *e == VideoEvent::KeyframeRequested)
        .await;
    assert_eq!(asked, Some(VideoEvent::KeyframeRequested), "B's PLI reached A");
    let stats = sfu
        .participant_stats(3, 2)
        .await
        .expect("relay up")
        .expect("participant");
    assert!(stats.keyframe_requests_forwarded >= 1);
    assert!(matches!(
        b.peer.request_keyframe(1),
        Err(parley_rtc::peer::PeerError::NoVideo)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_estimate_and_sender_reports_are_surfaced() {
    let sfu = loopback_sfu(8);
    let mut a = join_video(&sfu, 4, 1, video_config(0), str::to_owned).await;
    let mut b = join_video(&sfu, 4, 2, video_config(0), str::to_owned).await;
    a.wait_connected().await;
    b.wait_connected().await;

    // Audio every 20 ms and video every 40 ms from one clock, both starting at RTP 0,
    // for long enough that RTCP sender reports flow on both legs.
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for i in 0..150u32 {
            tick.tick().await;
            a.peer
                .send_audio(EncodedAudio::new(i * 960, payload(0xA, i)))
                .expect("audio queued");
            if i.is_multiple_of(2) {
                a.peer
                    .send_video(video_frame(0xA, i / 2, GOP, 2000))
                    .expect("video queued");
            }
        }
        a
    });
    let mut reports: Vec<SenderReport> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, b.video.recv()).await {
        if let VideoEvent::SenderReport(r) = ev {
            reports.push(r);
        }
        let kinds = |k| reports.iter().filter(|r| r.kind == k).count();
        if kinds(MediaKind::Audio) >= 2 && kinds(MediaKind::Video) >= 2 {
            break;
        }
    }
    let mut a = sender.await.expect("sender");

    let estimate = a
        .wait_video_event(Duration::from_secs(2), |e| {
            matches!(e, VideoEvent::BandwidthEstimate(_))
        })
        .await;
    assert!(
        matches!(estimate, Some(VideoEvent::BandwidthEstimate(bps)) if bps > 0),
        "{estimate:?}"
    );
    let stats = a.peer.stats().await.expect("peer up");
    assert!(stats.bandwidth_estimate.is_some_and(|b| b > 0), "{stats:?}");

    let last = |kind| {
        reports
            .iter()
            .rev()
            .find(|r| r.kind == kind)
            .copied()
            .unwrap_or_else(|| panic!("a {kind:?} sender report arrived: {reports:?}"))
    };
    let (audio, video) = (last(MediaKind::Audio), last(MediaKind::Video));
    assert_eq!((audio.slot, video.slot), (0, 0));
    assert_eq!(audio.source_id, Some(a.source_id));
    assert_eq!(video.source_id, Some(a.source_id));
    // The wall-clock time of RTP 0 on each stream: both were captured together.
    let origin = |r: SenderReport, clock: f64| {
        r.ntp_time
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64()
            - f64::from(r.rtp_timestamp) / clock
    };
    let skew = origin(audio, 48_000.0) - origin(video, 90_000.0);
    eprintln!(
        "audio/video origin skew from sender reports: {:.1} ms",
        skew * 1000.0
    );
    assert!(
        skew.abs() < 0.1,
        "reports line audio and video up ({skew:.3} s apart)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_flood_does_not_starve_audio() {
    const AUDIO: u32 = 100;
    init_tracing();
    let sfu = Sfu::start(SfuConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        max_video_packets_per_sec: 100,
        video_packet_burst: 50,
        ..SfuConfig::default()
    })
    .expect("relay starts");
    let flood = PeerConfig {
        video_start_bitrate: 20_000_000,
        video_send_queue: 256,
        ..video_config(0)
    };
    let mut a = join_video(&sfu, 5, 1, flood, str::to_owned).await;
    let mut b = join_video(&sfu, 5, 2, video_config(0), str::to_owned).await;
    a.wait_connected().await;
    b.wait_connected().await;

    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for i in 0..AUDIO {
            tick.tick().await;
            a.peer
                .send_audio(EncodedAudio::new(i * 960, payload(0xA, i)))
                .expect("audio queued");
            // ~40 packets of video every 20 ms: twenty times the relay's video budget.
            let _ = a.peer.send_video(video_frame(0xA, i, GOP, 40_000));
        }
        a
    });
    let audio = collect_audio(&mut b.events, AUDIO as usize, Duration::from_secs(2)).await;
    let _a = sender.await.expect("sender");

    let stats = sfu
        .participant_stats(5, 1)
        .await
        .expect("relay up")
        .expect("participant");
    assert!(stats.dropped_video_rate_limited > 0, "{stats:?}");
    assert_eq!(
        stats.dropped_rate_limited, stats.dropped_video_rate_limited,
        "only video was limited"
    );
    assert_eq!(audio.len(), AUDIO as usize, "every audio frame got through");
    for (i, p) in audio.iter().enumerate() {
        assert_eq!(p.payload, payload(0xA, i as u32));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_call_each_participant_sees_both_others() {
    const FRAMES: u32 = 20;
    let sfu = loopback_sfu(3);
    let mut peers = Vec::new();
    for (i, participant) in [(0u8, 10), (1, 20), (2, 30)] {
        let p = join_video(&sfu, 6, participant, video_config(1), str::to_owned).await;
        peers.push((i, p));
    }
    for (_, p) in &mut peers {
        p.wait_connected().await;
    }
    let sources: Vec<u32> = peers.iter().map(|(_, p)| p.source_id).collect();

    let mut tasks = Vec::new();
    for (i, mut p) in peers {
        tasks.push(tokio::spawn(async move {
            let mut others = Vec::new();
            let send = send_video(&p.peer, i, FRAMES, 1500);
            let (_, got) = tokio::join!(
                send,
                collect_frames(
                    &mut p.video,
                    2 * FRAMES as usize,
                    Duration::from_secs(2),
                    &mut others
                )
            );
            (i, p, got)
        }));
    }
    for t in tasks {
        let (i, p, got) = t.await.expect("participant task");
        let mut by_source = std::collections::BTreeMap::<u32, Vec<_>>::new();
        for f in got {
            by_source
                .entry(f.source_id.expect("relay stamps the source"))
                .or_default()
                .push(f);
        }
        let expected: Vec<u32> = sources.iter().copied().filter(|s| *s != p.source_id).collect();
        assert_eq!(
            by_source.keys().copied().collect::<Vec<_>>(),
            expected,
            "participant {i} sees the others"
        );
        let mut slots = Vec::new();
        for (source, frames) in &by_source {
            let sender = sources.iter().position(|s| s == source).expect("known source") as u8;
            assert_eq!(
                frames.len(),
                FRAMES as usize,
                "participant {i} gets all of {sender}'s frames"
            );
            for (n, f) in frames.iter().enumerate() {
                assert_eq!(f.data, video_frame(sender, n as u32, GOP, 1500).data);
                assert!(f.contiguous);
            }
            assert!(frames.iter().all(|f| f.slot == frames[0].slot));
            slots.push(frames[0].slot);
        }
        slots.sort_unstable();
        assert_eq!(slots, vec![0, 1], "the two others use both video slots");
    }
}
