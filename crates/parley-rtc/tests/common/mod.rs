//! Shared set-up for the relay tests: a relay on loopback and connected peers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use parley_rtc::peer::{
    ConnectionState, EncodedAudio, EncodedVideo, Peer, PeerConfig, PeerEvent, ReceivedAudio, ReceivedVideo,
    VideoEvent,
};
use parley_rtc::sfu::{CallId, ParticipantId, Sfu, SfuConfig, SfuHandle};
use tokio::sync::mpsc;
use tokio::time::timeout;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn loopback_sfu(max_participants: usize) -> SfuHandle {
    init_tracing();
    let config = SfuConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_participants,
        ..SfuConfig::default()
    };
    Sfu::start(config).expect("relay starts")
}

pub struct TestPeer {
    pub peer: Peer,
    pub events: mpsc::Receiver<PeerEvent>,
    pub source_id: u32,
}

/// A peer on loopback with `recv_only` extra audio slots, its offer not yet made.
pub fn new_peer(recv_only: usize) -> (Peer, mpsc::Receiver<PeerEvent>) {
    Peer::new(PeerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        recv_only_audio: recv_only,
        ..PeerConfig::default()
    })
    .expect("peer binds")
}

/// Offer → join → answer, without waiting for the connection.
pub async fn join(sfu: &SfuHandle, call: CallId, participant: ParticipantId, recv_only: usize) -> TestPeer {
    let (peer, events) = new_peer(recv_only);
    let offer = peer.create_offer().await.expect("offer");
    let joined = sfu.join(call, participant, &offer).await.expect("join");
    peer.accept_answer(&joined.answer_sdp)
        .await
        .expect("answer accepted");
    TestPeer {
        peer,
        events,
        source_id: joined.source_id,
    }
}

impl TestPeer {
    pub async fn wait_connected(&mut self) {
        timeout(CONNECT_TIMEOUT, async {
            while let Some(ev) = self.events.recv().await {
                if ev == PeerEvent::State(ConnectionState::Connected) {
                    return;
                }
            }
            panic!("peer events ended before connecting");
        })
        .await
        .expect("peer connects in time");
    }

    /// Audio packets received until `quiet` passes with none, or `limit` are in.
    pub async fn collect_audio(&mut self, limit: usize, quiet: Duration) -> Vec<ReceivedAudio> {
        collect_audio(&mut self.events, limit, quiet).await
    }
}

/// Audio packets from `events` until `quiet` passes with none, or `limit` are in.
pub async fn collect_audio(
    events: &mut mpsc::Receiver<PeerEvent>,
    limit: usize,
    quiet: Duration,
) -> Vec<ReceivedAudio> {
    {
        let mut got = Vec::new();
        let mut deadline = tokio::time::Instant::now() + quiet;
        while got.len() < limit {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(PeerEvent::Audio(a))) => {
                    got.push(a);
                    deadline = tokio::time::Instant::now() + quiet;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        got
    }
}

/// A recognisable ~80-byte payload for frame `i` of sender `sender`.
pub fn payload(sender: u8, i: u32) -> Bytes {
    let mut p = vec![sender; 80];
    p[..4].copy_from_slice(&i.to_be_bytes());
    Bytes::from(p)
}

pub fn frame(sender: u8, i: u32) -> EncodedAudio {
    EncodedAudio::new(i * 960, payload(sender, i))
}

/// Sends `count` frames at `pacing`.
pub async fn send_frames(peer: &Peer, sender: u8, count: u32, pacing: Duration) {
    let mut tick = tokio::time::interval(pacing);
    for i in 0..count {
        tick.tick().await;
        peer.send_audio(frame(sender, i)).expect("frame queued");
    }
}

/// A UDP hop between one client and the relay that drops and delays the relay's
/// RTP/RTCP towards the client with a seeded RNG, like a lossy, jittery last mile.
/// Connection set-up (STUN, DTLS) passes untouched so the test starts the same way
/// every run; the client's own packets go up unimpaired.
pub struct ImpairedPath {
    pub addr: SocketAddr,
    pub dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl ImpairedPath {
    pub async fn start(relay: SocketAddr, seed: u64, loss: f64, max_delay: Duration) -> ImpairedPath {
        use rand::{Rng, SeedableRng};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        use tokio::net::UdpSocket;

        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let back = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = front.local_addr().expect("addr");
        let dropped = Arc::new(AtomicU64::new(0));
        let dropped_count = dropped.clone();
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut client = None;
            let (mut up, mut down) = (vec![0u8; 2048], vec![0u8; 2048]);
            loop {
                tokio::select! {
                    r = front.recv_from(&mut up) => {
                        let Ok((n, from)) = r else { return };
                        client = Some(from);
                        let _ = back.send_to(&up[..n], relay).await;
                    }
                    r = back.recv_from(&mut down) => {
                        let Ok((n, _)) = r else { return };
                        let Some(client) = client else { continue };
                        let datagram = down[..n].to_vec();
                        let is_rtp = matches!(datagram.first(), Some(128..=191));
                        if is_rtp && rng.random_bool(loss) {
                            dropped_count.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let delay = if is_rtp {
                            Duration::from_micros(rng.random_range(0..=max_delay.as_micros() as u64))
                        } else {
                            Duration::ZERO
                        };
                        let front = front.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = front.send_to(&datagram, client).await;
                        });
                    }
                }
            }
        });
        ImpairedPath { addr, dropped }
    }
}

