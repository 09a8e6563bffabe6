//! Target-delay estimation in the manner of libwebrtc NetEQ's `DelayManager`.
//!
//! Each arriving packet's *relative delay* is how much later it came than the fastest packet
//! of the last couple of seconds would predict from its RTP timestamp. Those delays go into a
//! histogram that slowly forgets, and the target is a high quantile of it: the buffer holds
//! enough audio that, say, 95 % of packets arrive before they are due. A spike raises the
//! target at once (the spike's bucket fills); calm lets it decay over a few seconds as the
//! forget factor shrinks old buckets.

use std::collections::VecDeque;

use crate::SAMPLE_RATE;

/// Width of one histogram bucket.
const BUCKET_MS: u32 = 5;
/// Buckets cover 0..2 s of relative delay; anything later lands in the last one.
const BUCKETS: usize = 400;
/// A transit change this large is a new timeline (sender restart, timestamp jump), not jitter.
const TIMELINE_JUMP_US: i64 = 5_000_000;
/// Upper bound on remembered arrivals, whatever the packet rate.
const MAX_WINDOW_PACKETS: usize = 1_000;

/// Settings for [`DelayEstimator`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct DelaySettings {
    pub quantile: f64,
    pub forget_factor: f64,
    pub window_us: u64,
}

/// Estimates how much arrival jitter the buffer must absorb.
#[derive(Debug, Clone)]
pub(crate) struct DelayEstimator {
    settings: DelaySettings,
    /// (arrival µs, transit µs) of recent packets; the minimum transit is the reference.
    window: VecDeque<(u64, i64)>,
    histogram: Vec<f64>,
    samples: u64,
    last_transit: Option<i64>,
    /// RFC 3550 interarrival jitter, µs.
    jitter_us: f64,
    quantile_ms: u32,
}

impl DelayEstimator {
    pub(crate) fn new(settings: DelaySettings) -> Self {
        Self {
            settings,
            window: VecDeque::new(),
            histogram: vec![0.0; BUCKETS],
            samples: 0,
            last_transit: None,
            jitter_us: 0.0,
            quantile_ms: 0,
        }
    }

    /// Records an arrival; `timestamp` is the unwrapped RTP timestamp (48 kHz units).
    pub(crate) fn on_packet(&mut self, arrival_us: u64, timestamp: i64) {
        let media_us = timestamp.saturating_mul(1_000_000) / i64::from(SAMPLE_RATE);
        let transit = (arrival_us as i64).saturating_sub(media_us);
        if let Some(last) = self.last_transit {
            let d = transit.saturating_sub(last).abs();
            if d > TIMELINE_JUMP_US {
                // A new timeline: old references would turn every packet into a 5 s outlier.
                self.window.clear();
                self.last_transit = Some(transit);
                return;
            }
            self.jitter_us += (d as f64 - self.jitter_us) / 16.0;
        }
        self.last_transit = Some(transit);

        while let Some(&(t, _)) = self.window.front() {
            if arrival_us.saturating_sub(t) > self.settings.window_us
                || self.window.len() >= MAX_WINDOW_PACKETS
            {
                self.window.pop_front();
            } else {
                break;
            }
        }
        self.window.push_back((arrival_us, transit));
        let min_transit = self.window.iter().map(|&(_, t)| t).min().unwrap_or(transit);
        let relative_ms = (transit - min_transit).max(0) / 1_000;
        let bucket = ((relative_ms as u64) / u64::from(BUCKET_MS)).min(BUCKETS as u64 - 1) as usize;

        // Until the histogram has seen enough packets it is a plain average, so the first
        // seconds of a call are not dominated by the empty prior.
        self.samples += 1;
        let forget = self.settings.forget_factor.min(1.0 - 1.0 / self.samples as f64);
        for v in &mut self.histogram {
            *v *= forget;
        }
        self.histogram[bucket] += 1.0 - forget;
        self.quantile_ms = self.compute_quantile();
    }

    fn compute_quantile(&self) -> u32 {
        let total: f64 = self.histogram.iter().sum();
        if total <= 0.0 {
            return 0;
        }
        let mut cumulative = 0.0;
        for (i, v) in self.histogram.iter().enumerate() {
            cumulative += v / total;
            if cumulative >= self.settings.quantile {
                return (i as u32 + 1) * BUCKET_MS;
            }
        }
        BUCKETS as u32 * BUCKET_MS
    }

    /// Forgets the arrival reference: the timestamps that follow belong to another clock (the
    /// relay switched the speaker on this stream), so comparing them with the old ones would
    /// read as a huge delay. The histogram is kept: the network has not changed.
    pub(crate) fn restart_timeline(&mut self) {
        self.window.clear();
        self.last_transit = None;
    }

    /// Relative delay (ms) that the configured share of packets stays under.
    pub(crate) fn quantile_ms(&self) -> u32 {
        self.quantile_ms
    }

    /// RFC 3550 interarrival jitter in milliseconds.
    pub(crate) fn jitter_ms(&self) -> f64 {
        self.jitter_us / 1_000.0
    }

    /// Whether any packet has been seen.
    pub(crate) fn has_data(&self) -> bool {
        self.samples > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DelaySettings {
        DelaySettings {
            quantile: 0.95,
            forget_factor: 0.983,
            window_us: 2_000_000,
        }
    }

    #[test]
    fn steady_arrivals_need_no_extra_delay() {
        let mut est = DelayEstimator::new(settings());
        for i in 0..200u64 {
            est.on_packet(i * 20_000, i as i64 * 960);
        }
        assert_eq!(est.quantile_ms(), BUCKET_MS);
        assert!(est.jitter_ms() < 0.01);
    }

    #[test]
    fn jitter_raises_then_calm_lowers_the_quantile() {
        let mut est = DelayEstimator::new(settings());
        for i in 0..500u64 {
            let extra = if i % 4 == 0 { 60_000 } else { 0 };
            est.on_packet(i * 20_000 + extra, i as i64 * 960);
        }
        let jittery = est.quantile_ms();
        assert!(jittery >= 60, "quantile {jittery}");
        for i in 500..1_000u64 {
            est.on_packet(i * 20_000, i as i64 * 960);
        }
        assert!(
            est.quantile_ms() <= 10,
            "quantile after calm {}",
            est.quantile_ms()
        );
    }

    #[test]
    fn timestamp_jump_starts_a_new_timeline() {
        let mut est = DelayEstimator::new(settings());
        for i in 0..100u64 {
            est.on_packet(i * 20_000, i as i64 * 960);
        }
        for i in 100..200u64 {
            est.on_packet(i * 20_000, i as i64 * 960 - 48_000 * 60);
        }
        assert!(est.quantile_ms() <= 10);
    }
}
