//! Opus at 48 kHz mono in 20 ms frames, configured the way WebRTC voice is: in-band FEC on,
//! DTX off, bitrate and expected loss adjustable during a call.
//!
//! [`LossAdapter`] is the policy that moves the encoder's expected loss and bitrate with the
//! loss the far end reports, sans-IO like the rest: reports in, settings out.
//!
//! The decoder side sits behind [`FrameDecoder`] so the jitter buffer can be driven by a fake
//! decoder in property tests, where every decoded frame must be traceable to its packet.

use crate::{FRAME_SAMPLES, MediaError, SAMPLE_RATE};

/// Largest Opus packet for one frame (RFC 6716 §3.4, R2); a bigger payload cannot be valid.
pub const MAX_PACKET_BYTES: usize = 1_275;
/// Longest audio one Opus packet can carry (120 ms), bounding what one decode may produce.
pub const MAX_DECODED_SAMPLES: usize = 5_760;

/// Encoder settings that can change during a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Target bitrate in bits per second (Opus accepts 6 000–510 000).
    pub bitrate_bps: u32,
    /// Loss the encoder should expect, in percent. Above zero, Opus spends bits on in-band FEC
    /// (a low-bitrate copy of the previous frame) in proportion to it.
    pub expected_loss_percent: u8,
    /// Opus complexity 0–10; 10 costs ~2× the CPU of 5 for a small quality gain.
    pub complexity: u8,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        // 32 kbit/s keeps Opus in hybrid mode, where SILK's LBRR (in-band FEC) is available;
        // 10 % expected loss makes it actually emit FEC until the caller reports real figures.
        Self {
            bitrate_bps: 32_000,
            expected_loss_percent: 10,
            complexity: 9,
        }
    }
}

impl EncoderConfig {
    fn validate(&self) -> Result<(), MediaError> {
        if !(6_000..=510_000).contains(&self.bitrate_bps) {
            return Err(MediaError::InvalidConfig(format!(
                "bitrate {} bit/s is outside 6000..=510000",
                self.bitrate_bps
            )));
        }
        if self.expected_loss_percent > 100 {
            return Err(MediaError::InvalidConfig(format!(
                "expected loss {} % is above 100",
                self.expected_loss_percent
            )));
        }
        if self.complexity > 10 {
            return Err(MediaError::InvalidConfig(format!(
                "complexity {} is above 10",
                self.complexity
            )));
        }
        Ok(())
    }
}

/// Opus encoder for 20 ms mono frames at 48 kHz.
pub struct OpusEncoder {
    inner: opus::Encoder,
    config: EncoderConfig,
    out: Vec<u8>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// Creates an encoder in VoIP mode with FEC on and DTX off.
    pub fn new(config: EncoderConfig) -> Result<Self, MediaError> {
        config.validate()?;
        let mut inner = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
        inner.set_inband_fec(true)?;
        // DTX off: a continuous packet stream keeps the receiver's jitter estimate and the NAT
        // bindings alive, and silence costs only a few bytes per frame anyway.
        inner.set_dtx(false)?;
        inner.set_vbr(true)?;
        let mut encoder = Self {
            inner,
            config,
            out: vec![0; MAX_PACKET_BYTES],
        };
        encoder.apply(config)?;
        Ok(encoder)
    }

    /// Changes bitrate, expected loss and complexity without resetting the codec state.
    pub fn apply(&mut self, config: EncoderConfig) -> Result<(), MediaError> {
        config.validate()?;
        self.inner
            .set_bitrate(opus::Bitrate::Bits(config.bitrate_bps as i32))?;
        self.inner
            .set_packet_loss_perc(i32::from(config.expected_loss_percent))?;
        self.inner.set_complexity(i32::from(config.complexity))?;
        self.config = config;
        Ok(())
    }

    /// Sets the target bitrate in bits per second.
    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), MediaError> {
        self.apply(EncoderConfig {
            bitrate_bps,
            ..self.config
        })
    }

    /// Sets the packet loss (percent) the encoder protects against with FEC.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), MediaError> {
        self.apply(EncoderConfig {
            expected_loss_percent: percent,
            ..self.config
        })
    }

    /// The settings in force.
    pub fn config(&self) -> EncoderConfig {
        self.config
    }

    /// Encodes one 20 ms frame into an Opus packet.
    pub fn encode(&mut self, frame: &[i16; FRAME_SAMPLES]) -> Result<Vec<u8>, MediaError> {
        let len = self.inner.encode(frame, &mut self.out)?;
        Ok(self.out[..len.min(self.out.len())].to_vec())
    }
}

