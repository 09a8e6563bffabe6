//! Receive-side video statistics with the definitions of W3C webrtc-stats
//! (`RTCInboundRtpStreamStats`), so figures compare with what a browser reports.
//!
//! * **Freeze** (`freezeCount`, `totalFreezesDuration`): the interval between two consecutively
//!   rendered frames is equal to or exceeds `max(3 × avg, avg + 150 ms)`, where `avg` is the
//!   linear average of the last 30 interframe delays. As in libwebrtc, the average includes
//!   the delay being judged, and nothing is judged before 5 delays are known. The whole
//!   interval counts toward the total duration.
//! * **Pause** (`pauseCount`, `totalPausesDuration`): the interval exceeds 5 s. A pause is not
//!   also a freeze, and its interval does not enter the freeze average.
//! * `framesPerSecond`: frames rendered during the last second; the received bitrate is over
//!   the same window.

use std::collections::VecDeque;

/// Interframe delays averaged for the freeze threshold.
const AVG_WINDOW: usize = 30;
/// Delays needed before any freeze is judged.
const MIN_SAMPLES: usize = 5;
/// Added to the average for the second freeze bound.
const FREEZE_MIN_INCREASE_US: u64 = 150_000;
/// An interval longer than this is a pause.
const PAUSE_US: u64 = 5_000_000;
/// Window of the rate figures.
const RATE_WINDOW_US: u64 = 1_000_000;

/// A snapshot of the receive-side figures.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VideoStats {
    /// Frames rendered since the start.
    pub frames_rendered: u64,
    /// Frames dropped before decoding (waiting for a keyframe).
    pub frames_dropped: u64,
    /// Freezes so far.
    pub freeze_count: u64,
    /// Sum of the intervals judged as freezes, in µs.
    pub total_freezes_duration_us: u64,
    /// Pauses (no frame for more than 5 s) so far.
    pub pause_count: u64,
    /// Sum of the pause intervals, in µs.
    pub total_pauses_duration_us: u64,
    /// Frames per second rendered over the last second.
    pub fps: f64,
    /// Width of the last rendered frame (0 before the first).
    pub width: u32,
    /// Height of the last rendered frame.
    pub height: u32,
    /// Bits received in the last second.
    pub bitrate_bps: u64,
    /// Bytes received since the start.
    pub bytes_received: u64,
    /// Keyframe requests (PLI) sent so far.
    pub keyframes_requested: u64,
}

/// Collects [`VideoStats`] from receive and render events.
#[derive(Debug, Clone, Default)]
pub struct VideoStatsCollector {
    stats: VideoStats,
    last_render_us: Option<u64>,
    delays: VecDeque<u64>,
    delay_sum: u64,
    renders: VecDeque<u64>,
    received: VecDeque<(u64, u64)>,
    received_in_window: u64,
}

