//! Mouth-to-ear latency from what was sent and what was played.
//!
//! The played audio is cut into windows; each window is located in the sent audio by
//! normalised cross-correlation (FFT), searching only what was captured in the second before
//! it played. A located window gives one latency: the instant its first sample was played
//! minus the instant the matching sent sample was spoken. A frame is read from the source in
//! one piece when it is complete, so a sample was spoken `(960 - offset)` samples before its
//! frame was read; that makes the 20 ms capture framing part of the figure, as it is with a
//! microphone. The jitter buffer stretches and shrinks time, so latency is measured per window
//! rather than once.

use std::time::{Duration, Instant};

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

use crate::timeline::Timeline;

const RATE: f64 = parley_media::SAMPLE_RATE as f64;
const FRAME: usize = parley_media::FRAME_SAMPLES;

/// How windows are cut and searched.
#[derive(Debug, Clone, Copy)]
pub struct AlignConfig {
    /// Window length.
    pub window: Duration,
    /// Step between window starts.
    pub step: Duration,
    /// Longest latency searched for.
    pub max_latency: Duration,
    /// Windows quieter than this RMS (of full scale) are skipped: pauses locate nothing.
    pub min_rms: f64,
    /// Lowest normalised correlation that counts as found.
    pub min_correlation: f64,
}

impl Default for AlignConfig {
    fn default() -> Self {
        AlignConfig {
            window: Duration::from_millis(400),
            step: Duration::from_millis(200),
            max_latency: Duration::from_millis(1000),
            min_rms: 0.01,
            min_correlation: 0.6,
        }
    }
}

/// One located window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Located {
    /// Index of the window's first sample in the played audio.
    pub played_at: usize,
    /// Index of the matching sample in the sent audio.
    pub sent_at: usize,
    /// Normalised correlation of the match.
    pub correlation: f64,
    /// Mouth-to-ear latency of the window.
    pub latency: Duration,
}

/// Windows of `played` located in `sent`, from played sample `from` on.
pub fn locate(sent: &Timeline, played: &Timeline, from: usize, config: AlignConfig) -> Vec<Located> {
    let window = samples(config.window);
    let step = samples(config.step).max(1);
    let mut planner = FftPlanner::<f64>::new();
    let mut found = Vec::new();
    let mut start = from;
    while start + window <= played.samples.len() {
        let block = &played.samples[start..start + window];
        start += step;
        if rms(block) < config.min_rms {
            continue;
        }
        let begin = start - step;
        let Some(ear) = ear_time(played, begin) else {
            continue;
        };
        // Sent frames captured in the `max_latency` before the window played.
        let earliest = ear.checked_sub(config.max_latency).unwrap_or(ear);
        let first = sent.instants.partition_point(|t| *t < earliest);
        let last = sent.instants.partition_point(|t| *t <= ear);
        let lo = first * FRAME;
        let hi = (last * FRAME + window).min(sent.samples.len());
        if hi <= lo + window {
            continue;
        }
        let Some((offset, correlation)) = best_match(&mut planner, &sent.samples[lo..hi], block) else {
            continue;
        };
        if correlation < config.min_correlation {
            continue;
        }
        let sent_at = lo + offset;
        let Some(mouth) = mouth_time(sent, sent_at) else {
            continue;
        };
        found.push(Located {
            played_at: begin,
            sent_at,
            correlation,
            latency: ear.saturating_duration_since(mouth),
        });
    }
    found
}

/// When played sample `index` reached the speaker: its frame's playout instant plus its offset.
fn ear_time(played: &Timeline, index: usize) -> Option<Instant> {
    let frame = *played.instants.get(index / FRAME)?;
    Some(frame + offset(index % FRAME))
}

/// When sent sample `index` was spoken: its frame was read when complete.
fn mouth_time(sent: &Timeline, index: usize) -> Option<Instant> {
    let frame = *sent.instants.get(index / FRAME)?;
    frame.checked_sub(offset(FRAME - index % FRAME))
}

fn offset(samples: usize) -> Duration {
    Duration::from_secs_f64(samples as f64 / RATE)
}

fn samples(d: Duration) -> usize {
    (d.as_secs_f64() * RATE).round() as usize
}

fn rms(block: &[i16]) -> f64 {
    if block.is_empty() {
        return 0.0;
    }
    let sum: f64 = block.iter().map(|s| (f64::from(*s) / 32_768.0).powi(2)).sum();
    (sum / block.len() as f64).sqrt()
}