/// Bounds and pace of [`LossAdapter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossAdaptConfig {
    /// Lowest bitrate the adapter sets, bit/s.
    pub min_bitrate_bps: u32,
    /// Highest bitrate the adapter sets, bit/s.
    pub max_bitrate_bps: u32,
    /// Expected loss never goes below this, percent: a little FEC stays on even on a clean
    /// link, so the first burst of loss after a quiet spell is already partly covered.
    pub min_loss_percent: u8,
    /// Expected loss never goes above this, percent: past about a quarter of packets lost, the
    /// one-frame FEC copy rarely has its own packet arrive, and more only costs voice quality.
    pub max_loss_percent: u8,
    /// Share of the gap between the expected and the reported loss that remains after each
    /// report once loss falls: 0.9 at one report a second halves the excess in about 7 s.
    pub decay: f32,
    /// Bitrate added per percent of expected loss, as a share of the clean-link bitrate: FEC
    /// takes its bits from the main signal, so libopus advises raising the rate with it.
    pub bitrate_per_loss_percent: f32,
}

impl Default for LossAdaptConfig {
    fn default() -> Self {
        Self {
            min_bitrate_bps: 16_000,
            max_bitrate_bps: 64_000,
            min_loss_percent: 2,
            max_loss_percent: 30,
            decay: 0.9,
            bitrate_per_loss_percent: 0.02,
        }
    }
}

impl LossAdaptConfig {
    fn validate(&self) -> Result<(), MediaError> {
        let bad = |what: String| Err(MediaError::InvalidConfig(what));
        if self.min_bitrate_bps < 6_000
            || self.max_bitrate_bps > 510_000
            || self.min_bitrate_bps > self.max_bitrate_bps
        {
            return bad(format!(
                "adaptive bitrate range {}..={} bit/s (within 6000..=510000)",
                self.min_bitrate_bps, self.max_bitrate_bps
            ));
        }
        if self.min_loss_percent > self.max_loss_percent || self.max_loss_percent > 100 {
            return bad(format!(
                "adaptive loss range {}..={} %",
                self.min_loss_percent, self.max_loss_percent
            ));
        }
        if !(0.0..1.0).contains(&self.decay) {
            return bad(format!("loss decay {}", self.decay));
        }
        if !(0.0..=1.0).contains(&self.bitrate_per_loss_percent) {
            return bad(format!(
                "bitrate per loss percent {}",
                self.bitrate_per_loss_percent
            ));
        }
        Ok(())
    }
}

/// Follows the loss the far end reports for this sender's stream (an RTCP receiver report,
/// about once a second) with the encoder's FEC strength and bitrate.
///
/// Loss is met at once: a report above the current expectation raises it to the reported
/// figure, so FEC covers the very next packets. It is forgotten slowly: below the expectation,
/// each report only takes away a share of the difference, because loss comes in bursts and a
/// clean second between two bursts says little. The bitrate is the clean-link bitrate plus a
/// share per percent of expected loss, within the configured bounds.
#[derive(Debug, Clone)]
pub struct LossAdapter {
    config: LossAdaptConfig,
    base_bitrate_bps: u32,
    expected_loss: f32,
    current: EncoderConfig,
}

impl LossAdapter {
    /// An adapter starting from `initial`, whose bitrate is the one for a clean link and whose
    /// expected loss is the guess until the first report.
    pub fn new(initial: EncoderConfig, config: LossAdaptConfig) -> Result<Self, MediaError> {
        initial.validate()?;
        config.validate()?;
        let expected_loss = f32::from(initial.expected_loss_percent).clamp(
            f32::from(config.min_loss_percent),
            f32::from(config.max_loss_percent),
        );
        let mut adapter = Self {
            config,
            base_bitrate_bps: initial.bitrate_bps,
            expected_loss,
            current: initial,
        };
        adapter.current = adapter.settings();
        Ok(adapter)
    }

