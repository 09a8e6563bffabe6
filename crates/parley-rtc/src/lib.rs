//! Parley's WebRTC transport: moving encoded media between call participants.
//!
//! Two halves share one engine, [`str0m`] (sans-IO WebRTC: ICE, DTLS-SRTP, RTCP):
//!
//! * [`sfu`] — the server relay. One UDP socket, ICE-lite, many call legs. Media is
//!   forwarded packet by packet, never decoded, so the relay's cost is per packet, not
//!   per codec. The routing state ([`sfu::SfuCore`]) takes time and datagrams as inputs;
//!   a thin tokio loop ([`sfu::Sfu::start`]) owns the socket.
//! * [`peer`] — the client side of one leg: offer/answer, sending encoded audio, and
//!   handing every received RTP packet (with its sequence number and arrival time) to
//!   the jitter buffer. Optional H.264 video: access units out, whole frames back
//!   (packetized and reassembled here, since str0m runs in RTP mode), NACK/RTX,
//!   keyframe requests, the bandwidth estimate and sender reports for lip sync.
//!
//! Both sides run str0m in RTP mode: the relay must not hold packets back to reorder
//! them, and the client's jitter buffer wants raw packets, gaps included.
//!
//! Codecs are fixed to what Parley speaks: Opus for audio and H.264 for video.

pub mod peer;
pub mod sfu;

mod h264;
mod limits;

use std::time::Duration;

use str0m::{Rtc, RtcConfig};

/// How often str0m reports transport statistics on each leg.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// RTCP report interval for every stream.
const RTCP_INTERVAL: Duration = Duration::from_secs(1);

/// Largest datagram either side reads. WebRTC stays under the path MTU (~1200 bytes of
/// payload); anything bigger than this is not ours and is dropped unread.
pub const MAX_DATAGRAM: usize = 2000;

/// H.264 payload type and its RTX twin (str0m's numbers for this profile).
const H264_PT: u8 = 108;
const H264_RTX_PT: u8 = 109;
/// Constrained Baseline, level 3.1: what every encoder and decoder Parley meets speaks.
const H264_PROFILE_LEVEL: u32 = 0x42e01f;

/// The str0m configuration both sides share, so their codec lists always match.
///
/// Video is one H.264 profile in packetization mode 1 with an RTX payload type: with
/// RTX negotiated str0m answers NACKs with retransmissions and sends NACKs for gaps,
/// on every leg. Audio is never retransmitted (packets are written non-nackable).
fn rtc_config() -> RtcConfig {
    let mut config = Rtc::builder()
        .set_rtp_mode(true)
        .set_stats_interval(Some(STATS_INTERVAL))
        // Sender reports are what lines a sender's audio up with its video; str0m's
        // audio default (5 s) would leave a call unsynchronised for its first seconds.
        .set_rtcp_report_interval_audio(RTCP_INTERVAL)
        .set_rtcp_report_interval_video(RTCP_INTERVAL)
        .clear_codecs()
        .enable_opus(true, false);
    config
        .codec_config()
        .add_h264(H264_PT.into(), Some(H264_RTX_PT.into()), true, H264_PROFILE_LEVEL);
    config
}

/// Share of a video stream's bytes that may be retransmissions before str0m stops answering
/// NACKs. str0m's default (0.15) is below what a 10 % lossy path needs once retransmissions
/// are themselves lost and reordered packets draw spurious NACKs: it silently dropped every
/// queued resend, and the receiver gave up the frame and waited for a keyframe. Congestion is
/// the sending client's estimator's business (its pacer holds the total to the estimate; the
/// relay only forwards what that allows); this cap only stops a retransmission storm.
const RTX_RATIO_CAP: f32 = 0.35;

/// How long sent video stays available for retransmission (str0m's default).
const RTX_CACHE_AGE: Duration = Duration::from_secs(3);

/// Applies Parley's retransmission settings to the video stream `rtc` sends on `mid`, once
/// negotiation has created it.
fn tune_video_send_stream(rtc: &mut Rtc, mid: str0m::media::Mid) {
    if let Some(stream) = rtc.direct_api().stream_tx_by_mid(mid, None) {
        stream.set_rtx_cache(VIDEO_SEND_BUFFER, RTX_CACHE_AGE, Some(RTX_RATIO_CAP));
    }
}

/// Packets of sent video kept for retransmission: three seconds at the top bitrate.
const VIDEO_SEND_BUFFER: usize = 1_000;

/// The m-line an incoming RTP packet belongs to (str0m tracks it per SSRC).
fn mid_of(rtc: &mut Rtc, packet: &str0m::rtp::RtpPacket) -> Option<str0m::media::Mid> {
    rtc.direct_api().stream_rx(&packet.header.ssrc).map(|s| s.mid())
}

/// A first sequence number for a new outgoing stream: random, and below 2^15 so the
/// stream never starts near a rollover (a non-zero rollover counter would need
/// out-of-band signalling to the receiver).
fn first_seq_no() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    // The std hasher is randomly keyed per instance; no RNG crate needed for this.
    u64::from(RandomState::new().hash_one(std::time::Instant::now()) as u16 & 0x7fff)
}

/// The kind of media an m-line carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Opus audio, 48 kHz RTP clock.
    Audio,
    /// H.264 video, 90 kHz RTP clock.
    Video,
}

impl MediaKind {
    fn from_str0m(kind: str0m::media::MediaKind) -> Self {
        match kind {
            str0m::media::MediaKind::Audio => MediaKind::Audio,
            str0m::media::MediaKind::Video => MediaKind::Video,
        }
    }

    /// RTP clock rate in Hz.
    pub fn clock_rate(self) -> u32 {
        match self {
            MediaKind::Audio => 48_000,
            MediaKind::Video => 90_000,
        }
    }
}
