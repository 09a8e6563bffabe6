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

mod task;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            recv_only_audio: 6,
            event_queue: 1024,
            send_queue: 256,
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
}

impl EncodedAudio {
    /// A frame that is not the start of a talk spurt.
    pub fn new(rtp_timestamp: u32, payload: Bytes) -> Self {
        EncodedAudio {
            rtp_timestamp,
            payload,
            marker: false,
        }
    }
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
    Close,
}

/// A client's WebRTC leg. Dropping it closes the connection.
pub struct Peer {
    commands: mpsc::Sender<Command>,
    media: mpsc::Sender<EncodedAudio>,
    connected: Arc<AtomicBool>,
    local_addr: SocketAddr,
}

impl Peer {
    /// Binds the socket and spawns the peer task on the current Tokio runtime.
    /// Returns the peer and its event stream.
    pub fn new(config: PeerConfig) -> io::Result<(Peer, mpsc::Receiver<PeerEvent>)> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let std_socket = std::net::UdpSocket::bind(config.bind)?;
        std_socket.set_nonblocking(true)?;
        let local_addr = std_socket.local_addr()?;
        let _guard = runtime.enter();
        let socket = tokio::net::UdpSocket::from_std(std_socket)?;

        let (commands, command_rx) = mpsc::channel(16);
        let (media, media_rx) = mpsc::channel(config.send_queue.max(1));
        let (events, event_rx) = mpsc::channel(config.event_queue.max(1));
        let connected = Arc::new(AtomicBool::new(false));
        let task = task::PeerTask::new(socket, local_addr, &config, events, connected.clone());
        runtime.spawn(task.run(command_rx, media_rx));
        Ok((
            Peer {
                commands,
                media,
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
