//! Shared set-up for the relay tests: a relay on loopback and connected peers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use parley_rtc::peer::{ConnectionState, EncodedAudio, Peer, PeerConfig, PeerEvent, ReceivedAudio};
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
