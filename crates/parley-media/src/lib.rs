//! Parley's client audio engine: everything between a microphone (or a synthetic source) and the
//! opaque Opus payloads the WebRTC transport carries, and back to a speaker (or a recording).
//!
//! The crate never touches the network and never reads the clock. Callers pass time in as
//! microseconds and move [`EncodedFrame`]s themselves, so a whole call's audio, including loss,
//! jitter and reordering, can be replayed deterministically in a test.
//!
//! * [`codec`]: Opus at 48 kHz mono, 20 ms frames, in-band FEC, no DTX; [`LossAdapter`], the
//!   policy that raises the encoder's expected loss (FEC strength) and bitrate at once when the
//!   far end reports loss and lowers them slowly when it clears.
//! * [`source`] / [`sink`]: where PCM comes from and goes to; real devices in [`device`] behind
//!   the `devices` feature.
//! * [`jitter`]: a NetEQ-style adaptive jitter buffer (target delay follows measured jitter,
//!   FEC for single losses, concealment, time-stretching back down when the network calms).
//! * [`mixer`]: sums several decoded voices into one frame (i32 sum, clamped to i16).
//! * [`pipeline`]: [`AudioSender`], [`AudioReceiver`] (one stream) and [`GroupReceiver`] (one
//!   jitter buffer and decoder per receive slot of a group call, restarted when a slot changes
//!   speaker, dropped when it falls silent, mixed into one sink, with per-voice
//!   [`VoiceStats`]).
//! * [`analysis`]: tone frequency, per-tone amplitude in a mix and gap detection for tests and
//!   the quality harness.

pub mod analysis;
pub mod codec;
#[cfg(feature = "devices")]
pub mod device;
mod error;
pub mod jitter;
pub mod mixer;
pub mod pipeline;
pub mod sink;
pub mod source;
mod stats;

pub use codec::{EncoderConfig, FrameDecoder, LossAdaptConfig, LossAdapter, OpusDecoder, OpusEncoder};
pub use error::MediaError;
pub use jitter::{JitterBuffer, JitterConfig, Playout};
pub use mixer::Mixer;
pub use pipeline::{AudioReceiver, AudioSender, EncodedFrame, GroupReceiver};
pub use sink::{AudioSink, MemorySink, NullSink, WavSink};
pub use source::{AudioSource, SilenceSource, SourceStatus, ToneSource, WavSource};
pub use stats::{ReceiveStats, VoiceStats};

/// Sample rate of every PCM buffer in this crate and of the Opus RTP clock.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms mono frame, the unit every source, sink and the jitter buffer work in.
pub const FRAME_SAMPLES: usize = 960;
/// Duration of one frame in microseconds.
pub const FRAME_US: u64 = 20_000;

/// One 20 ms frame of 16-bit mono PCM at [`SAMPLE_RATE`].
pub type Frame = [i16; FRAME_SAMPLES];

/// Converts a float sample in [-1, 1] to i16, clamping anything outside.
pub fn f32_to_i16(sample: f32) -> i16 {
    (sample.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16
}

/// Converts an i16 sample to a float in [-1, 1].
pub fn i16_to_f32(sample: i16) -> f32 {
    f32::from(sample) / 32_768.0
}

/// A sine of `len` samples at 48 kHz, for unit tests.
#[cfg(test)]
pub(crate) fn test_tone(len: usize, hz: f64, amplitude: f64) -> Vec<i16> {
    (0..len)
        .map(|i| ((i as f64 * std::f64::consts::TAU * hz / 48_000.0).sin() * amplitude) as i16)
        .collect()
}