    /// The settings the encoder should run with now.
    pub fn current(&self) -> EncoderConfig {
        self.current
    }

    /// Takes one report of the fraction (0..=1) of this sender's packets lost over the last
    /// interval. Returns new settings when they differ from [`current`](Self::current).
    pub fn on_report(&mut self, loss_fraction: f32) -> Option<EncoderConfig> {
        if !loss_fraction.is_finite() {
            return None;
        }
        let min = f32::from(self.config.min_loss_percent);
        let max = f32::from(self.config.max_loss_percent);
        let reported = (loss_fraction * 100.0).clamp(min, max);
        let decayed = reported + (self.expected_loss - reported) * self.config.decay;
        // Geometric decay never quite arrives; the last half percent is dropped so the floor is
        // reached rather than approached for ever.
        self.expected_loss = if reported >= self.expected_loss || decayed - reported < 0.5 {
            reported
        } else {
            decayed
        };
        let next = self.settings();
        if next == self.current {
            return None;
        }
        self.current = next;
        Some(next)
    }

    fn settings(&self) -> EncoderConfig {
        // Rounded up: 0.4 % reported still deserves some FEC.
        let loss_percent = self.expected_loss.ceil().clamp(0.0, 100.0) as u8;
        let boost = 1.0 + f64::from(self.config.bitrate_per_loss_percent) * f64::from(loss_percent);
        let bitrate = (f64::from(self.base_bitrate_bps) * boost).round() as u32;
        // Whole hundreds of bit/s: finer steps would re-tune the encoder on every report.
        let bitrate = (bitrate / 100 * 100).clamp(self.config.min_bitrate_bps, self.config.max_bitrate_bps);
        EncoderConfig {
            bitrate_bps: bitrate,
            expected_loss_percent: loss_percent,
            ..self.current
        }
    }
}

/// What the jitter buffer needs from a decoder. Every method appends to `out` and returns how
/// many samples it appended.
pub trait FrameDecoder {
    /// Decodes a received packet.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, MediaError>;
    /// Rebuilds the lost frame of `samples` samples that precedes `next_payload`, from the FEC
    /// copy carried inside `next_payload`. The caller decodes `next_payload` itself afterwards.
    fn decode_fec(
        &mut self,
        next_payload: &[u8],
        samples: usize,
        out: &mut Vec<i16>,
    ) -> Result<usize, MediaError>;
    /// Invents `samples` samples to cover a frame that never arrived (packet loss concealment).
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> Result<usize, MediaError>;
}

/// Opus decoder for 48 kHz mono.
pub struct OpusDecoder {
    inner: opus::Decoder,
    scratch: Vec<i16>,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// Creates a decoder.
    pub fn new() -> Result<Self, MediaError> {
        Ok(Self {
            inner: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?,
            scratch: vec![0; MAX_DECODED_SAMPLES],
        })
    }

    fn run(
        &mut self,
        payload: &[u8],
        samples: usize,
        fec: bool,
        out: &mut Vec<i16>,
    ) -> Result<usize, MediaError> {
        let want = samples.min(MAX_DECODED_SAMPLES);
        let n = self.inner.decode(payload, &mut self.scratch[..want], fec)?;
        let n = n.min(want);
        out.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }
}

