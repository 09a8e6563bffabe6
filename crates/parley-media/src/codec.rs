//! Opus at 48 kHz mono in 20 ms frames, configured the way WebRTC voice is: in-band FEC on,
//! DTX off, bitrate and expected loss adjustable during a call.
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
