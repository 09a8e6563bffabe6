//! Measurements on decoded audio for tests and the call-quality harness: which frequency a tone
//! recording carries (or, for a mix of voices, how strong each expected tone is), and where it
//! went quiet (the gaps a listener would hear).

use rustfft::{FftPlanner, num_complex::Complex};

use crate::SAMPLE_RATE;

/// Most samples one frequency estimate looks at (1.4 s at 48 kHz): plenty of resolution
/// (0.7 Hz) without unbounded work.
const MAX_FFT_LEN: usize = 1 << 16;

/// Frequency (Hz) with the most energy in `samples` (48 kHz), by a Hann-windowed FFT with
/// parabolic interpolation between bins. `None` for fewer than 1 024 samples or silence.
pub fn dominant_frequency(samples: &[i16]) -> Option<f64> {
    if samples.len() < 1_024 {
        return None;
    }
    let len = 1usize << samples.len().min(MAX_FFT_LEN).ilog2();
    // The middle of the recording: start-up silence and the tail are least representative.
    let start = (samples.len() - len) / 2;
    let mut buf: Vec<Complex<f64>> = samples[start..start + len]
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let w = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / len as f64).cos();
            Complex::new(f64::from(s) * w, 0.0)
        })
        .collect();
    FftPlanner::new().plan_fft_forward(len).process(&mut buf);
    let mags: Vec<f64> = buf[..len / 2].iter().map(|c| c.norm()).collect();
    let (peak, &peak_mag) = mags
        .iter()
        .enumerate()
        .skip(2)
        .max_by(|a, b| a.1.total_cmp(b.1))?;
    if peak_mag <= 0.0 {
        return None;
    }
    let offset = match (mags.get(peak - 1), mags.get(peak + 1)) {
        (Some(&l), Some(&r)) if l > 0.0 && r > 0.0 => {
            let (l, c, r) = (l.ln(), peak_mag.ln(), r.ln());
            let denom = l - 2.0 * c + r;
            if denom.abs() > f64::EPSILON {
                0.5 * (l - r) / denom
            } else {
                0.0
            }
        }
        _ => 0.0,
    };
    Some((peak as f64 + offset) * f64::from(SAMPLE_RATE) / len as f64)
}

/// Power of `samples` at one frequency (Goertzel): cheaper than an FFT when the expected tone is
/// known.
pub fn goertzel_power(samples: &[i16], frequency_hz: f64) -> f64 {
    let coeff = 2.0 * (std::f64::consts::TAU * frequency_hz / f64::from(SAMPLE_RATE)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / samples.len().max(1) as f64
}

/// Block length of [`tone_amplitudes`]: 100 ms resolves tones 20 Hz apart, and is short enough
/// that the jitter buffer's time-stretching (which breaks a tone's phase) spoils few blocks.
const TONE_BLOCK: usize = SAMPLE_RATE as usize / 10;

/// Peak amplitude (in sample units) of each of `frequencies_hz` in `samples`: a Hann-windowed
/// Goertzel on consecutive 100 ms blocks, averaged over the blocks. Tells which of several
/// known tones a mixed recording carries, which [`dominant_frequency`] cannot. Empty input or
/// input shorter than one block gives zeros.
pub fn tone_amplitudes(samples: &[i16], frequencies_hz: &[f64]) -> Vec<f64> {
    let window: Vec<f64> = (0..TONE_BLOCK)
        .map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / TONE_BLOCK as f64).cos())
        .collect();
    let gain: f64 = window.iter().sum();
    let blocks: Vec<&[i16]> = samples.chunks_exact(TONE_BLOCK).collect();
    frequencies_hz
        .iter()
        .map(|&hz| {
            if blocks.is_empty() {
                return 0.0;
            }
            let coeff = 2.0 * (std::f64::consts::TAU * hz / f64::from(SAMPLE_RATE)).cos();
            let total: f64 = blocks
                .iter()
                .map(|block| {
                    let (mut s1, mut s2) = (0.0f64, 0.0f64);
                    for (&x, w) in block.iter().zip(&window) {
                        let s0 = f64::from(x) * w + coeff * s1 - s2;
                        s2 = s1;
                        s1 = s0;
                    }
                    let power = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
                    2.0 * power.sqrt() / gain
                })
                .sum();
            total / blocks.len() as f64
        })
        .collect()
}

