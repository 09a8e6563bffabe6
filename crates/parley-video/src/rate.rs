//! Congestion response on the send side: turns the transport's bandwidth estimate (str0m's
//! GCC/TWCC estimate, in bits per second) into encoder settings.
//!
//! * **Bitrate**: a fixed share of the estimate (87 % by default), leaving room for audio,
//!   RTP/RTCP overhead, retransmissions and keyframe bursts. Decreases apply at once, since a
//!   falling estimate means queues are already building; increases are limited to 25 % per
//!   second (at least 40 kbit/s per second), because the estimate overshoots while probing
//!   and a bitrate jump that turns out too high costs a loss burst.
//! * **Resolution and frame rate**: a ladder 720p30 → 540p30 → 360p30 → 360p15 → 180p15.
//!   Each rung has a floor: when the target falls below it, the controller steps down at once
//!   (as many rungs as needed), because encoding too many pixels for the bits gives a blocky
//!   picture and frame skips. Stepping up needs the target to exceed the next rung's floor by
//!   25 % for 3 s without interruption, and a step costs a keyframe, so an estimate wobbling
//!   around a floor cannot make the picture size flap.

/// One step of the resolution/frame-rate ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Below this target bitrate the rung is left for a lower one.
    pub min_bitrate_bps: u32,
}

/// The default ladder, best first. 16:9 sizes with even sides, multiples of 2 after scaling.
pub const LADDER: [Rung; 5] = [
    Rung {
        width: 1_280,
        height: 720,
        fps: 30,
        min_bitrate_bps: 900_000,
    },
    Rung {
        width: 960,
        height: 540,
        fps: 30,
        min_bitrate_bps: 500_000,
    },
    Rung {
        width: 640,
        height: 360,
        fps: 30,
        min_bitrate_bps: 280_000,
    },
    Rung {
        width: 640,
        height: 360,
        fps: 15,
        min_bitrate_bps: 150_000,
    },
    Rung {
        width: 320,
        height: 180,
        fps: 15,
        min_bitrate_bps: 0,
    },
];

/// Rate controller settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateConfig {
    /// Share of the bandwidth estimate given to video.
    pub estimate_share: f64,
    /// Taken off the estimate before the share, bits per second: the call's audio (Opus plus
    /// 50 packet headers a second is ~60 kbit/s) rides the same link. At a 300 kbit/s estimate
    /// it is a fifth of the link, and video sized without it keeps the link overloaded.
    pub audio_reserve_bps: u32,
    /// Lowest target bitrate, whatever the estimate.
    pub min_bitrate_bps: u32,
    /// Highest target bitrate, whatever the estimate.
    pub max_bitrate_bps: u32,
    /// Relative increase allowed per second.
    pub increase_per_s: f64,
    /// Absolute increase always allowed per second, so a low bitrate does not crawl back.
    pub min_increase_bps_per_s: u32,
    /// How far above the next rung's floor the target must be to step up (1.25 = 25 %).
    pub up_margin: f64,
    /// How long the target must stay above that before stepping up, in µs.
    pub up_hold_us: u64,
    /// Best rung allowed (index into [`LADDER`]); 0 allows 720p30.
    pub top_rung: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            estimate_share: 0.87,
            audio_reserve_bps: 60_000,
            min_bitrate_bps: 50_000,
            max_bitrate_bps: 2_500_000,
            increase_per_s: 0.25,
            min_increase_bps_per_s: 40_000,
            up_margin: 1.25,
            up_hold_us: 3_000_000,
            top_rung: 0,
        }
    }
}

/// What the sender should encode with now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTarget {
    /// Encoder target bitrate.
    pub bitrate_bps: u32,
    /// Rung of [`LADDER`] in force.
    pub rung: usize,
    /// Encoded width.
    pub width: u32,
    /// Encoded height.
    pub height: u32,
    /// Frames per second to capture/encode.
    pub fps: u32,
}

impl VideoTarget {
    /// Encoder settings for this target, keeping the other fields (threads) of `base`.
    pub fn encoder_settings(&self, base: crate::EncoderSettings) -> crate::EncoderSettings {
        crate::EncoderSettings {
            width: self.width,
            height: self.height,
            bitrate_bps: self
                .bitrate_bps
                .clamp(crate::codec::MIN_BITRATE_BPS, crate::codec::MAX_BITRATE_BPS),
            max_fps: self.fps as f32,
            ..base
        }
    }
}

/// Maps bandwidth estimates to a [`VideoTarget`].
#[derive(Debug, Clone)]
pub struct RateController {
    config: RateConfig,
    bitrate: f64,
    rung: usize,
    last_us: Option<u64>,
    /// Since when the target has been high enough for the next rung up.
    up_since_us: Option<u64>,
}

