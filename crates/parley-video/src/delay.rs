//! How much later the audio must play so that the video keeps up with it.
//!
//! Lip sync holds each picture until the audio captured with it plays. That works while
//! pictures arrive before their audio; but a picture that needed a retransmission or two
//! arrives after its audio has already played, and is then shown late (A/V skew) and after
//! a gap (a freeze, if the gap passes 150 ms). The cure, as in libwebrtc's stream
//! synchronisation, is to delay the audio by what the video needs: then late pictures are
//! still on time, and they are shown at their regular spacing.
//!
//! [`SyncDelay`] watches each decoded picture's *slack* — its render time minus the moment
//! it was ready, negative when late — over a window of pictures, and steers an extra audio
//! delay towards two bounds: the pictures at [`SyncDelayConfig::quantile`] may be late by at
//! most [`SyncDelayConfig::late_ms`] (what a viewer tolerates as lip-sync error), and the
//! latest picture by at most [`SyncDelayConfig::straggler_ms`] (a later one leaves a gap that
//! reads as a freeze). Holding *every* picture on time would chase the rare picture that
//! needed three retransmissions and add its whole delay to the call. The delay rises as soon
//! as a window breaks a bound and falls slowly once both have room, so a loss burst does not
//! make it flap. After a change it waits for the audio to have moved before judging again:
//! the jitter buffer stretches towards a new delay over a few hundred milliseconds, and slack
//! measured meanwhile would ask for the same change twice.

/// Settings of [`SyncDelay`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncDelayConfig {
    /// Largest extra audio delay, ms: beyond it, talking over each other hurts more than a
    /// late picture does.
    pub max_ms: u32,
    /// Share of pictures allowed to be later than `late_ms`.
    pub quantile: f64,
    /// How late the pictures at `quantile` may be, ms.
    pub late_ms: u32,
    /// How late the latest picture of a window may be, ms.
    pub straggler_ms: u32,
    /// Room both bounds must have before the delay falls, ms.
    pub hysteresis_ms: u32,
    /// Largest rise per decision, ms.
    pub max_rise_ms: u32,
    /// Largest fall per decision, ms.
    pub fall_ms: u32,
    /// Pictures judged together.
    pub window: usize,
    /// Time after a change during which pictures are not judged, µs.
    pub settle_us: u64,
}

impl Default for SyncDelayConfig {
    fn default() -> Self {
        Self {
            max_ms: 300,
            quantile: 0.05,
            late_ms: 10,
            straggler_ms: 120,
            hysteresis_ms: 20,
            max_rise_ms: 100,
            fall_ms: 15,
            window: 90,
            settle_us: 500_000,
        }
    }
}

/// The extra audio delay one sender's video needs; see the module docs.
#[derive(Debug, Clone)]
pub struct SyncDelay {
    config: SyncDelayConfig,
    extra_ms: u32,
    slack_ms: Vec<f64>,
    judge_after_us: u64,
}

impl SyncDelay {
    /// No extra delay until pictures show they need one.
    pub fn new(config: SyncDelayConfig) -> Self {
        Self {
            config: SyncDelayConfig {
                window: config.window.max(1),
                quantile: config.quantile.clamp(0.0, 1.0),
                ..config
            },
            extra_ms: 0,
            slack_ms: Vec::new(),
            judge_after_us: 0,
        }
    }

    /// The extra delay the audio should play with now, ms.
    pub fn extra_ms(&self) -> u32 {
        self.extra_ms
    }

