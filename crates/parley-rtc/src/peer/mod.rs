//! The client side of a call leg: one str0m `Rtc` on one UDP socket, driven by a
//! tokio task.
//!
//! The flow is offer → (signalling) → answer → connected, then encoded audio frames
//! go out with [`Peer::send_audio`] and every received RTP packet comes back as a
//! [`PeerEvent::Audio`] with its sequence number and arrival time — raw packets, not
//! reassembled frames, because the jitter buffer needs to see loss and reordering.
//!
//! The offer holds one `sendrecv` audio line (what this client says, and in a 1:1 call
//! what it hears) plus [`PeerConfig::recv_only_audio`] receive-only lines for the other
//! voices of a group call. Each receive line is a *slot*, numbered from 0 in offer
//! order; the relay fills slots as people join and marks every packet with the
//! speaker's source id (its CSRC).
//!
//! Video is optional ([`PeerConfig::video`], [`PeerConfig::recv_only_video`]): H.264
//! access units go out with [`Peer::send_video`] and come back whole, on a second
//! event stream ([`VideoEvent`], from [`Peer::new_with_video`]) so that audio-only
//! users see no change. Video slots are numbered like audio ones, separately. Lost
//! video packets are repaired with NACK/RTX; what cannot be repaired in time costs
//! its frame, and the next frame says it is not contiguous.

mod task;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// Client settings.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Local socket address. Default `0.0.0.0:0`: any interface, any port; the
    /// address announced to the relay is then the one routing to it.
    pub bind: SocketAddr,
    /// Receive-only audio lines besides the `sendrecv` one: 0 for a 1:1 call,
    /// `max_participants - 2` for group calls. Default 6 (groups of 8).
    pub recv_only_audio: usize,
    /// Events buffered for the application before packets are dropped (and counted in
    /// [`TransportStats::dropped_events`]).
    pub event_queue: usize,
    /// Outgoing frames buffered before [`Peer::send_audio`] refuses more.
    pub send_queue: usize,
    /// Offer a `sendrecv` video line (camera or screen). Default off.
    pub video: bool,
    /// Receive-only video lines besides the `sendrecv` one, for group calls. Default 0.
    pub recv_only_video: usize,
    /// Starting point of the bandwidth estimate while sending video, bits per second.
    pub video_start_bitrate: u64,
    /// The most this leg would send, bits per second (video at its best plus audio). The
    /// estimator probes for it: without a goal it never probes, and after a drop the
    /// estimate would only creep back as the encoder happened to send more.
    pub video_max_bitrate: u64,
    /// Video events buffered for the application before frames are dropped (and
    /// counted in [`TransportStats::dropped_video_events`]).
    pub video_event_queue: usize,
    /// Outgoing access units buffered before [`Peer::send_video`] refuses more.
    pub video_send_queue: usize,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            recv_only_audio: 6,
            event_queue: 1024,
            send_queue: 256,
            video: false,
            recv_only_video: 0,
            video_start_bitrate: 1_000_000,
            video_max_bitrate: 2_600_000,
            video_event_queue: 256,
            video_send_queue: 32,
        }
    }
}

/// One encoded audio frame (an Opus packet) to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedAudio {
    /// Capture time on the 48 kHz RTP clock: advances by the frame's sample count.
    pub rtp_timestamp: u32,
    /// The encoded frame.
    pub payload: Bytes,
    /// First frame of a talk spurt (after silence suppression).
    pub marker: bool,
    /// When the frame's first sample was captured; `None`: as it is sent. Sender reports
    /// tie the RTP clock to wall time through this, so a receiver lines audio and video up
    /// by when they were captured, not by how long each took to encode.
    pub captured_at: Option<Instant>,
}

impl EncodedAudio {
    /// A frame that is not the start of a talk spurt.
    pub fn new(rtp_timestamp: u32, payload: Bytes) -> Self {
        EncodedAudio {
            rtp_timestamp,
            payload,
            marker: false,
            captured_at: None,
        }
    }