impl FrameDecoder for OpusDecoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, MediaError> {
        if payload.is_empty() || payload.len() > MAX_PACKET_BYTES * 6 {
            return Err(MediaError::UnsupportedFormat(format!(
                "Opus payload of {} bytes",
                payload.len()
            )));
        }
        self.run(payload, MAX_DECODED_SAMPLES, false, out)
    }

    fn decode_fec(
        &mut self,
        next_payload: &[u8],
        samples: usize,
        out: &mut Vec<i16>,
    ) -> Result<usize, MediaError> {
        if next_payload.is_empty() {
            return self.conceal(samples, out);
        }
        self.run(next_payload, samples, true, out)
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> Result<usize, MediaError> {
        self.run(&[], samples, false, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter() -> LossAdapter {
        let initial = EncoderConfig {
            bitrate_bps: 32_000,
            expected_loss_percent: 10,
            complexity: 9,
        };
        LossAdapter::new(initial, LossAdaptConfig::default()).unwrap()
    }

    #[test]
    fn starts_from_the_configured_guess() {
        let a = adapter();
        assert_eq!(a.current().expected_loss_percent, 10);
        assert_eq!(a.current().bitrate_bps, 38_400);
        assert_eq!(a.current().complexity, 9);
    }

    #[test]
    fn loss_is_met_at_once() {
        let mut a = adapter();
        let next = a.on_report(0.18).expect("a change");
        assert_eq!(next.expected_loss_percent, 18);
        assert_eq!(next.bitrate_bps, 43_500);
        assert_eq!(a.current(), next);
        // The same loss again changes nothing.
        assert_eq!(a.on_report(0.18), None);
    }

    #[test]
    fn loss_is_forgotten_slowly_down_to_the_floor() {
        let mut a = adapter();
        a.on_report(0.20);
        let mut history = Vec::new();
        for _ in 0..60 {
            a.on_report(0.0);
            history.push(a.current().expected_loss_percent);
        }
        assert!(history.windows(2).all(|w| w[1] <= w[0]), "{history:?}");
        // One clean second barely moves it; a few seconds halve it; a minute reaches the floor.
        assert_eq!(history[0], 19);
        assert!((9..=12).contains(&history[6]), "{history:?}");
        assert_eq!(*history.last().unwrap(), 2);
        assert_eq!(a.current().bitrate_bps, 33_200);
    }

    #[test]
    fn a_new_burst_interrupts_the_decay() {
        let mut a = adapter();
        a.on_report(0.25);
        for _ in 0..5 {
            a.on_report(0.0);
        }
        assert!(a.current().expected_loss_percent < 20);
        a.on_report(0.22);
        assert_eq!(a.current().expected_loss_percent, 22);
    }

    #[test]
    fn stays_within_bounds() {
        let mut a = adapter();
        a.on_report(1.0);
        assert_eq!(a.current().expected_loss_percent, 30);
        assert_eq!(a.current().bitrate_bps, 51_200);
        let config = LossAdaptConfig {
            max_bitrate_bps: 40_000,
            ..LossAdaptConfig::default()
        };
        let initial = EncoderConfig {
            bitrate_bps: 12_000,
            ..EncoderConfig::default()
        };
        let mut b = LossAdapter::new(initial, config).unwrap();
        assert_eq!(b.current().bitrate_bps, 16_000, "raised to the floor");
        b.on_report(0.5);
        assert_eq!(b.current().bitrate_bps, 19_200);
        let mut c = LossAdapter::new(EncoderConfig::default(), config).unwrap();
        c.on_report(0.5);
        assert_eq!(c.current().bitrate_bps, 40_000, "capped");
    }

    #[test]
    fn nonsense_reports_are_ignored_or_clamped() {
        let mut a = adapter();
        let before = a.current();
        assert_eq!(a.on_report(f32::NAN), None);
        assert_eq!(a.on_report(f32::INFINITY), None);
        assert_eq!(a.current(), before);
        a.on_report(-3.0);
        assert_eq!(a.current().expected_loss_percent, 10, "negative is no loss");
        a.on_report(7.0);
        assert_eq!(a.current().expected_loss_percent, 30);
    }

    #[test]
    fn every_setting_it_makes_is_one_the_encoder_takes() {
        let mut a = adapter();
        let mut encoder = OpusEncoder::new(a.current()).unwrap();
        for loss in [0.0, 0.05, 0.4, 0.01, 0.0, 0.12] {
            if let Some(next) = a.on_report(loss) {
                encoder.apply(next).unwrap();
            }
        }
        assert_eq!(encoder.config(), a.current());
    }

    #[test]
    fn bad_bounds_are_refused() {
        let bad = [
            LossAdaptConfig {
                min_bitrate_bps: 50_000,
                max_bitrate_bps: 40_000,
                ..LossAdaptConfig::default()
            },
            LossAdaptConfig {
                min_loss_percent: 40,
                ..LossAdaptConfig::default()
            },
            LossAdaptConfig {
                decay: 1.0,
                ..LossAdaptConfig::default()
            },
        ];
        for config in bad {
            assert!(
                LossAdapter::new(EncoderConfig::default(), config).is_err(),
                "{config:?}"
            );
        }
    }
}