/// The relay's answer with its host candidate pointed at `via` instead.
pub fn route_answer_via(answer: &str, relay: SocketAddr, via: SocketAddr) -> String {
    let from = format!(" {} {} typ", relay.ip(), relay.port());
    let to = format!(" {} {} typ", via.ip(), via.port());
    assert!(answer.contains(&from), "answer names the relay's candidate");
    answer.replace(&from, &to)
}

/// The ICE username fragment an SDP blob carries.
pub fn ice_ufrag(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("SDP has an ICE ufrag")
        .trim()
        .to_owned()
}

/// A peer that sends and receives video as well, with its video event stream.
pub struct VideoPeer {
    pub peer: Peer,
    pub events: mpsc::Receiver<PeerEvent>,
    pub video: mpsc::Receiver<VideoEvent>,
    pub source_id: u32,
}

pub fn video_config(recv_only_video: usize) -> PeerConfig {
    PeerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        recv_only_audio: 0,
        video: true,
        recv_only_video,
        ..PeerConfig::default()
    }
}

/// Offer → join → answer for a video peer; `route` may rewrite the answer (to send
/// the peer's traffic through an impaired path).
pub async fn join_video(
    sfu: &SfuHandle,
    call: CallId,
    participant: ParticipantId,
    config: PeerConfig,
    route: impl FnOnce(&str) -> String,
) -> VideoPeer {
    let (peer, events, video) = Peer::new_with_video(config).expect("peer binds");
    let offer = peer.create_offer().await.expect("offer");
    let joined = sfu.join(call, participant, &offer).await.expect("join");
    peer.accept_answer(&route(&joined.answer_sdp))
        .await
        .expect("answer accepted");
    VideoPeer {
        peer,
        events,
        video,
        source_id: joined.source_id,
    }
}

impl VideoPeer {
    pub async fn wait_connected(&mut self) {
        timeout(CONNECT_TIMEOUT, async {
            while let Some(ev) = self.events.recv().await {
                if ev == PeerEvent::State(ConnectionState::Connected) {
                    return;
                }
            }
            panic!("peer events ended before connecting");
        })
        .await
        .expect("peer connects in time");
    }

    /// Video frames until `quiet` passes with none, or `limit` are in. Other video
    /// events are kept in `others`.
    pub async fn collect_frames(
        &mut self,
        limit: usize,
        quiet: Duration,
        others: &mut Vec<VideoEvent>,
    ) -> Vec<ReceivedVideo> {
        collect_frames(&mut self.video, limit, quiet, others).await
    }

    /// Waits for a video event matching `want`, discarding others.
    pub async fn wait_video_event(
        &mut self,
        within: Duration,
        want: impl Fn(&VideoEvent) -> bool,
    ) -> Option<VideoEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.video.recv()).await {
                Ok(Some(ev)) if want(&ev) => return Some(ev),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

/// An H.264-shaped access unit for frame `i`: SPS, PPS and an IDR slice for a
/// keyframe, one non-IDR slice otherwise, `slice_len` bytes of slice data that
/// never contain a start code, and the frame number up front so every frame differs.
pub fn video_access_unit(sender: u8, i: u32, keyframe: bool, slice_len: usize) -> Bytes {
    let mut au = Vec::with_capacity(slice_len + 64);
    if keyframe {
        au.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0xda, 0x02, 0x80, 0xf6, 0x9b]);
        au.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x06, 0xe2]);
        au.extend_from_slice(&[0, 0, 0, 1, 0x65]);
    } else {
        au.extend_from_slice(&[0, 0, 0, 1, 0x41]);
    }
    au.extend_from_slice(&(i | 0x8080_8080).to_be_bytes());
    au.push(sender | 0x80);
    au.extend((0..slice_len).map(|n| (n % 251) as u8 | 0x10));
    Bytes::from(au)
}

/// Frame `i` of a 25 fps stream with a keyframe every `gop` frames.
pub fn video_frame(sender: u8, i: u32, gop: u32, slice_len: usize) -> EncodedVideo {
    let keyframe = i.is_multiple_of(gop);
    let len = if keyframe { slice_len * 3 } else { slice_len };
    EncodedVideo {
        rtp_timestamp: i * 3600,
        data: video_access_unit(sender, i, keyframe, len),
        keyframe,
        captured_at: None,
    }
}

/// Video frames from `video` until `quiet` passes with none, or `limit` are in. Other
/// video events are kept in `others`.
pub async fn collect_frames(
    video: &mut mpsc::Receiver<VideoEvent>,
    limit: usize,
    quiet: Duration,
    others: &mut Vec<VideoEvent>,
) -> Vec<ReceivedVideo> {
    let mut got = Vec::new();
    let mut deadline = tokio::time::Instant::now() + quiet;
    while got.len() < limit {
        match tokio::time::timeout_at(deadline, video.recv()).await {
            Ok(Some(VideoEvent::Frame(f))) => {
                got.push(f);
                deadline = tokio::time::Instant::now() + quiet;
            }
            Ok(Some(other)) => others.push(other),
            Ok(None) | Err(_) => break,
        }
    }
    got
}
