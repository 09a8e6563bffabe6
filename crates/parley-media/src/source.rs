//! Where outgoing PCM comes from: synthetic sources for tests and bots, WAV files, and (in
//! [`crate::device`]) microphones. Every source hands out whole 20 ms frames at 48 kHz mono.

use std::path::Path;

use crate::{FRAME_SAMPLES, Frame, MediaError, SAMPLE_RATE, f32_to_i16};

/// Longest WAV file a [`WavSource`] loads (10 minutes at 48 kHz), so a hostile or mistaken file
/// cannot exhaust memory.
pub const MAX_WAV_SECONDS: u32 = 600;

/// What a source did when asked for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// The frame was filled.
    Ready,
    /// Nothing to hand out yet (a device has not captured 20 ms since the last call); the frame
    /// is untouched. Ask again later.
    NotReady,
    /// The source is finished (end of a file); the frame is untouched.
    Ended,
}

/// A producer of 20 ms frames of 48 kHz mono PCM.
pub trait AudioSource {
    /// Fills `frame` with the next 20 ms of audio.
    fn read_frame(&mut self, frame: &mut Frame) -> Result<SourceStatus, MediaError>;

    /// Fills `frame` with the next 20 ms as floats in [-1, 1].
    fn read_frame_f32(&mut self, frame: &mut [f32; FRAME_SAMPLES]) -> Result<SourceStatus, MediaError> {
        let mut pcm = [0i16; FRAME_SAMPLES];
        let status = self.read_frame(&mut pcm)?;
        if status == SourceStatus::Ready {
            for (dst, src) in frame.iter_mut().zip(pcm) {
                *dst = crate::i16_to_f32(src);
            }
        }
        Ok(status)
    }
}

/// A sine wave of fixed frequency and amplitude that never ends; phase carries across frames so
/// the tone is continuous, which is what lets a receiver's frequency and gap checks be exact.
#[derive(Debug, Clone)]
pub struct ToneSource {
    step: f64,
    phase: f64,
    amplitude: f64,
}

impl ToneSource {
    /// A tone at `frequency_hz` (below the Nyquist limit of 24 kHz) with `amplitude` in [0, 1].
    pub fn new(frequency_hz: f64, amplitude: f64) -> Result<Self, MediaError> {
        if !(frequency_hz > 0.0 && frequency_hz < f64::from(SAMPLE_RATE) / 2.0) {
            return Err(MediaError::InvalidConfig(format!(
                "tone frequency {frequency_hz} Hz"
            )));
        }
        if !(0.0..=1.0).contains(&amplitude) {
            return Err(MediaError::InvalidConfig(format!("tone amplitude {amplitude}")));
        }
        Ok(Self {
            step: std::f64::consts::TAU * frequency_hz / f64::from(SAMPLE_RATE),
            phase: 0.0,
            amplitude,
        })
    }
}

impl AudioSource for ToneSource {
    fn read_frame(&mut self, frame: &mut Frame) -> Result<SourceStatus, MediaError> {
        for sample in frame.iter_mut() {
            *sample = f32_to_i16((self.phase.sin() * self.amplitude) as f32);
            self.phase = (self.phase + self.step) % std::f64::consts::TAU;
        }
        Ok(SourceStatus::Ready)
    }
}

/// Digital silence forever.
#[derive(Debug, Clone, Copy, Default)]
pub struct SilenceSource;

impl AudioSource for SilenceSource {
    fn read_frame(&mut self, frame: &mut Frame) -> Result<SourceStatus, MediaError> {
        frame.fill(0);
        Ok(SourceStatus::Ready)
    }
}

/// A WAV file (16/24/32-bit integer or 32-bit float, any channel count, any rate), downmixed to
/// mono and linearly resampled to 48 kHz when needed. The file is read whole at open, up to
/// [`MAX_WAV_SECONDS`], so playback never blocks on the disk.
#[derive(Debug, Clone)]
pub struct WavSource {
    samples: Vec<i16>,
    position: usize,
    looping: bool,
}