/// The offset into `haystack` where `needle` matches best, with its normalised correlation.
fn best_match(planner: &mut FftPlanner<f64>, haystack: &[i16], needle: &[i16]) -> Option<(usize, f64)> {
    let n = haystack.len() + needle.len();
    let size = n.next_power_of_two();
    let fft = planner.plan_fft_forward(size);
    let ifft = planner.plan_fft_inverse(size);
    let mut a: Vec<Complex<f64>> = haystack
        .iter()
        .map(|s| Complex::new(f64::from(*s), 0.0))
        .collect();
    a.resize(size, Complex::default());
    let mut b: Vec<Complex<f64>> = needle.iter().map(|s| Complex::new(f64::from(*s), 0.0)).collect();
    b.resize(size, Complex::default());
    fft.process(&mut a);
    fft.process(&mut b);
    // Correlation is the product with the conjugate.
    for (x, y) in a.iter_mut().zip(&b) {
        *x *= y.conj();
    }
    ifft.process(&mut a);

    let needle_energy: f64 = needle.iter().map(|s| f64::from(*s).powi(2)).sum();
    if needle_energy <= 0.0 {
        return None;
    }
    // Energy of each haystack stretch as long as the needle, by a running sum.
    let squares: Vec<f64> = haystack.iter().map(|s| f64::from(*s).powi(2)).collect();
    let mut stretch: f64 = squares[..needle.len()].iter().sum();
    let mut best: Option<(usize, f64)> = None;
    for offset in 0..=haystack.len() - needle.len() {
        if offset > 0 {
            stretch += squares[offset + needle.len() - 1] - squares[offset - 1];
        }
        if stretch <= needle_energy * 1e-6 {
            continue;
        }
        let value = a[offset].re / size as f64 / (stretch * needle_energy).sqrt();
        if best.is_none_or(|(_, b)| value > b) {
            best = Some((offset, value));
        }
    }
    best
}

/// The `q` quantile (0..=1) of `values`, by nearest rank.
pub fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    nearest_rank(&sorted, q).copied()
}

/// The `q` quantile (0..=1) of `values`, by nearest rank.
pub fn quantile_f64(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    nearest_rank(&sorted, q).copied()
}

fn nearest_rank<T>(sorted: &[T], q: f64) -> Option<&T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::synthetic_speech;

    /// A sent timeline of frames 20 ms apart and a played copy delayed by `delay_frames` frames
    /// plus `shift` samples, played on its own clock offset by `clock`.
    fn pair(delay_frames: usize, shift: usize, clock: Duration) -> (Timeline, Timeline) {
        let speech = synthetic_speech(6, 7);
        let t0 = Instant::now();
        let frames = speech.len() / FRAME;
        let sent = Timeline {
            samples: speech.clone(),
            instants: (0..frames)
                .map(|i| t0 + Duration::from_millis(20 * i as u64))
                .collect(),
        };
        let mut played_samples = vec![0i16; delay_frames * FRAME + shift];
        played_samples.extend_from_slice(&speech);
        played_samples.truncate(frames * FRAME);
        let played = Timeline {
            samples: played_samples,
            instants: (0..frames)
                .map(|i| t0 + clock + Duration::from_millis(20 * i as u64))
                .collect(),
        };
        (sent, played)
    }

    #[test]
    fn a_pure_delay_is_measured_to_the_sample() {
        // Played on the same clock, 5 frames and 96 samples (2 ms) late: 100 + 2 ms of delay,
        // plus the 20 ms a frame takes to be captured.
        let (sent, played) = pair(5, 96, Duration::ZERO);
        let found = locate(&sent, &played, 0, AlignConfig::default());
        assert!(found.len() > 10, "located {} windows", found.len());
        for w in &found {
            let ms = w.latency.as_secs_f64() * 1000.0;
            assert!((ms - 122.0).abs() < 0.1, "latency {ms} ms");
            assert!(w.correlation > 0.99);
        }
    }

    #[test]
    fn the_playout_clock_offset_adds_to_latency() {
        let (sent, played) = pair(2, 0, Duration::from_millis(7));
        let found = locate(&sent, &played, 0, AlignConfig::default());
        let p50 = quantile(&found.iter().map(|w| w.latency).collect::<Vec<_>>(), 0.5).unwrap();
        let ms = p50.as_secs_f64() * 1000.0;
        assert!((ms - 67.0).abs() < 0.1, "latency {ms} ms");
    }

    #[test]
    fn silence_locates_nothing() {
        let (sent, mut played) = pair(2, 0, Duration::ZERO);
        played.samples.iter_mut().for_each(|s| *s = 0);
        assert!(locate(&sent, &played, 0, AlignConfig::default()).is_empty());
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&v, 0.95), Some(Duration::from_millis(95)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
