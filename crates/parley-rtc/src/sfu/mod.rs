//! The media relay (SFU): one UDP socket, ICE-lite, many calls.
//!
//! The signalling server admits a participant with [`SfuHandle::join`], passing the
//! client's SDP offer and returning the answer to it. The client then connects to the
//! advertised address with the ICE credentials from that answer; the relay answers no
//! one else. Each participant's outgoing tracks are forwarded, RTP packet by RTP
//! packet, onto free receive m-lines ("slots") of every other participant, so group
//! calls need no renegotiation: a client offers one `sendrecv` audio line plus
//! `max_participants - 2` `recvonly` ones up front.
//!
//! Forwarded packets carry the sender's [`Joined::source_id`] as their only CSRC, which
//! is how a client tells who is speaking on a slot.
//!
//! Video travels the same way on video slots. Each leg is its own RTP session:
//! str0m NACKs losses on the way in and answers NACKs with RTX on the way out, per
//! leg; a receiver's keyframe request goes to the sender feeding that slot
//! (throttled), and so does one for every newly attached video slot. Sender reports
//! are regenerated per leg, on wall-clock times derived from the sender's own reports
//! so that a sender's audio and video stay aligned.

mod core;
mod driver;
mod leg;
mod stun;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

pub use self::core::{Outgoing, SfuCore};

/// A call, as numbered by the signalling server.
pub type CallId = i64;
/// A participant (a user's device) within a call, as numbered by the signalling server.
pub type ParticipantId = i64;

/// The relay's default UDP port, next to the client protocol's 7420/7421.
pub const DEFAULT_PORT: u16 = 7422;

/// Relay settings. Every limit is explicit; [`SfuConfig::default`] suits a small server.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Socket address to bind. Default `0.0.0.0:7422`.
    pub bind: SocketAddr,
    /// Addresses clients should send to (host candidates), for a relay behind NAT or
    /// bound to a wildcard address. The port is always the bound one. Empty means the
    /// bound address itself, which then must not be a wildcard.
    pub public_ips: Vec<IpAddr>,
    /// Participants per call, the caller included.
    pub max_participants: usize,
    /// Calls at once.
    pub max_calls: usize,
    /// Packets per second one participant may send to the relay, on average…
    /// Video RTP (and its retransmissions) has its own budget below, so a flood of
    /// video cannot starve the sender's audio, RTCP or ICE.
    pub max_packets_per_sec: u32,
    /// …and in a burst. Excess packets are dropped and counted.
    pub packet_burst: u32,
    /// Video RTP packets per second one participant may send, on average…
    pub max_video_packets_per_sec: u32,
    /// …and in a burst (a keyframe leaves as one).
    pub video_packet_burst: u32,
    /// How long a joined participant may take to connect before it is dropped.
    pub connect_timeout: Duration,
    /// Largest SDP offer accepted, in bytes.
    pub max_offer_bytes: usize,
    /// Most m-lines accepted in one offer.
    pub max_media_lines: usize,
    /// Commands queued to the relay task before callers wait.
    pub command_queue: usize,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_PORT),
            public_ips: Vec::new(),
            max_participants: 8,
            max_calls: 10_000,
            // Audio is 50 packets/s per line; this leaves room for RTCP, ICE and
            // the video of a sender that is not yet classified.
            max_packets_per_sec: 2_000,
            packet_burst: 500,
            // 720p30 at 2.5 Mbit/s is ~260 packets/s with keyframes of ~100 packets;
            // this leaves room for retransmissions and bandwidth probing.
            max_video_packets_per_sec: 1_500,
            video_packet_burst: 600,
            connect_timeout: core::DEFAULT_CONNECT_TIMEOUT,
            max_offer_bytes: 64 * 1024,
            max_media_lines: 32,
            command_queue: 256,
        }
    }
}

/// The relay's answer to a join.
#[derive(Debug, Clone)]
pub struct Joined {
    /// SDP answer for the client.
    pub answer_sdp: String,
    /// The CSRC this participant's media carries when forwarded to others. Unique
    /// within the call for its lifetime; the signalling layer tells the others.
    pub source_id: u32,
}