impl RateController {
    /// A controller with no estimate yet; until the first one it targets the configured
    /// minimum on the lowest rung.
    pub fn new(config: RateConfig) -> Self {
        let top_rung = config.top_rung.min(LADDER.len() - 1);
        Self {
            config: RateConfig { top_rung, ..config },
            bitrate: f64::from(config.min_bitrate_bps),
            rung: LADDER.len() - 1,
            last_us: None,
            up_since_us: None,
        }
    }

    /// The target in force.
    pub fn target(&self) -> VideoTarget {
        let r = LADDER[self.rung];
        VideoTarget {
            bitrate_bps: self.bitrate as u32,
            rung: self.rung,
            width: r.width,
            height: r.height,
            fps: r.fps,
        }
    }

    /// Best rung whose floor the bitrate meets, not above the configured top.
    fn fitting_rung(&self, bitrate: f64) -> usize {
        (self.config.top_rung..LADDER.len())
            .find(|&i| bitrate >= f64::from(LADDER[i].min_bitrate_bps))
            .unwrap_or(LADDER.len() - 1)
    }

    /// Feeds a bandwidth estimate taken at `now_us` and returns the updated target.
    pub fn on_estimate(&mut self, now_us: u64, estimate_bps: u64) -> VideoTarget {
        let c = self.config;
        let wanted = ((estimate_bps as f64 - f64::from(c.audio_reserve_bps)) * c.estimate_share)
            .clamp(f64::from(c.min_bitrate_bps), f64::from(c.max_bitrate_bps));
        match self.last_us {
            None => {
                // The estimator ramps up on its own; a first estimate is taken as it is.
                self.bitrate = wanted;
                self.rung = self.fitting_rung(wanted);
            }
            Some(last) => {
                let dt_s = now_us.saturating_sub(last) as f64 / 1e6;
                if wanted <= self.bitrate {
                    self.bitrate = wanted;
                } else {
                    let step =
                        (self.bitrate * c.increase_per_s).max(f64::from(c.min_increase_bps_per_s)) * dt_s;
                    self.bitrate = (self.bitrate + step).min(wanted);
                }
                self.update_rung(now_us);
            }
        }
        self.last_us = Some(now_us.max(self.last_us.unwrap_or(0)));
        self.target()
    }

    fn update_rung(&mut self, now_us: u64) {
        let fitting = self.fitting_rung(self.bitrate);
        if fitting > self.rung {
            self.rung = fitting;
            self.up_since_us = None;
            return;
        }
        if self.rung == self.config.top_rung {
            return;
        }
        let next = LADDER[self.rung - 1];
        if self.bitrate >= f64::from(next.min_bitrate_bps) * self.config.up_margin {
            let since = *self.up_since_us.get_or_insert(now_us);
            if now_us.saturating_sub(since) >= self.config.up_hold_us {
                self.rung -= 1;
                // The next step up waits its own full hold.
                self.up_since_us = None;
            }
        } else {
            self.up_since_us = None;
        }
    }
}

impl Default for RateController {
    fn default() -> Self {
        Self::new(RateConfig::default())
    }
}

/// Drops captured frames so the encoder sees at most the target frame rate, when the camera
/// or pattern runs faster (30 fps capture on the 15 fps rungs).
#[derive(Debug, Clone, Default)]
pub struct FrameRateLimiter {
    next_us: Option<u64>,
}

