//! Mixing several decoded voices into the one frame a speaker plays, sans-IO.
//!
//! A group call brings each other participant on a receive slot of its own, each with its own
//! jitter buffer and decoder (see [`GroupReceiver`](crate::GroupReceiver)); every 20 ms their
//! frames are summed here. The sum runs in `i32`, so no intermediate step wraps, and only the
//! result is clamped to `i16`: two loud voices at once clip rather than wrap into noise, and
//! the usual case (one person talking, the others near silence) passes through unchanged.
//! Scaling every input down by the voice count instead would make a lone speaker quieter each
//! time someone joins.

use crate::{FRAME_SAMPLES, Frame};

/// Sums whole frames into one.
#[derive(Debug, Clone)]
pub struct Mixer {
    acc: Box<[i32; FRAME_SAMPLES]>,
    inputs: usize,
}

impl Default for Mixer {
    fn default() -> Self {
        Self::new()
    }
}

impl Mixer {
    /// An empty mix.
    pub fn new() -> Self {
        Self {
            acc: Box::new([0; FRAME_SAMPLES]),
            inputs: 0,
        }
    }

    /// Adds one voice's frame to the mix being built.
    pub fn add(&mut self, frame: &Frame) {
        for (acc, &s) in self.acc.iter_mut().zip(frame) {
            *acc += i32::from(s);
        }
        self.inputs += 1;
    }

    /// Frames added since the last [`finish`](Self::finish).
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Writes the mix, clamped to 16 bits, into `out` (silence when nothing was added) and
    /// starts the next one.
    pub fn finish(&mut self, out: &mut Frame) {
        for (o, acc) in out.iter_mut().zip(self.acc.iter_mut()) {
            *o = (*acc).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            *acc = 0;
        }
        self.inputs = 0;
    }
}

/// RMS of one frame relative to full scale, 0..=1: how loud a voice is right now, for a
/// "who is speaking" display.
pub fn frame_level(frame: &Frame) -> f32 {
    let energy: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    ((energy / FRAME_SAMPLES as f64).sqrt() / 32_768.0).min(1.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(samples: &[i16]) -> Frame {
        let mut f = [0i16; FRAME_SAMPLES];
        f.copy_from_slice(samples);
        f
    }

    #[test]
    fn sums_voices_sample_by_sample() {
        let a = frame_of(&crate::test_tone(FRAME_SAMPLES, 440.0, 4_000.0));
        let b = frame_of(&crate::test_tone(FRAME_SAMPLES, 660.0, 4_000.0));
        let mut mixer = Mixer::new();
        mixer.add(&a);
        mixer.add(&b);
        assert_eq!(mixer.inputs(), 2);
        let mut out = [1i16; FRAME_SAMPLES];
        mixer.finish(&mut out);
        for i in 0..FRAME_SAMPLES {
            assert_eq!(i32::from(out[i]), i32::from(a[i]) + i32::from(b[i]));
        }
        assert_eq!(mixer.inputs(), 0);
    }

    #[test]
    fn a_lone_voice_passes_unchanged_and_nothing_is_silence() {
        let a = frame_of(&crate::test_tone(FRAME_SAMPLES, 440.0, 20_000.0));
        let mut mixer = Mixer::new();
        let mut out = [0i16; FRAME_SAMPLES];
        mixer.add(&a);
        mixer.finish(&mut out);
        assert_eq!(out, a);
        // The previous mix must not leak into the next one.
        mixer.finish(&mut out);
        assert!(out.iter().all(|&s| s == 0));
    }

    #[test]
    fn loud_voices_clip_instead_of_wrapping() {
        let high = [30_000i16; FRAME_SAMPLES];
        let low = [-30_000i16; FRAME_SAMPLES];
        let mut mixer = Mixer::new();
        let mut out = [0i16; FRAME_SAMPLES];
        for _ in 0..8 {
            mixer.add(&high);
        }
        mixer.finish(&mut out);
        assert!(out.iter().all(|&s| s == i16::MAX));
        for _ in 0..8 {
            mixer.add(&low);
        }
        mixer.finish(&mut out);
        assert!(out.iter().all(|&s| s == i16::MIN));
        mixer.add(&high);
        mixer.add(&low);
        mixer.finish(&mut out);
        assert!(out.iter().all(|&s| s == 0));
    }

    #[test]
    fn level_follows_loudness() {
        assert_eq!(frame_level(&[0; FRAME_SAMPLES]), 0.0);
        let full = frame_level(&[i16::MIN; FRAME_SAMPLES]);
        assert!((full - 1.0).abs() < 1e-6, "{full}");
        let tone = frame_of(&crate::test_tone(FRAME_SAMPLES, 1_000.0, 16_384.0));
        // A sine's RMS is its amplitude over √2.
        let level = frame_level(&tone);
        assert!((level - 0.5 / 2f32.sqrt()).abs() < 0.01, "{level}");
    }
}