/// Why a join was refused. The signalling server passes it on as a typed error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfuError {
    /// The offer is not SDP.
    #[error("malformed SDP offer: {0}")]
    MalformedSdp(String),
    /// The offer parsed but cannot be answered (no fingerprint, bad m-lines, …).
    #[error("SDP offer refused: {0}")]
    RejectedSdp(String),
    /// The offer is bigger than [`SfuConfig::max_offer_bytes`].
    #[error("SDP offer larger than {limit} bytes")]
    OfferTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The offer has more m-lines than [`SfuConfig::max_media_lines`].
    #[error("SDP offer has more than {limit} m-lines")]
    TooManyMediaLines {
        /// The limit.
        limit: usize,
    },
    /// The call already has [`SfuConfig::max_participants`].
    #[error("call is full ({limit} participants)")]
    CallFull {
        /// The limit.
        limit: usize,
    },
    /// The relay already carries [`SfuConfig::max_calls`].
    #[error("relay is at its limit of {limit} calls")]
    TooManyCalls {
        /// The limit.
        limit: usize,
    },
    /// The relay task has stopped.
    #[error("media relay stopped")]
    Stopped,
    /// A failure inside the WebRTC engine.
    #[error("media relay internal error: {0}")]
    Internal(String),
}

/// Why a participant left the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// [`SfuHandle::leave`].
    Left,
    /// [`SfuHandle::close_call`].
    CallClosed,
    /// The participant joined again; the old leg was dropped.
    Replaced,
    /// It never connected within [`SfuConfig::connect_timeout`].
    ConnectTimeout,
    /// Its connection died (ICE consent lost, DTLS closed or failed).
    Disconnected,
}

/// What the relay tells the signalling layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuEvent {
    /// ICE and DTLS-SRTP are up; media flows.
    Connected {
        /// The call.
        call: CallId,
        /// The participant.
        participant: ParticipantId,
    },
    /// The participant is no longer relayed.
    Left {
        /// The call.
        call: CallId,
        /// The participant.
        participant: ParticipantId,
        /// Why.
        reason: LeaveReason,
    },
}

/// One participant's transport figures, as the relay sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantStats {
    /// ICE and DTLS are up.
    pub connected: bool,
    /// The CSRC its media carries.
    pub source_id: u32,
    /// RTP packets received from it.
    pub packets_in: u64,
    /// RTP payload bytes received from it.
    pub bytes_in: u64,
    /// RTP packets forwarded to it.
    pub packets_out: u64,
    /// RTP payload bytes forwarded to it.
    pub bytes_out: u64,
    /// Packets from it dropped by the rate limits (video included).
    pub dropped_rate_limited: u64,
    /// Video packets from it dropped by the video rate limit.
    pub dropped_video_rate_limited: u64,
    /// Round-trip time to it.
    pub rtt: Option<Duration>,
    /// Fraction of its packets lost on the way in.
    pub loss_in: Option<f32>,
    /// Fraction of packets to it lost on the way out.
    pub loss_out: Option<f32>,
    /// Which participant feeds each of its audio receive slots (slot index, participant).
    pub receiving_from: Vec<(usize, ParticipantId)>,
    /// Which participant feeds each of its video receive slots (slot index, participant).
    pub receiving_video_from: Vec<(usize, ParticipantId)>,
    /// Keyframe requests (PLI/FIR) it sent that were passed on to a sender.
    pub keyframe_requests_forwarded: u64,
}

/// Relay-wide counters, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SfuStats {
    /// Calls in progress.
    pub calls: usize,
    /// Participants joined.
    pub legs: usize,
    /// Datagrams read.
    pub datagrams: u64,
    /// Datagrams no leg would take: unknown ICE credentials, unknown address.
    pub dropped_unknown: u64,
    /// Datagrams that are not STUN, DTLS, RTP or RTCP.
    pub dropped_malformed: u64,
    /// Datagrams over [`crate::MAX_DATAGRAM`] bytes.
    pub dropped_oversized: u64,
    /// Datagrams over a participant's rate limit.
    pub dropped_rate_limited: u64,
}

/// Starts relays.
pub struct Sfu;