    /// The same frame, captured at `at`.
    pub fn captured_at(self, at: Instant) -> Self {
        EncodedAudio {
            captured_at: Some(at),
            ..self
        }
    }
}

/// One encoded video access unit (H.264) to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedVideo {
    /// Capture time on the 90 kHz RTP clock.
    pub rtp_timestamp: u32,
    /// The access unit in Annex-B form: NAL units each behind a `00 00 00 01` (or
    /// `00 00 01`) start code, SPS and PPS ahead of an IDR slice.
    pub data: Bytes,
    /// The access unit holds an IDR slice.
    pub keyframe: bool,
    /// When the picture was captured; `None`: as it is sent. See
    /// [`EncodedAudio::captured_at`].
    pub captured_at: Option<Instant>,
}

/// One received video access unit, put back together from its RTP packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedVideo {
    /// Video receive slot (0 = the `sendrecv` video line if offered, then the
    /// receive-only lines in order).
    pub slot: usize,
    /// The sender's source id as stamped by the relay (first CSRC), if any.
    pub source_id: Option<u32>,
    /// RTP timestamp, 90 kHz clock.
    pub rtp_timestamp: u32,
    /// The access unit in Annex-B form (4-byte start codes).
    pub data: Bytes,
    /// It holds an IDR slice: decoding can start here.
    pub keyframe: bool,
    /// Nothing was lost since the previous frame on this slot. When false the decoder
    /// may lack a reference; it should wait for a keyframe (and ask for one with
    /// [`Peer::request_keyframe`]).
    pub contiguous: bool,
    /// When the packet that completed it was read from the socket.
    pub arrival: Instant,
}

/// The last RTCP sender report of one incoming stream: a wall-clock time and the RTP
/// timestamp of the same instant, which lines audio and video of one sender up.
///
/// Through the relay, the wall clock is the relay's, taken for the sender's media
/// from the sender's own reports, so audio and video of one sender stay comparable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    /// Audio or video.
    pub kind: crate::MediaKind,
    /// Receive slot of that kind.
    pub slot: usize,
    /// The source last seen on the slot, if any.
    pub source_id: Option<u32>,
    /// The report's NTP time.
    pub ntp_time: SystemTime,
    /// The RTP timestamp (of the stream's clock) at `ntp_time`.
    pub rtp_timestamp: u32,
    /// When the report arrived.
    pub received_at: Instant,
}

/// Video and synchronisation events, on their own stream (see [`Peer::new_with_video`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum VideoEvent {
    /// A complete access unit arrived.
    Frame(ReceivedVideo),
    /// Someone watching lost the picture: send a keyframe soon.
    KeyframeRequested,
    /// The bandwidth estimate for what this peer sends, bits per second.
    BandwidthEstimate(u64),
    /// A sender report for an incoming audio or video stream.
    SenderReport(SenderReport),
}

/// One received audio RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedAudio {
    /// Receive slot (0 = the `sendrecv` line, then the receive-only lines in order).
    pub slot: usize,
    /// RTP SSRC of the stream on this slot.
    pub ssrc: u32,
    /// The speaker's source id as stamped by the relay (first CSRC), if any.
    pub source_id: Option<u32>,
    /// Extended sequence number (never wraps); gaps are losses.
    pub seq_no: u64,
    /// RTP timestamp, 48 kHz clock.
    pub rtp_timestamp: u32,
    /// RTP marker bit: start of a talk spurt.
    pub marker: bool,
    /// When the datagram was read from the socket.
    pub arrival: Instant,
    /// The encoded frame.
    pub payload: Bytes,
}

/// Connection progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// ICE and DTLS-SRTP are up.
    Connected,
    /// ICE lost the relay; it may come back.
    Disconnected,
    /// The relay closed the leg, or the peer was closed.
    Closed,
}