impl WavSource {
    /// Opens and decodes `path`. With `looping`, the file restarts instead of ending.
    pub fn open(path: impl AsRef<Path>, looping: bool) -> Result<Self, MediaError> {
        let path = path.as_ref();
        let wav_err = |source| MediaError::Wav {
            path: path.to_path_buf(),
            source,
        };
        let reader = hound::WavReader::open(path).map_err(wav_err)?;
        let spec = reader.spec();
        if spec.channels == 0 || spec.sample_rate == 0 {
            return Err(MediaError::UnsupportedFormat(format!(
                "{}: {} channels at {} Hz",
                path.display(),
                spec.channels,
                spec.sample_rate
            )));
        }
        let frames = u64::from(reader.duration());
        if frames > u64::from(MAX_WAV_SECONDS) * u64::from(spec.sample_rate) {
            return Err(MediaError::UnsupportedFormat(format!(
                "{} is longer than {MAX_WAV_SECONDS} s",
                path.display()
            )));
        }
        let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Float, 32) => reader
                .into_samples::<f32>()
                .collect::<Result<_, _>>()
                .map_err(wav_err)?,
            (hound::SampleFormat::Int, bits @ 8..=32) => {
                let scale = 2f32.powi(i32::from(bits) - 1);
                reader
                    .into_samples::<i32>()
                    .map(|s| s.map(|v| v as f32 / scale))
                    .collect::<Result<_, _>>()
                    .map_err(wav_err)?
            }
            (format, bits) => {
                return Err(MediaError::UnsupportedFormat(format!(
                    "{}: {bits}-bit {format:?} samples",
                    path.display()
                )));
            }
        };
        let mono = downmix(&interleaved, usize::from(spec.channels));
        let resampled = resample_linear(&mono, spec.sample_rate, SAMPLE_RATE);
        Ok(Self {
            samples: resampled.into_iter().map(f32_to_i16).collect(),
            position: 0,
            looping,
        })
    }

    /// A source over PCM already in memory (48 kHz mono).
    pub fn from_samples(samples: Vec<i16>, looping: bool) -> Self {
        Self {
            samples,
            position: 0,
            looping,
        }
    }

    /// Length of the audio in samples at 48 kHz.
    pub fn len_samples(&self) -> usize {
        self.samples.len()
    }
}

impl AudioSource for WavSource {
    fn read_frame(&mut self, frame: &mut Frame) -> Result<SourceStatus, MediaError> {
        if self.samples.is_empty() || (self.position >= self.samples.len() && !self.looping) {
            return Ok(SourceStatus::Ended);
        }
        for sample in frame.iter_mut() {
            if self.position >= self.samples.len() {
                if !self.looping {
                    // Pad the last partial frame: a frame is always whole.
                    *sample = 0;
                    continue;
                }
                self.position = 0;
            }
            *sample = self.samples[self.position];
            self.position += 1;
        }
        Ok(SourceStatus::Ready)
    }
}

/// Averages interleaved channels into one.
pub(crate) fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return interleaved.to_vec();
    }
    interleaved
        .chunks_exact(channels)
        .map(|c| c.iter().sum::<f32>() / channels as f32)
        .collect()
}

/// Linear-interpolation resampling. Not studio quality (no anti-alias filter when going down),
/// but enough for test fixtures and voice prompts; devices are opened at 48 kHz instead.
pub(crate) fn resample_linear(input: &[f32], from_hz: u32, to_hz: u32) -> Vec<f32> {
    if from_hz == to_hz || input.is_empty() {
        return input.to_vec();
    }
    let out_len = (input.len() as u64 * u64::from(to_hz) / u64::from(from_hz)) as usize;
    let ratio = f64::from(from_hz) / f64::from(to_hz);
    (0..out_len)
        .map(|i| {
            let pos = i as f64 * ratio;
            let idx = pos as usize;
            let frac = (pos - idx as f64) as f32;
            let a = input.get(idx).copied().unwrap_or(0.0);
            let b = input.get(idx + 1).copied().unwrap_or(a);
            a + (b - a) * frac
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_is_continuous_across_frames() {
        let mut tone = ToneSource::new(1_000.0, 0.5).unwrap();
        let mut a = [0i16; FRAME_SAMPLES];
        let mut b = [0i16; FRAME_SAMPLES];
        tone.read_frame(&mut a).unwrap();
        tone.read_frame(&mut b).unwrap();
        // 1 kHz at 48 kHz moves ~4 % of full scale per sample at amplitude 0.5.
        let jump = (i32::from(b[0]) - i32::from(a[FRAME_SAMPLES - 1])).abs();
        assert!(jump < 2_500, "discontinuity of {jump}");
        assert!(a.iter().any(|&s| s > 16_000));
    }

    #[test]
    fn rejects_bad_tone_settings() {
        assert!(ToneSource::new(30_000.0, 0.5).is_err());
        assert!(ToneSource::new(440.0, 1.5).is_err());
    }

    #[test]
    fn resampling_keeps_duration() {
        let input = vec![0.0f32; 44_100];
        assert_eq!(resample_linear(&input, 44_100, 48_000).len(), 48_000);
        assert_eq!(downmix(&[1.0, 0.0, 0.5, 0.5], 2), vec![0.5, 0.5]);
    }
}
