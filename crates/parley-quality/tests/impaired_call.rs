//! The harness end to end, briefly: real calls through a real server, one over a clean path
//! and one over 10 % random loss with ±20 ms jitter. These check that the harness measures
//! (speech located, loss seen where it was set, concealment counted); the figures themselves
//! come from the full run in docs/call-quality.md, on a machine that is not also compiling.

use std::sync::Arc;
use std::time::Duration;

use parley_quality::call::{self, Network, RunOptions};
use parley_quality::relay::{ImpairedRelay, Impairment};
use parley_quality::timeline::synthetic_speech;
use str0m_netem::{NetemConfig, Probability, RandomLoss};
use tokio::net::UdpSocket;

fn options(seed: u64) -> RunOptions {
    RunOptions {
        seconds: 9,
        warmup: Duration::from_secs(3),
        speech: Arc::new(synthetic_speech(12, seed)),
        seed,
        wav_dir: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_measured_over_clean_and_impaired_paths() {
    let clean = Network {
        loss_percent: 0.0,
        bursty: false,
        jitter_ms: 0,
    };
    let lossy = Network {
        loss_percent: 10.0,
        bursty: false,
        jitter_ms: 20,
    };
    let (clean_options, lossy_options) = (options(1), options(2));
    let (clean, lossy) = tokio::join!(call::run(clean, &clean_options), call::run(lossy, &lossy_options));
    let (clean, lossy) = (clean.unwrap(), lossy.unwrap());

    for r in [&clean, &lossy] {
        assert!(
            r.frames_played >= 250,
            "{}: played {}",
            r.network.label(),
            r.frames_played
        );
        assert!(
            r.windows_located >= 10,
            "{}: located {}",
            r.network.label(),
            r.windows_located
        );
        let p50 = r.mouth_to_ear_p50_ms.unwrap();
        assert!(
            p50 > 20.0 && p50 < 1000.0,
            "{}: mouth-to-ear {p50} ms",
            r.network.label()
        );
    }
    // Nothing is lost on a clean path, so nothing after start-up is invented.
    assert_eq!(clean.downlink_in, clean.downlink_out);
    assert_eq!(clean.concealed_frames, 0, "{clean:?}");
    // The emulator dropped about a tenth of what it was given, and FEC rebuilt some of it.
    let seen = 1.0 - lossy.downlink_out as f64 / lossy.downlink_in as f64;
    assert!((0.05..0.16).contains(&seen), "loss seen {seen}");
    assert!(lossy.fec_frames > 0, "{lossy:?}");
}

#[tokio::test]
async fn the_relay_forwards_both_ways_and_drops_what_it_is_told_to() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let upstream = server.local_addr().unwrap();
    let listen = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let drop_all = NetemConfig::new().loss(RandomLoss::new(Probability::new(1.0)));
    let relay = ImpairedRelay::start(
        listen,
        upstream,
        Impairment {
            uplink: None,
            downlink: Some(drop_all),
        },
        9,
    )
    .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(b"hello", relay.local_addr()).await.unwrap();
    let mut buf = [0u8; 64];
    let (len, from) = tokio::time::timeout(Duration::from_secs(5), server.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..len], b"hello");
    // The reply is swallowed by the downlink's emulator.
    server.send_to(b"reply", from).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_millis(300), client.recv_from(&mut buf)).await;
    assert!(reply.is_err(), "a reply crossed a link that drops everything");
    assert_eq!(
        relay
            .counters()
            .down_in
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_call_is_measured_picture_by_picture() {
    use parley_quality::video::{self, VideoRunOptions};
    let options = VideoRunOptions {
        seconds: 8,
        warmup: Duration::from_secs(3),
        speech: Arc::new(synthetic_speech(12, 3)),
        width: 320,
        height: 180,
        fps: 15,
        seed: 3,
    };
    let clean = Network {
        loss_percent: 0.0,
        bursty: false,
        jitter_ms: 0,
    };
    let r = video::run(clean, None, &options).await.unwrap();
    // Every shown picture was traced back to its capture by the marks in its pixels.
    assert!(r.delivered_fps > 5.0, "{r:?}");
    assert_eq!(r.unreadable, 0, "{r:?}");
    assert!(r.glass_p50_ms.is_some() && r.skew_p50_ms.is_some(), "{r:?}");
}