impl VideoStatsCollector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `bytes` of video payload received at `now_us`.
    pub fn on_bytes_received(&mut self, now_us: u64, bytes: usize) {
        let bytes = bytes as u64;
        self.stats.bytes_received += bytes;
        self.received.push_back((now_us, bytes));
        self.received_in_window += bytes;
        self.expire(now_us);
    }

    /// Records a frame shown at `now_us`.
    pub fn on_frame_rendered(&mut self, now_us: u64, width: u32, height: u32) {
        self.stats.frames_rendered += 1;
        self.stats.width = width;
        self.stats.height = height;
        self.renders.push_back(now_us);
        if let Some(last) = self.last_render_us.replace(now_us) {
            self.judge_interval(now_us.saturating_sub(last));
        }
        self.expire(now_us);
    }

    /// Records a frame dropped before decoding.
    pub fn on_frame_dropped(&mut self) {
        self.stats.frames_dropped += 1;
    }

    /// Records a keyframe request sent to the sender.
    pub fn on_keyframe_requested(&mut self) {
        self.stats.keyframes_requested += 1;
    }

    fn judge_interval(&mut self, delay: u64) {
        if delay > PAUSE_US {
            self.stats.pause_count += 1;
            self.stats.total_pauses_duration_us += delay;
            return;
        }
        self.delays.push_back(delay);
        self.delay_sum += delay;
        if self.delays.len() > AVG_WINDOW {
            self.delay_sum -= self.delays.pop_front().unwrap_or(0);
        }
        if self.delays.len() < MIN_SAMPLES {
            return;
        }
        let avg = self.delay_sum / self.delays.len() as u64;
        if delay >= (3 * avg).max(avg + FREEZE_MIN_INCREASE_US) {
            self.stats.freeze_count += 1;
            self.stats.total_freezes_duration_us += delay;
        }
    }

    fn expire(&mut self, now_us: u64) {
        let expired = |t: u64| t + RATE_WINDOW_US <= now_us;
        while self.renders.front().is_some_and(|&t| expired(t)) {
            self.renders.pop_front();
        }
        while let Some(&(t, bytes)) = self.received.front() {
            if !expired(t) {
                break;
            }
            self.received_in_window -= bytes;
            self.received.pop_front();
        }
    }

    /// Frame rate over the renders of the last second: intervals over their span, which,
    /// unlike a plain count, does not read 31 for a steady 30 fps whose window happens to
    /// hold both end frames.
    fn fps(&self) -> f64 {
        match (self.renders.front(), self.renders.back()) {
            (Some(&first), Some(&last)) if last > first => {
                (self.renders.len() - 1) as f64 * 1e6 / (last - first) as f64
            }
            _ => 0.0,
        }
    }

    /// The figures as of `now_us`.
    pub fn stats(&mut self, now_us: u64) -> VideoStats {
        self.expire(now_us);
        VideoStats {
            fps: self.fps(),
            bitrate_bps: self.received_in_window * 8,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_at(c: &mut VideoStatsCollector, times: impl IntoIterator<Item = u64>) {
        for t in times {
            c.on_frame_rendered(t, 640, 360);
        }
    }

    #[test]
    fn steady_30fps_has_no_freezes() {
        let mut c = VideoStatsCollector::new();
        render_at(&mut c, (0..300).map(|i| i * 33_333));
        let s = c.stats(299 * 33_333);
        assert_eq!(s.freeze_count, 0);
        assert!((s.fps - 30.0).abs() < 0.01, "{}", s.fps);
        assert_eq!((s.width, s.height), (640, 360));
        assert_eq!(s.frames_rendered, 300);
    }

    #[test]
    fn gap_of_300ms_at_30fps_is_one_freeze() {
        let mut c = VideoStatsCollector::new();
        render_at(&mut c, (0..60).map(|i| i * 33_333));
        let last = 59 * 33_333;
        // avg with the gap ≈ (29 × 33.3 + 300) / 30 = 42 ms → threshold 192 ms.
        render_at(&mut c, (0..30).map(|i| last + 300_000 + i * 33_333));
        let s = c.stats(last + 300_000 + 29 * 33_333);
        assert_eq!(s.freeze_count, 1);
        assert_eq!(s.total_freezes_duration_us, 300_000);
    }

    #[test]
    fn threshold_follows_the_spec_formula() {
        // 30 fps: max(3 × 33 ms, 33 + 150 ms) → the +150 ms bound applies, so 150 ms is not
        // a freeze.
        let mut c = VideoStatsCollector::new();
        render_at(&mut c, (0..40).map(|i| i * 33_333));
        render_at(&mut c, [39 * 33_333 + 150_000]);
        assert_eq!(c.stats(0).freeze_count, 0);

        // 5 fps: 3 × 200 ms = 600 ms dominates; 500 ms is not a freeze, 800 ms is.
        let mut c = VideoStatsCollector::new();
        render_at(&mut c, (0..30).map(|i| i * 200_000));
        let t = 29 * 200_000;
        render_at(&mut c, [t + 500_000]);
        assert_eq!(c.stats(0).freeze_count, 0);
        render_at(&mut c, (1..10).map(|i| t + 500_000 + i * 200_000));
        let t = t + 500_000 + 9 * 200_000;
        render_at(&mut c, [t + 800_000]);
        assert_eq!(c.stats(0).freeze_count, 1);
    }

    #[test]
    fn no_judgement_before_five_delays_and_pauses_are_separate() {
        let mut c = VideoStatsCollector::new();
        render_at(&mut c, [0, 33_333, 1_000_000]);
        assert_eq!(c.stats(0).freeze_count, 0);
        let mut c = VideoStatsCollector::new();
        render_at(&mut c, (0..30).map(|i| i * 33_333));
        render_at(&mut c, [29 * 33_333 + 6_000_000]);
        let s = c.stats(0);
        assert_eq!((s.freeze_count, s.pause_count), (0, 1));
        assert_eq!(s.total_pauses_duration_us, 6_000_000);
    }

    #[test]
    fn bitrate_and_fps_use_a_one_second_window() {
        let mut c = VideoStatsCollector::new();
        for i in 0..100u64 {
            // 10 ms apart, 1 250 bytes each: 1 Mbit/s.
            c.on_bytes_received(i * 10_000, 1_250);
        }
        let s = c.stats(99 * 10_000);
        assert_eq!(s.bitrate_bps, 1_000_000);
        assert_eq!(s.bytes_received, 125_000);
        // Two seconds of silence empties the window.
        let s = c.stats(3_000_000);
        assert_eq!((s.bitrate_bps, s.fps), (0, 0.0));
        c.on_keyframe_requested();
        c.on_frame_dropped();
        let s = c.stats(3_000_000);
        assert_eq!((s.keyframes_requested, s.frames_dropped), (1, 1));
    }
}
