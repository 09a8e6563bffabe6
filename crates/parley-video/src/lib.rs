//! Parley's client video engine: everything between a camera (or a synthetic test pattern) and
//! the H.264 access units the WebRTC transport carries, and back to pictures on screen.
//!
//! Like the audio engine (`parley-media`), the crate never touches the network and never reads
//! the clock. Callers pass time in as microseconds and move [`EncodedVideoFrame`]s themselves,
//! so loss, congestion and clock offsets can be replayed deterministically in a test.
//!
//! * [`codec`]: H.264 Constrained Baseline through OpenH264 built from source: bitrate and
//!   frame rate change in place, keyframes on request, size changes rebuild the encoder.
//!   Decoding turns any undecodable input into [`VideoError::Corrupt`], never a panic.
//! * [`source`]: where pictures come from. [`TestPatternSource`] draws a moving pattern with
//!   [`marks`] (frame counter, capture time, A/V sync flash) that survive compression and
//!   rescaling, so a receiver can measure latency, loss and sync from decoded pictures alone.
//!   Real cameras are in `camera` behind the `camera` feature; [`convert`] turns their
//!   YUYV/NV12 into I420.
//! * [`gate`]: the receive-side [`FrameGate`]: after a gap only a keyframe reaches the
//!   decoder, and keyframe requests (PLI) are rate-limited to one per `max(RTT, 200 ms)`.
//! * [`stats`]: [`VideoStats`] with W3C webrtc-stats definitions (freezes, pauses, fps,
//!   resolution, bitrate, keyframe requests).
//! * [`rate`]: the send-side [`RateController`]: bandwidth estimate in, target bitrate and a
//!   point on the 720p30 → 180p15 ladder out, with hysteresis against flapping.
//! * [`sync`]: the [`SyncClock`] that puts audio and video RTP timestamps on the sender's clock
//!   through RTCP sender reports and schedules video against the audio playout.
//!
//! A sender polls a source, passes the picture through [`FrameRateLimiter`] and
//! [`VideoEncoder`] with the settings [`RateController`] derives from the transport's estimate,
//! and answers keyframe requests with [`VideoEncoder::force_keyframe`]. A receiver feeds each
//! assembled frame through [`FrameGate`] into [`VideoDecoder`], sends a PLI when the gate says
//! so, shows pictures at [`SyncClock::video_render_time`] and reports to
//! [`VideoStatsCollector`].

#[cfg(feature = "camera")]
pub mod camera;
pub mod codec;
pub mod convert;
pub mod delay;
mod error;
mod frame;
pub mod gate;
pub mod marks;
pub mod rate;
pub mod source;
pub mod stats;
pub mod sync;

pub use codec::{EncodedVideoFrame, EncoderSettings, VideoDecoder, VideoEncoder, is_keyframe};
pub use delay::{SyncDelay, SyncDelayConfig};
pub use error::VideoError;
pub use frame::{I420Frame, MAX_DIMENSION};
pub use gate::{Admission, FrameGate, FrameInfo, GateConfig};
pub use marks::{Marks, read_marks};
pub use rate::{FrameRateLimiter, RateConfig, RateController, VideoTarget};
pub use source::{CapturedFrame, TestPatternSource, VideoSource};
pub use stats::{VideoStats, VideoStatsCollector};
pub use sync::{MediaKind, SyncClock, ntp64_to_us};

/// RTP clock rate of every video payload type (RFC 6184 for H.264).
pub const VIDEO_CLOCK_HZ: u32 = 90_000;

/// Converts a capture time in µs to a 90 kHz RTP timestamp offset (wrapping, as RTP does).
pub fn us_to_rtp(us: u64) -> u32 {
    (u128::from(us) * u128::from(VIDEO_CLOCK_HZ) / 1_000_000) as u32
}
