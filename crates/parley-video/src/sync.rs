//! Lip sync: when to show a video frame so that it matches the audio being heard.
//!
//! Audio and video RTP timestamps start at random offsets and tick at different rates (48 kHz,
//! 90 kHz), so they cannot be compared directly. Each RTCP sender report pairs one stream's
//! RTP timestamp with the sender's wall clock (NTP), which puts both streams on the sender's
//! clock. Audio is the master: the jitter buffer decides which audio timestamp is playing at
//! a local instant, and a video frame is due when the audio captured at the same sender time
//! plays. Because the anchor is the audio playout itself, neither the offset between the two
//! machines' clocks nor network delay enters the computation, and when the jitter buffer
//! stretches or shrinks the audio delay the video follows.
//!
//! RTP timestamps are compared with wrapping arithmetic relative to the last sender report,
//! which is exact as long as a timestamp is within about 6 hours (at 90 kHz) of that report.

/// Which stream a sender report or timestamp belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// The audio stream (the playout master).
    Audio,
    /// The video stream.
    Video,
}

/// Converts a 64-bit NTP timestamp (32.32 fixed-point seconds, as carried in RTCP sender
/// reports) to microseconds.
pub fn ntp64_to_us(ntp: u64) -> u64 {
    let secs = ntp >> 32;
    let frac = ntp & 0xffff_ffff;
    secs * 1_000_000 + ((frac * 1_000_000 + (1 << 31)) >> 32)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Report {
    ntp_us: u64,
    rtp: u32,
}

/// Maps audio and video RTP timestamps onto the sender's clock and video frames onto local
/// display times.
#[derive(Debug, Clone)]
pub struct SyncClock {
    audio_hz: u32,
    video_hz: u32,
    audio: Option<Report>,
    video: Option<Report>,
    playout: Option<(u64, u32)>,
}

impl SyncClock {
    /// A clock for the given RTP clock rates (48 000 for Opus, 90 000 for video); a zero rate
    /// is taken as 1 rather than dividing by it.
    pub fn new(audio_clock_hz: u32, video_clock_hz: u32) -> Self {
        Self {
            audio_hz: audio_clock_hz.max(1),
            video_hz: video_clock_hz.max(1),
            audio: None,
            video: None,
            playout: None,
        }
    }

    /// Records a sender report: at sender wall-clock time `ntp_us` (see [`ntp64_to_us`]) the
    /// stream's RTP clock read `rtp`. The latest report per stream is used.
    pub fn on_sender_report(&mut self, kind: MediaKind, ntp_us: u64, rtp: u32) {
        let report = Some(Report { ntp_us, rtp });
        match kind {
            MediaKind::Audio => self.audio = report,
            MediaKind::Video => self.video = report,
        }
    }

    /// Records that the audio sample with RTP timestamp `audio_rtp` is played at local time
    /// `local_us`. Call every time the jitter buffer hands out audio.
    pub fn on_audio_playout(&mut self, local_us: u64, audio_rtp: u32) {
        self.playout = Some((local_us, audio_rtp));
    }

    /// The sender wall-clock time (µs) at which `rtp` of the given stream was captured, once
    /// that stream has had a sender report. Can be negative for timestamps before the
    /// sender's clock origin, hence signed.
    pub fn sender_time_us(&self, kind: MediaKind, rtp: u32) -> Option<i64> {
        let (report, hz) = match kind {
            MediaKind::Audio => (self.audio?, self.audio_hz),
            MediaKind::Video => (self.video?, self.video_hz),
        };
        // Signed distance on the 32-bit circle: correct across wrap-around.
        let ticks = i64::from(rtp.wrapping_sub(report.rtp) as i32);
        let offset = i128::from(ticks) * 1_000_000 / i128::from(hz);
        i64::try_from(i128::from(report.ntp_us) + offset).ok()
    }

    /// The local time (µs) at which the video frame with RTP timestamp `video_rtp` should be
    /// shown, or `None` until both streams have had a sender report and audio is playing.
    /// A time already past means the frame is late: show it at once (or drop it if much later).
    pub fn video_render_time(&self, video_rtp: u32) -> Option<u64> {
        let (local_us, audio_rtp) = self.playout?;
        let audio_sender = self.sender_time_us(MediaKind::Audio, audio_rtp)?;
        let video_sender = self.sender_time_us(MediaKind::Video, video_rtp)?;
        let at = i128::from(local_us) + i128::from(video_sender) - i128::from(audio_sender);
        Some(at.clamp(0, i128::from(u64::MAX)) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIO_HZ: u64 = 48_000;
    const VIDEO_HZ: u64 = 90_000;

    /// A sender whose streams start at arbitrary RTP offsets; `rtp(kind, t)` is the timestamp
    /// of media captured at sender time `t` µs.
    struct Sender {
        audio_base: u32,
        video_base: u32,
    }

    impl Sender {
        fn rtp(&self, kind: MediaKind, t_us: u64) -> u32 {
            match kind {
                MediaKind::Audio => self.audio_base.wrapping_add((t_us * AUDIO_HZ / 1_000_000) as u32),
                MediaKind::Video => self.video_base.wrapping_add((t_us * VIDEO_HZ / 1_000_000) as u32),
            }
        }
    }

    fn clock_with_reports(s: &Sender, audio_sr_us: u64, video_sr_us: u64) -> SyncClock {
        let mut c = SyncClock::new(48_000, 90_000);
        c.on_sender_report(
            MediaKind::Audio,
            audio_sr_us,
            s.rtp(MediaKind::Audio, audio_sr_us),
        );
        c.on_sender_report(
            MediaKind::Video,
            video_sr_us,
            s.rtp(MediaKind::Video, video_sr_us),
        );
        c
    }

    #[test]
    fn video_follows_audio_playout_despite_clock_offsets() {
        let s = Sender {
            audio_base: 1_234_567,
            video_base: 3_000_000_000,
        };
        // Reports sent at different moments; the receiver's clock is ~9 days off the sender's.
        let mut c = clock_with_reports(&s, 10_000_000, 10_020_000);
        assert_eq!(c.video_render_time(s.rtp(MediaKind::Video, 12_000_000)), None);
        let local = 777_000_000_000;
        c.on_audio_playout(local, s.rtp(MediaKind::Audio, 12_000_000));
        // A frame captured 100 ms after the audio now playing is due 100 ms from now.
        assert_eq!(
            c.video_render_time(s.rtp(MediaKind::Video, 12_100_000)),
            Some(local + 100_000)
        );
        // One captured 40 ms before it is already late.
        assert_eq!(
            c.video_render_time(s.rtp(MediaKind::Video, 11_960_000)),
            Some(local - 40_000)
        );
        // The jitter buffer grows its delay by 60 ms: audio time 12.0 s now plays 60 ms later,
        // and video moves with it.
        c.on_audio_playout(local + 60_000, s.rtp(MediaKind::Audio, 12_000_000));
        assert_eq!(
            c.video_render_time(s.rtp(MediaKind::Video, 12_100_000)),
            Some(local + 160_000)
        );
    }

    #[test]
    fn timestamps_wrap_around() {
        // Both RTP clocks wrap between the sender report and the frames.
        let s = Sender {
            audio_base: u32::MAX - 48_000,
            video_base: u32::MAX - 45_000,
        };
        let mut c = clock_with_reports(&s, 0, 0);
        let a = s.rtp(MediaKind::Audio, 2_000_000);
        let v = s.rtp(MediaKind::Video, 2_033_333);
        assert!(a < 100_000 && v < 200_000, "both wrapped: {a} {v}");
        assert_eq!(c.sender_time_us(MediaKind::Audio, a), Some(2_000_000));
        c.on_audio_playout(5_000_000, a);
        let at = c.video_render_time(v).unwrap_or_else(|| panic!("no render time"));
        // 90 kHz resolution: within one tick (11 µs).
        assert!(at.abs_diff(5_033_333) <= 12, "{at}");
        // Timestamps before the report (older frames) map backwards, across the wrap too.
        let early = s.rtp(MediaKind::Video, 0);
        let c2 = clock_with_reports(&s, 3_000_000, 3_000_000);
        assert_eq!(c2.sender_time_us(MediaKind::Video, early), Some(0));
    }

    #[test]
    fn reports_are_replaced_and_missing_ones_block() {
        let s = Sender {
            audio_base: 0,
            video_base: 0,
        };
        let mut c = SyncClock::new(48_000, 90_000);
        c.on_audio_playout(0, 0);
        c.on_sender_report(MediaKind::Audio, 0, 0);
        assert_eq!(c.video_render_time(0), None);
        c.on_sender_report(MediaKind::Video, 0, 0);
        assert_eq!(c.video_render_time(90_000), Some(1_000_000));
        // A newer video report that says the sender's video clock is 10 ms behind its audio
        // (a capture pipeline offset) shifts rendering accordingly.
        c.on_sender_report(MediaKind::Video, 1_010_000, s.rtp(MediaKind::Video, 1_000_000));
        assert_eq!(c.video_render_time(90_000), Some(1_010_000));
    }

    #[test]
    fn ntp_conversion() {
        assert_eq!(ntp64_to_us(0), 0);
        assert_eq!(ntp64_to_us(5 << 32), 5_000_000);
        assert_eq!(ntp64_to_us((7 << 32) | (1 << 31)), 7_500_000);
        // No overflow at the top of the NTP era.
        assert!(ntp64_to_us(u64::MAX) > 4_294_967_295_000_000);
        // Zero clock rates do not divide by zero.
        let c = SyncClock::new(0, 0);
        assert_eq!(c.sender_time_us(MediaKind::Audio, 5), None);
    }
}
