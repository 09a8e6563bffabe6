//! Parley voice calls: the piece that ties signalling, transport and audio together.
//!
//! * signalling goes through the SDK ([`parley_client::Client::start_call`] /
//!   [`parley_client::Client::answer_call`] / [`parley_client::Client::hang_up`]), carrying
//!   this device's SDP offer and bringing back the relay's answer;
//! * media goes through one [`parley_rtc::peer::Peer`] (DTLS-SRTP to the server's relay);
//! * audio goes through [`parley_media`]'s sans-IO [`AudioSender`](parley_media::AudioSender)
//!   and [`GroupReceiver`](parley_media::GroupReceiver) (Opus, one adaptive jitter buffer per
//!   remote voice, a mixer), and the encoder's FEC strength and bitrate follow the loss the
//!   relay reports through [`LossAdapter`](parley_media::LossAdapter).
//!
//! [`VoiceCall`] is the handle an application holds; the audio task is the thin tokio driver
//! (`engine.rs`) that gives the sans-IO media objects their 20 ms clock. Sources and sinks are whatever
//! implements [`AudioSource`](parley_media::AudioSource) /
//! [`AudioSink`](parley_media::AudioSink): synthetic ones (tone, WAV file, memory) for bots
//! and tests, cpal devices behind the `devices` feature.
//!
//! Scope: 1:1 and group voice calls. A 1:1 call offers the relay one `sendrecv` audio line.
//! A group call offers one line per other participant it may have
//! ([`CallOptions::max_participants`] − 1: the `sendrecv` one plus receive-only ones), since
//! the relay puts each other voice on a slot of its own without renegotiating; every slot in
//! use gets its own jitter buffer and decoder, and the voices are summed into the one sink.
//! [`CallStats::participants`] has each voice's figures, tagged with the relay's source id.
//!
//! Video: a call placed or answered with [`VideoMedia`] ([`VoiceCall::place_video`],
//! [`VoiceCall::answer_video`]) also offers a `sendrecv` H.264 line and is signalled as a
//! video call. Pictures go source → [`parley_video::RateController`] (fed by the transport's
//! bandwidth estimate) → [`parley_video::VideoEncoder`] → relay, and come back through
//! [`parley_video::FrameGate`] and [`parley_video::VideoDecoder`] to a [`VideoSink`], each
//! shown when the audio captured with it plays ([`parley_video::SyncClock`]). The two
//! directions run as tasks of their own beside the audio task; [`CallStats::video`] has
//! their figures.

mod engine;
mod session;
mod stats;
mod video;

use std::time::Duration;

pub use session::{CallEnd, CallPhase, Finished, VoiceCall, next_incoming_call};
pub use stats::{CallStats, ParticipantStats};
pub use video::{
    ShownFrame, VideoCallStats, VideoMedia, VideoOptions, VideoReceiveStats, VideoSendStats, VideoSink,
};

use parley_client::ClientError;
use parley_media::{EncoderConfig, JitterConfig, LossAdaptConfig, MediaError};
use parley_rtc::peer::PeerError;

/// Settings of one call's media.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Local UDP address for media. Default `0.0.0.0:0`; tests bind loopback.
    pub bind: std::net::SocketAddr,
    /// Opus encoder settings (bitrate, FEC loss percentage) to start with; the bitrate is the
    /// one for a clean link.
    pub encoder: EncoderConfig,
    /// How the encoder follows the loss the relay reports; `None` keeps `encoder` for the whole
    /// call.
    pub loss_adaptation: Option<LossAdaptConfig>,
    /// Whether the call is a group call, if the caller knows; `None` asks the server (the
    /// conversation's kind when placing, the call's when answering).
    pub group: Option<bool>,
    /// Most participants a group call can have, this device included (the server's limit):
    /// a group call is set up to hear this many minus one voices at once.
    pub max_participants: usize,
    /// Jitter buffer settings.
    pub jitter: JitterConfig,
    /// How long to wait for the media connection before giving up on the call.
    pub connect_timeout: Duration,
    /// Video settings, used by calls placed or answered with [`VideoMedia`].
    pub video: VideoOptions,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            bind: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            encoder: EncoderConfig::default(),
            loss_adaptation: Some(LossAdaptConfig::default()),
            group: None,
            max_participants: 8,
            // Both ends run their 20 ms clocks on OS timers that slip by several ms under load
            // (and tick at 15.6 ms granularity on Windows); a 40 ms floor absorbs that without
            // concealment and still leaves mouth-to-ear far below the 150 ms bar.
            jitter: JitterConfig {
                min_delay_ms: 40,
                ..JitterConfig::default()
            },
            connect_timeout: Duration::from_secs(10),
            video: VideoOptions::default(),
        }
    }
}

/// Why a call could not be placed, answered or run.
#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    /// The server refused or the connection failed.
    #[error("signalling: {0}")]
    Signalling(#[from] ClientError),
    /// The WebRTC leg failed.
    #[error("media transport: {0}")]
    Transport(#[from] PeerError),
    /// The audio pipeline failed (codec, file, device).
    #[error("audio: {0}")]
    Media(#[from] MediaError),
    /// A socket could not be opened.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The server joined us without a media leg (no relay running there).
    #[error("the server has no media relay for this call")]
    NoMedia,
    /// The media connection did not come up in time.
    #[error("media did not connect within {0:?}")]
    ConnectTimeout(Duration),
    /// The audio task stopped unexpectedly.
    #[error("the audio task stopped")]
    EngineStopped,
    /// The video pipeline could not be set up.
    #[error("video: {0}")]
    Video(#[from] parley_video::VideoError),
}