/// Transport figures for the call window and the jitter buffer's tuning.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransportStats {
    /// Round-trip time to the relay.
    pub rtt: Option<Duration>,
    /// Fraction of incoming packets lost over the last interval.
    pub loss_in: Option<f32>,
    /// Fraction of outgoing packets lost, as the relay reports it.
    pub loss_out: Option<f32>,
    /// Largest interarrival jitter over the incoming streams.
    pub jitter_in: Option<Duration>,
    /// Incoming bitrate over the last interval, all traffic, bits per second.
    pub bitrate_in: u64,
    /// Outgoing bitrate over the last interval, all traffic, bits per second.
    pub bitrate_out: u64,
    /// RTP packets received.
    pub packets_in: u64,
    /// RTP packets sent.
    pub packets_out: u64,
    /// Received packets dropped because the application did not read events in time.
    pub dropped_events: u64,
    /// Video events dropped because the application did not read them in time.
    pub dropped_video_events: u64,
    /// The latest bandwidth estimate for outgoing media, bits per second (video only).
    pub bandwidth_estimate: Option<u64>,
    /// Video frames received whole.
    pub video_frames_in: u64,
    /// Video frames given up on: a packet never came, or the frame was malformed.
    pub video_frames_lost: u64,
}

/// What the peer reports.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// The connection changed state.
    State(ConnectionState),
    /// An audio packet arrived.
    Audio(ReceivedAudio),
    /// Fresh statistics (about once a second).
    Stats(TransportStats),
}

/// Why a peer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The answer is not SDP.
    #[error("malformed SDP answer: {0}")]
    MalformedSdp(String),
    /// The answer does not fit the offer.
    #[error("SDP answer refused: {0}")]
    RejectedSdp(String),
    /// [`Peer::create_offer`] was already called.
    #[error("an offer was already made")]
    AlreadyOffered,
    /// Video was not offered ([`PeerConfig::video`]), or the slot has none.
    #[error("no such video line")]
    NoVideo,
    /// [`Peer::accept_answer`] without an outstanding offer.
    #[error("no offer is waiting for an answer")]
    NoPendingOffer,
    /// Media cannot flow before the connection is up.
    #[error("not connected")]
    NotConnected,
    /// The send queue is full: the network or the peer task is behind.
    #[error("send queue full")]
    QueueFull,
    /// The peer task has stopped.
    #[error("peer closed")]
    Closed,
    /// Socket trouble.
    #[error("network: {0}")]
    Io(#[from] io::Error),
    /// A failure inside the WebRTC engine.
    #[error("internal WebRTC error: {0}")]
    Internal(String),
}

enum Command {
    CreateOffer {
        reply: oneshot::Sender<Result<String, PeerError>>,
    },
    AcceptAnswer {
        sdp: String,
        reply: oneshot::Sender<Result<(), PeerError>>,
    },
    Stats {
        reply: oneshot::Sender<TransportStats>,
    },
    RequestKeyframe {
        slot: usize,
    },
    Close,
}

/// A client's WebRTC leg. Dropping it closes the connection.
pub struct Peer {
    commands: mpsc::Sender<Command>,
    media: mpsc::Sender<EncodedAudio>,
    video: Option<mpsc::Sender<EncodedVideo>>,
    recv_video_slots: usize,
    connected: Arc<AtomicBool>,
    local_addr: SocketAddr,
}

impl Peer {
    /// Binds the socket and spawns the peer task on the current Tokio runtime.
    /// Returns the peer and its event stream.
    pub fn new(config: PeerConfig) -> io::Result<(Peer, mpsc::Receiver<PeerEvent>)> {
        Self::spawn(config, None)
    }

    /// Like [`Peer::new`], with a second stream for video frames, keyframe requests,
    /// the bandwidth estimate and sender reports.
    pub fn new_with_video(
        config: PeerConfig,
    ) -> io::Result<(Peer, mpsc::Receiver<PeerEvent>, mpsc::Receiver<VideoEvent>)> {
        let (video_events, video_rx) = mpsc::channel(config.video_event_queue.max(1));
        let (peer, events) = Self::spawn(config, Some(video_events))?;
        Ok((peer, events, video_rx))
    }