/// RMS of each consecutive `frame_len`-sample block (a trailing partial block is ignored).
pub fn frame_rms(samples: &[i16], frame_len: usize) -> Vec<f64> {
    if frame_len == 0 {
        return Vec::new();
    }
    samples
        .chunks_exact(frame_len)
        .map(|c| (c.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / frame_len as f64).sqrt())
        .collect()
}

/// A run of near-silent blocks inside a recording that should be continuous sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// First sample of the run.
    pub start_sample: usize,
    /// Length of the run in samples.
    pub len_samples: usize,
}

/// Below this block RMS (about −50 dBFS) a recording counts as not yet (or no longer) playing.
const PLAYING_FLOOR_RMS: f64 = 100.0;

/// Finds gaps in a tone recording: runs of `block_len`-sample blocks whose RMS is below
/// `threshold_ratio` × the median block RMS of the playing part. Leading and trailing quiet
/// (start-up buffering, the end of the call) is not a gap.
pub fn find_gaps(samples: &[i16], block_len: usize, threshold_ratio: f64) -> Vec<Gap> {
    let rms = frame_rms(samples, block_len);
    let playing = |r: &f64| *r >= PLAYING_FLOOR_RMS;
    let (Some(first), Some(last)) = (rms.iter().position(playing), rms.iter().rposition(playing)) else {
        return Vec::new();
    };
    let mut sorted = rms[first..=last].to_vec();
    sorted.sort_by(f64::total_cmp);
    let Some(&median) = sorted.get(sorted.len() / 2) else {
        return Vec::new();
    };
    let threshold = median * threshold_ratio;
    let loud = |r: &f64| *r >= threshold;
    let mut gaps = Vec::new();
    let mut run_start: Option<usize> = None;
    for (i, r) in rms.iter().enumerate().take(last + 1).skip(first) {
        match (loud(r), run_start) {
            (false, None) => run_start = Some(i),
            (true, Some(s)) => {
                gaps.push(Gap {
                    start_sample: s * block_len,
                    len_samples: (i - s) * block_len,
                });
                run_start = None;
            }
            _ => {}
        }
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(len: usize, hz: f64) -> Vec<i16> {
        crate::test_tone(len, hz, 8_000.0)
    }

    #[test]
    fn finds_the_tone_frequency() {
        for hz in [300.0, 440.0, 1_000.0, 3_150.0] {
            let f = dominant_frequency(&tone(48_000, hz)).unwrap();
            assert!((f - hz).abs() < 1.0, "{hz} Hz measured as {f}");
        }
        assert!(dominant_frequency(&[0; 100]).is_none());
    }

    #[test]
    fn goertzel_prefers_the_right_frequency() {
        let x = tone(4_800, 440.0);
        assert!(goertzel_power(&x, 440.0) > 100.0 * goertzel_power(&x, 880.0));
    }

    #[test]
    fn measures_each_tone_of_a_mix() {
        let a = crate::test_tone(48_000, 440.0, 8_000.0);
        let b = crate::test_tone(48_000, 880.0, 4_000.0);
        let mix: Vec<i16> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let amps = tone_amplitudes(&mix, &[440.0, 660.0, 880.0]);
        assert!((amps[0] - 8_000.0).abs() < 100.0, "{amps:?}");
        assert!(amps[1] < 10.0, "{amps:?}");
        assert!((amps[2] - 4_000.0).abs() < 100.0, "{amps:?}");
        assert_eq!(tone_amplitudes(&mix[..100], &[440.0]), vec![0.0]);
    }

    #[test]
    fn finds_a_gap_but_not_the_edges() {
        let mut x = vec![0i16; 4_800];
        x.extend(tone(9_600, 440.0));
        x[7_200..8_160].fill(0);
        x.extend(vec![0i16; 4_800]);
        let gaps = find_gaps(&x, 480, 0.1);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert!(gaps[0].len_samples >= 480 && gaps[0].len_samples <= 1_440);
    }
}
