//! The video half of a call: what an application hands in (a picture source and a sink to
//! show pictures in), the settings, and the figures that come back in
//! [`CallStats::video`](crate::CallStats::video).
//!
//! Video runs beside the audio task, never inside it: encoding and decoding a picture takes
//! milliseconds that the 20 ms audio clock cannot spare. Two tasks carry it, one per direction
//! (`send.rs`, `receive.rs`), and both do their codec work on the blocking pool. They share
//! the audio task's epoch, so a picture's capture time and an audio frame's capture time are
//! on one clock, and the receive task learns from the audio task which audio is being heard
//! now, the anchor of lip sync.

mod receive;
mod send;

use std::time::{Duration, Instant};

use parley_video::rate::LADDER;
use parley_video::{GateConfig, I420Frame, RateConfig, SyncDelayConfig, VideoSource, VideoStats};

pub(crate) use receive::{AudioDelay, AudioPlayout, ReceiveHandle};
pub(crate) use send::{SendControl, SendHandle};

/// Settings of a call's video, used when the call is placed or answered with
/// [`VideoMedia`]; an audio-only call ignores them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoOptions {
    /// Widest picture sent; the rate controller never climbs past the best rung of the
    /// ladder (720p30 → 180p15) within these bounds, and a smaller source is sent at its
    /// own size.
    pub max_width: u32,
    /// Tallest picture sent.
    pub max_height: u32,
    /// Most frames per second sent.
    pub max_fps: u32,
    /// How the bandwidth estimate becomes bitrate, size and rate (`top_rung` is replaced by
    /// the one `max_width`, `max_height` and `max_fps` allow).
    pub rate: RateConfig,
    /// Where the transport's bandwidth estimate starts, bits per second.
    pub start_bitrate_bps: u64,
    /// Encoder threads; 1 keeps the encoder off all but one core, and its output reproducible.
    pub encoder_threads: u16,
    /// When to ask the sender for a keyframe after loss.
    pub gate: GateConfig,
    /// Longest a decoded picture waits for its audio before it is shown anyway: a bound on
    /// what a bad sender report or a stalled audio stream can do to the picture.
    pub max_sync_hold: Duration,
    /// How far the audio may be held back for video that arrives later than it (after
    /// retransmissions), so the two stay in step.
    pub sync_delay: SyncDelayConfig,
}

impl Default for VideoOptions {
    fn default() -> Self {
        VideoOptions {
            max_width: 1_280,
            max_height: 720,
            max_fps: 30,
            rate: RateConfig::default(),
            start_bitrate_bps: 1_000_000,
            encoder_threads: 1,
            gate: GateConfig::default(),
            max_sync_hold: Duration::from_millis(500),
            sync_delay: SyncDelayConfig::default(),
        }
    }
}

impl VideoOptions {
    /// Index of the best ladder rung within the size and rate bounds; the lowest rung when
    /// none fits, since a call that asked for video should still send some.
    pub fn top_rung(&self) -> usize {
        LADDER
            .iter()
            .position(|r| r.width <= self.max_width && r.height <= self.max_height && r.fps <= self.max_fps)
            .unwrap_or(LADDER.len() - 1)
    }
}

/// Where decoded pictures go: a window, a recorder, a test's checks.
///
/// `show` runs on the call's video task at the picture's render time; it should hand the
/// picture on (to a UI thread, say) rather than block, or the pictures after it run late.
pub trait VideoSink {
    /// Shows one picture.
    fn show(&mut self, picture: &I420Frame, info: ShownFrame);
}

/// What is known about a picture when it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShownFrame {
    /// Video receive slot it arrived on.
    pub slot: usize,
    /// The relay's id for the sender, the same as on their audio.
    pub source_id: Option<u32>,
    /// RTP timestamp of the picture (90 kHz, the sender's capture clock).
    pub rtp_timestamp: u32,
    /// The picture is a keyframe.
    pub keyframe: bool,
    /// When its last packet arrived.
    pub arrival: Instant,
    /// How long it waited after decoding to meet its audio (zero when shown at once).
    pub held: Duration,
    /// The render time came from lip sync (sender reports and audio playout) rather than
    /// "as soon as decoded".
    pub synced: bool,
}