    fn spawn(
        config: PeerConfig,
        video_events: Option<mpsc::Sender<VideoEvent>>,
    ) -> io::Result<(Peer, mpsc::Receiver<PeerEvent>)> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let std_socket = std::net::UdpSocket::bind(config.bind)?;
        std_socket.set_nonblocking(true)?;
        let local_addr = std_socket.local_addr()?;
        let _guard = runtime.enter();
        let socket = tokio::net::UdpSocket::from_std(std_socket)?;

        let (commands, command_rx) = mpsc::channel(16);
        let (media, media_rx) = mpsc::channel(config.send_queue.max(1));
        let (events, event_rx) = mpsc::channel(config.event_queue.max(1));
        let (video, video_rx) = if config.video {
            let (tx, rx) = mpsc::channel(config.video_send_queue.max(1));
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let connected = Arc::new(AtomicBool::new(false));
        let task = task::PeerTask::new(
            socket,
            local_addr,
            &config,
            events,
            video_events,
            connected.clone(),
        );
        runtime.spawn(task.run(command_rx, media_rx, video_rx));
        Ok((
            Peer {
                commands,
                media,
                video,
                recv_video_slots: usize::from(config.video) + config.recv_only_video,
                connected,
                local_addr,
            },
            event_rx,
        ))
    }

    /// The SDP offer to send to the relay through signalling. Call once.
    pub async fn create_offer(&self) -> Result<String, PeerError> {
        let (reply, rx) = oneshot::channel();
        self.request(Command::CreateOffer { reply }, rx).await?
    }

    /// Applies the relay's answer; connecting starts at once.
    pub async fn accept_answer(&self, answer_sdp: &str) -> Result<(), PeerError> {
        let (reply, rx) = oneshot::channel();
        self.request(
            Command::AcceptAnswer {
                sdp: answer_sdp.to_owned(),
                reply,
            },
            rx,
        )
        .await?
    }

    /// Queues one encoded frame without waiting. Frames offered before the
    /// connection is up are refused: stale audio is worse than none.
    pub fn send_audio(&self, frame: EncodedAudio) -> Result<(), PeerError> {
        if !self.connected.load(Ordering::Acquire) {
            return Err(PeerError::NotConnected);
        }
        self.media.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PeerError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => PeerError::Closed,
        })
    }

    /// Queues one access unit without waiting. Like audio, frames offered before the
    /// connection is up are refused; after a refusal the encoder should start again
    /// with a keyframe.
    pub fn send_video(&self, frame: EncodedVideo) -> Result<(), PeerError> {
        let Some(video) = &self.video else {
            return Err(PeerError::NoVideo);
        };
        if !self.connected.load(Ordering::Acquire) {
            return Err(PeerError::NotConnected);
        }
        video.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PeerError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => PeerError::Closed,
        })
    }

    /// Asks whoever sends on a video receive slot for a keyframe (RTCP PLI; the relay
    /// passes it on). Without waiting; repeated requests are cheap, the relay
    /// throttles them.
    pub fn request_keyframe(&self, slot: usize) -> Result<(), PeerError> {
        if slot >= self.recv_video_slots {
            return Err(PeerError::NoVideo);
        }
        self.commands
            .try_send(Command::RequestKeyframe { slot })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PeerError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => PeerError::Closed,
            })
    }

    /// Whether media can flow.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The latest transport figures.
    pub async fn stats(&self) -> Result<TransportStats, PeerError> {
        let (reply, rx) = oneshot::channel();
        self.request(Command::Stats { reply }, rx).await
    }

    /// The socket's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Closes the connection, telling the relay.
    pub async fn close(self) {
        let _ = self.commands.send(Command::Close).await;
    }

    async fn request<T>(&self, cmd: Command, rx: oneshot::Receiver<T>) -> Result<T, PeerError> {
        self.commands.send(cmd).await.map_err(|_| PeerError::Closed)?;
        rx.await.map_err(|_| PeerError::Closed)
    }
}
