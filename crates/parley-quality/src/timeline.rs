//! What the harness observes at the two ends of a call: every frame the caller's engine read
//! from its source and every frame the callee's engine played, each with the instant it
//! happened. The source and sink wrappers here record them; [`crate::analysis`] aligns them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use parley_media::{AudioSink, AudioSource, FRAME_SAMPLES, Frame, MediaError, SourceStatus};

/// Frames with the instant each was captured (source) or played (sink).
#[derive(Debug, Default, Clone)]
pub struct Timeline {
    /// 48 kHz mono PCM, frame after frame.
    pub samples: Vec<i16>,
    /// One instant per frame: when the engine took it from the source or gave it to the sink.
    pub instants: Vec<Instant>,
}

impl Timeline {
    /// Frames recorded.
    pub fn frames(&self) -> usize {
        self.instants.len()
    }

    fn push(&mut self, frame: &Frame) {
        self.samples.extend_from_slice(frame);
        self.instants.push(Instant::now());
    }
}

/// A shared handle to a timeline being recorded by a running call.
pub type SharedTimeline = Arc<Mutex<Timeline>>;

/// Takes a copy of a shared timeline (a poisoned lock still holds usable data).
pub fn snapshot(shared: &SharedTimeline) -> Timeline {
    shared.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// A source that logs every frame it hands out.
pub struct RecordingSource<S> {
    inner: S,
    log: SharedTimeline,
}

impl<S: AudioSource> RecordingSource<S> {
    /// Wraps `inner`; the log is readable through the returned handle while the call runs.
    pub fn new(inner: S) -> (Self, SharedTimeline) {
        let log = SharedTimeline::default();
        (
            RecordingSource {
                inner,
                log: log.clone(),
            },
            log,
        )
    }
}

impl<S: AudioSource> AudioSource for RecordingSource<S> {
    fn read_frame(&mut self, frame: &mut Frame) -> Result<SourceStatus, MediaError> {
        let status = self.inner.read_frame(frame)?;
        if status == SourceStatus::Ready {
            self.log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(frame);
        }
        Ok(status)
    }
}

/// A sink that logs every frame it is given, with its playout instant.
pub struct RecordingSink {
    log: SharedTimeline,
}

impl RecordingSink {
    /// A sink and the handle its log is read through.
    pub fn new() -> (Self, SharedTimeline) {
        let log = SharedTimeline::default();
        (RecordingSink { log: log.clone() }, log)
    }
}

impl AudioSink for RecordingSink {
    fn write_frame(&mut self, frame: &Frame) -> Result<(), MediaError> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(frame);
        Ok(())
    }
}

/// A deterministic speech-like test signal: voiced "syllables" of 120–380 ms with a gliding
/// pitch of 90–260 Hz and its harmonics, under a smooth envelope, separated by pauses. Unlike a
/// tone it never repeats, so a received stretch of it aligns with exactly one sent stretch.
pub fn synthetic_speech(seconds: u32, seed: u64) -> Vec<i16> {
    let rate = parley_media::SAMPLE_RATE as f64;
    let total = seconds as usize * parley_media::SAMPLE_RATE as usize;
    let mut out = Vec::with_capacity(total);
    let mut rng = Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut phase = 0.0f64;
    while out.len() < total {
        let syllable = (0.12 + 0.26 * rng.unit()) * rate;
        let pause = (0.04 + 0.16 * rng.unit()) * rate;
        let f0 = 90.0 + 170.0 * rng.unit();
        let f1 = f0 * (0.8 + 0.4 * rng.unit());
        let level = 0.15 + 0.2 * rng.unit();
        let n = syllable as usize;
        for i in 0..n {
            let t = i as f64 / n as f64;
            let pitch = f0 + (f1 - f0) * t;
            phase += std::f64::consts::TAU * pitch / rate;
            // A few harmonics with falling weights, like a voiced vowel.
            let voiced: f64 = (1..=6).map(|h| (phase * h as f64).sin() / h as f64).sum();
            let envelope = (std::f64::consts::PI * t).sin().powf(0.7);
            let noise = (rng.unit() - 0.5) * 0.05;
            out.push(parley_media::f32_to_i16(
                (level * envelope * (voiced * 0.5 + noise)) as f32,
            ));
        }
        out.extend(std::iter::repeat_n(0i16, pause as usize));
    }
    out.truncate(total);
    // Whole frames only, so the source never has to pad.
    out.truncate(total / FRAME_SAMPLES * FRAME_SAMPLES);
    out
}

struct Lcg(u64);

impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}