impl Sfu {
    /// Binds the socket and spawns the relay task on the current Tokio runtime.
    pub fn start(config: SfuConfig) -> io::Result<SfuHandle> {
        driver::start(config)
    }
}

pub(crate) enum Command {
    Join {
        call: CallId,
        participant: ParticipantId,
        offer_sdp: String,
        reply: oneshot::Sender<Result<Joined, SfuError>>,
    },
    Leave {
        call: CallId,
        participant: ParticipantId,
        reply: oneshot::Sender<bool>,
    },
    CloseCall {
        call: CallId,
        reply: oneshot::Sender<bool>,
    },
    ParticipantStats {
        call: CallId,
        participant: ParticipantId,
        reply: oneshot::Sender<Option<ParticipantStats>>,
    },
    Stats {
        reply: oneshot::Sender<SfuStats>,
    },
    Shutdown,
}

/// Control of a running relay. Cheap to clone; the relay stops when the last handle
/// is dropped or on [`SfuHandle::shutdown`].
#[derive(Clone)]
pub struct SfuHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<SfuEvent>,
    local_addr: SocketAddr,
    candidates: Vec<SocketAddr>,
    /// The offer limits of the relay's configuration, for [`SfuHandle::check_offer`].
    offer_limits: (usize, usize),
}

impl SfuHandle {
    /// Whether `offer_sdp` would be accepted as far as its form goes (size, SDP grammar,
    /// m-line count), without joining anything: signalling checks this before anyone rings.
    pub fn check_offer(&self, offer_sdp: &str) -> Result<(), SfuError> {
        let (max_bytes, max_lines) = self.offer_limits;
        core::parse_offer(offer_sdp, max_bytes, max_lines).map(|_| ())
    }

    /// Admits `participant` to `call` with the client's SDP offer; returns the answer.
    /// Only the signalling server calls this, for authenticated call participants.
    pub async fn join(
        &self,
        call: CallId,
        participant: ParticipantId,
        offer_sdp: &str,
    ) -> Result<Joined, SfuError> {
        let (reply, rx) = oneshot::channel();
        let offer_sdp = offer_sdp.to_owned();
        self.request(
            Command::Join {
                call,
                participant,
                offer_sdp,
                reply,
            },
            rx,
        )
        .await?
    }

    /// Removes a participant. Returns whether it was in the call.
    pub async fn leave(&self, call: CallId, participant: ParticipantId) -> Result<bool, SfuError> {
        let (reply, rx) = oneshot::channel();
        self.request(
            Command::Leave {
                call,
                participant,
                reply,
            },
            rx,
        )
        .await
    }

    /// Ends a call for all its participants. Returns whether it existed.
    pub async fn close_call(&self, call: CallId) -> Result<bool, SfuError> {
        let (reply, rx) = oneshot::channel();
        self.request(Command::CloseCall { call, reply }, rx).await
    }

    /// One participant's transport figures.
    pub async fn participant_stats(
        &self,
        call: CallId,
        participant: ParticipantId,
    ) -> Result<Option<ParticipantStats>, SfuError> {
        let (reply, rx) = oneshot::channel();
        self.request(
            Command::ParticipantStats {
                call,
                participant,
                reply,
            },
            rx,
        )
        .await
    }

    /// Relay-wide counters.
    pub async fn stats(&self) -> Result<SfuStats, SfuError> {
        let (reply, rx) = oneshot::channel();
        self.request(Command::Stats { reply }, rx).await
    }

    /// Connection events. A receiver that falls behind misses the oldest ones.
    pub fn subscribe(&self) -> broadcast::Receiver<SfuEvent> {
        self.events.subscribe()
    }

    /// The socket's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The addresses advertised to clients.
    pub fn advertised_addrs(&self) -> &[SocketAddr] {
        &self.candidates
    }

    /// Stops the relay task; every call ends.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }

    async fn request<T>(&self, cmd: Command, rx: oneshot::Receiver<T>) -> Result<T, SfuError> {
        self.commands.send(cmd).await.map_err(|_| SfuError::Stopped)?;
        rx.await.map_err(|_| SfuError::Stopped)
    }
}