impl FrameRateLimiter {
    /// A limiter that passes the first frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when a frame captured at `capture_us` should be encoded at `fps`.
    pub fn admit(&mut self, capture_us: u64, fps: u32) -> bool {
        let interval = 1_000_000 / u64::from(fps.max(1));
        // A quarter frame of tolerance: capture times jitter, and a strict comparison would
        // turn 30 fps capture into 10 fps output instead of 15 whenever a frame comes early.
        let tolerance = interval / 4;
        let due = self.next_us.is_none_or(|next| capture_us + tolerance >= next);
        if due {
            // Advance from the schedule, not from the capture time, so jitter does not
            // accumulate; after a stall, restart from now.
            let base = self
                .next_us
                .map_or(capture_us, |next| next.max(capture_us.saturating_sub(tolerance)));
            self.next_us = Some(base + interval);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bps` every 100 ms from `from_us` for `secs`, returning the target after each.
    fn feed(rc: &mut RateController, from_us: u64, secs: u64, bps: u64) -> Vec<(u64, VideoTarget)> {
        (0..secs * 10)
            .map(|i| {
                let t = from_us + i * 100_000;
                (t, rc.on_estimate(t, bps))
            })
            .collect()
    }

    #[test]
    fn step_down_settles_fast_and_climbs_back() {
        let mut rc = RateController::default();
        let high = feed(&mut rc, 0, 10, 2_000_000);
        let settled = high
            .last()
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("no target"));
        assert_eq!((settled.width, settled.height, settled.fps), (1280, 720, 30));
        // 0.87 of the estimate less the audio reserve.
        assert_eq!(settled.bitrate_bps, 1_687_800);

        let low = feed(&mut rc, 10_000_000, 20, 300_000);
        // Within 5 s (here: at once) the target is under the new rate and stays there.
        let (t_settle, _) = low
            .iter()
            .find(|(_, t)| t.bitrate_bps <= 300_000)
            .copied()
            .unwrap_or_else(|| panic!("never settled"));
        assert!(t_settle - 10_000_000 <= 5_000_000);
        assert!(low.iter().all(|(_, t)| t.bitrate_bps <= 300_000));
        let after = low.last().map(|(_, t)| *t).unwrap_or_else(|| panic!("no target"));
        assert_eq!(after.bitrate_bps, 208_800);
        assert_eq!((after.width, after.height, after.fps), (640, 360, 15));
        // One step down for the whole drop, none afterwards.
        let changes = low.windows(2).filter(|w| w[0].1.rung != w[1].1.rung).count();
        assert_eq!(changes, 0);

        let back = feed(&mut rc, 30_000_000, 30, 2_000_000);
        let (t_full, _) = back
            .iter()
            .find(|(_, t)| t.bitrate_bps >= 1_650_000)
            .copied()
            .unwrap_or_else(|| panic!("bitrate never recovered"));
        assert!(
            t_full - 30_000_000 <= 15_000_000,
            "took {} µs",
            t_full - 30_000_000
        );
        let (t_720, _) = back
            .iter()
            .find(|(_, t)| t.rung == 0)
            .copied()
            .unwrap_or_else(|| panic!("never back to 720p"));
        assert!(t_720 - 30_000_000 <= 20_000_000, "took {} µs", t_720 - 30_000_000);
        // The climb passes each rung once, in order.
        let mut rungs: Vec<usize> = back.iter().map(|(_, t)| t.rung).collect();
        rungs.dedup();
        assert_eq!(rungs, vec![3, 2, 1, 0]);
    }

    #[test]
    fn increases_are_gradual() {
        let mut rc = RateController::default();
        rc.on_estimate(0, 500_000);
        let t = rc.on_estimate(1_000_000, 2_000_000);
        // 435 kbit/s + 25 % in one second.
        assert!(t.bitrate_bps <= 544_000, "{}", t.bitrate_bps);
        assert!(t.bitrate_bps > 435_000);
    }

    #[test]
    fn estimate_wobbling_around_a_floor_does_not_flap() {
        let mut rc = RateController::default();
        let mut changes = 0;
        let mut last = rc.on_estimate(0, 1_100_000).rung;
        // ±15 % around 1.1 Mbit/s (target ≈ 0.96 Mbit/s, near the 720p floor), flipping every
        // 700 ms for a minute.
        for i in 1..600u64 {
            let bps = if (i / 7) % 2 == 0 { 1_265_000 } else { 935_000 };
            let rung = rc.on_estimate(i * 100_000, bps).rung;
            if rung != last {
                changes += 1;
                last = rung;
            }
        }
        assert!(changes <= 2, "{changes} resolution changes");
    }

    #[test]
    fn bounds_and_top_rung_are_respected() {
        let mut rc = RateController::new(RateConfig {
            top_rung: 2,
            ..RateConfig::default()
        });
        let t = rc.on_estimate(0, 50_000_000);
        assert_eq!(t.bitrate_bps, 2_500_000);
        assert_eq!((t.width, t.fps), (640, 30));
        let t = rc.on_estimate(100_000, 0);
        assert_eq!(t.bitrate_bps, 50_000);
        assert_eq!((t.width, t.height, t.fps), (320, 180, 15));
        let s = t.encoder_settings(crate::EncoderSettings::default());
        assert_eq!(
            (s.width, s.height, s.bitrate_bps, s.max_fps),
            (320, 180, 50_000, 15.0)
        );
    }

    #[test]
    fn frame_rate_limiter_halves_30_to_15() {
        let mut lim = FrameRateLimiter::new();
        let passed = (0..30u64)
            .filter(|i| lim.admit(i * 33_333 + (i % 3) * 1_000, 15))
            .count();
        assert_eq!(passed, 15);
        let mut lim = FrameRateLimiter::new();
        assert_eq!((0..30u64).filter(|i| lim.admit(i * 33_333, 30)).count(), 30);
    }
}