    /// Records a decoded picture: at `now_us` it was ready, and its audio plays at `render_us`
    /// (both on the same local clock). Returns the new extra delay when it changed.
    pub fn on_picture(&mut self, now_us: u64, render_us: u64) -> Option<u32> {
        if now_us < self.judge_after_us {
            return None;
        }
        self.slack_ms.push((render_us as f64 - now_us as f64) / 1_000.0);
        if self.slack_ms.len() < self.config.window {
            return None;
        }
        self.slack_ms.sort_by(f64::total_cmp);
        let rank = ((self.slack_ms.len() as f64 * self.config.quantile).ceil() as usize).saturating_sub(1);
        let at_quantile = self.slack_ms[rank.min(self.slack_ms.len() - 1)];
        let latest = self.slack_ms[0];
        self.slack_ms.clear();
        let c = self.config;
        // Room left under the tighter bound; negative when a bound is broken.
        let room = (at_quantile + f64::from(c.late_ms)).min(latest + f64::from(c.straggler_ms));
        let next = if room < 0.0 {
            let rise = (-room).ceil().min(f64::from(c.max_rise_ms)) as u32;
            self.extra_ms.saturating_add(rise).min(c.max_ms)
        } else if room > f64::from(c.hysteresis_ms) {
            let spare = (room - f64::from(c.hysteresis_ms) / 2.0).floor() as u32;
            self.extra_ms.saturating_sub(spare.min(c.fall_ms))
        } else {
            self.extra_ms
        };
        if next == self.extra_ms {
            return None;
        }
        self.extra_ms = next;
        self.judge_after_us = now_us.saturating_add(c.settle_us);
        Some(next)
    }
}

impl Default for SyncDelay {
    fn default() -> Self {
        Self::new(SyncDelayConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds pictures at 30 fps whose lateness behind their audio is `late(i)` ms before the
    /// extra delay; the extra delay makes the audio (and so the render time) that much later.
    fn run(d: &mut SyncDelay, from: usize, frames: usize, late: impl Fn(usize) -> f64) -> u64 {
        let mut t = 0;
        for i in from..from + frames {
            t = i as u64 * 33_333;
            let render = t as f64 + (f64::from(d.extra_ms()) - late(i)) * 1_000.0;
            d.on_picture(t, render.max(0.0) as u64);
        }
        t
    }

    #[test]
    fn early_pictures_need_nothing() {
        let mut d = SyncDelay::default();
        run(&mut d, 0, 600, |_| -30.0);
        assert_eq!(d.extra_ms(), 0);
    }

    #[test]
    fn a_few_late_pictures_are_tolerated() {
        let mut d = SyncDelay::default();
        // One in thirty is 80 ms late: under both bounds.
        run(&mut d, 0, 900, |i| if i % 30 == 7 { 80.0 } else { -20.0 });
        assert_eq!(d.extra_ms(), 0);
    }

    #[test]
    fn rises_to_cover_the_late_share_then_holds() {
        let mut d = SyncDelay::default();
        // One in ten is 60 ms late (a retransmission): the tenth percentile must be covered.
        let late = |i: usize| if i.is_multiple_of(10) { 60.0 } else { -20.0 };
        run(&mut d, 0, 300, late);
        let settled = d.extra_ms();
        assert!((50..=70).contains(&settled), "{settled}");
        run(&mut d, 300, 900, late);
        assert_eq!(
            d.extra_ms(),
            settled,
            "steady lateness keeps the delay where it is"
        );
    }

    #[test]
    fn rises_for_stragglers_that_would_freeze() {
        let mut d = SyncDelay::default();
        // One picture per window 200 ms late: 80 ms more audio delay keeps its gap short.
        run(&mut d, 0, 900, |i| if i % 90 == 45 { 200.0 } else { -20.0 });
        let extra = d.extra_ms();
        assert!((80..=100).contains(&extra), "{extra}");
    }

    #[test]
    fn falls_slowly_once_the_path_is_clean_and_never_passes_the_cap() {
        let mut d = SyncDelay::default();
        run(&mut d, 0, 300, |i| if i.is_multiple_of(5) { 120.0 } else { 0.0 });
        let high = d.extra_ms();
        assert!(high >= 110, "{high}");
        // Clean again: the delay comes down a little per window, all the way.
        run(&mut d, 300, 270, |_| -5.0);
        let after = d.extra_ms();
        assert!(after < high && after > 0, "{high} -> {after}");
        run(&mut d, 570, 6_000, |_| -5.0);
        assert!(d.extra_ms() <= 10, "{}", d.extra_ms());
        // Pictures a second late: the audio waits at most the cap.
        run(&mut d, 6_570, 900, |_| 1_000.0);
        assert_eq!(d.extra_ms(), SyncDelayConfig::default().max_ms);
    }
}