/// The picture side of a call: a source for what this device sends and a sink for what it
/// receives. Passing one to [`VoiceCall::place_video`](crate::VoiceCall::place_video) or
/// [`VoiceCall::answer_video`](crate::VoiceCall::answer_video) makes the call a video call.
pub struct VideoMedia {
    /// Pictures to send (camera, screen, test pattern). Polled every few ms with the call's
    /// clock in µs; its capture times are on that clock.
    pub source: Box<dyn VideoSource + Send>,
    /// Where received pictures are shown.
    pub sink: Box<dyn VideoSink + Send>,
}

impl VideoMedia {
    /// Boxes a source and a sink.
    pub fn new(source: impl VideoSource + Send + 'static, sink: impl VideoSink + Send + 'static) -> Self {
        VideoMedia {
            source: Box::new(source),
            sink: Box::new(sink),
        }
    }
}

impl std::fmt::Debug for VideoMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoMedia").finish_non_exhaustive()
    }
}

/// Send-side video figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VideoSendStats {
    /// Whether pictures are being sent (the camera is on).
    pub camera_on: bool,
    /// The latest bandwidth estimate for what this device sends, bits per second.
    pub bandwidth_estimate_bps: Option<u64>,
    /// Encoder target bitrate the rate controller picked.
    pub target_bitrate_bps: u32,
    /// Encoded width now (0 before the first picture).
    pub width: u32,
    /// Encoded height now.
    pub height: u32,
    /// Frame rate the rate controller allows now.
    pub fps: u32,
    /// Pictures taken from the source.
    pub frames_captured: u64,
    /// Pictures the encoder turned into access units (the rest it skipped to hold the
    /// bitrate, or the frame-rate limit dropped).
    pub frames_encoded: u64,
    /// Access units handed to the transport.
    pub frames_sent: u64,
    /// Keyframes among them.
    pub keyframes_sent: u64,
    /// Keyframe requests (PLI) that reached this device.
    pub keyframe_requests: u64,
    /// Bytes of access units handed to the transport.
    pub bytes_sent: u64,
}

/// Receive-side video figures: the webrtc-stats ones plus what the pipeline adds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VideoReceiveStats {
    /// Frames, freezes, pauses, fps, size and bitrate of what was shown, over every slot.
    pub video: VideoStats,
    /// Access units the decoder rejected.
    pub decode_errors: u64,
    /// Pictures shown at a lip-sync render time rather than at once.
    pub frames_synced: u64,
    /// Render time of the last picture minus its decode time, ms: how far video is held
    /// back for the audio (negative: it came later than its audio was heard).
    pub sync_delay_ms: f64,
    /// Extra delay the audio currently plays with so the video keeps up, ms (the largest
    /// over the senders watched).
    pub audio_delay_ms: u32,
}

/// A call's video figures, in [`CallStats::video`](crate::CallStats::video).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VideoCallStats {
    /// What this device sends.
    pub send: VideoSendStats,
    /// What this device receives and shows.
    pub receive: VideoReceiveStats,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_rung_is_the_best_within_the_bounds() {
        let at = |max_width, max_height, max_fps| {
            let rung = VideoOptions {
                max_width,
                max_height,
                max_fps,
                ..VideoOptions::default()
            }
            .top_rung();
            (LADDER[rung].width, LADDER[rung].height, LADDER[rung].fps)
        };
        assert_eq!(at(1_280, 720, 30), (1_280, 720, 30));
        assert_eq!(at(1_920, 1_080, 60), (1_280, 720, 30));
        assert_eq!(at(640, 360, 30), (640, 360, 30));
        assert_eq!(at(640, 360, 20), (640, 360, 15));
        assert_eq!(at(320, 180, 15), (320, 180, 15));
        // Nothing fits: the lowest rung rather than no video.
        assert_eq!(at(100, 100, 5), (320, 180, 15));
    }
}
