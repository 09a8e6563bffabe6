//! The OpenH264 encoder: settings, in-place bitrate and frame-rate changes, keyframes on
//! request, and scaling of input that does not match the configured size.

use std::ffi::c_void;
use std::ptr::addr_of_mut;

use openh264::Timestamp;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode,
    UsageType,
};
use openh264::formats::YUVSource;
use openh264_sys2::{
    ENCODER_OPTION_BITRATE, ENCODER_OPTION_FRAME_RATE, ENCODER_OPTION_MAX_BITRATE, SBitrateInfo,
    SPATIAL_LAYER_0, SPATIAL_LAYER_ALL,
};

use super::codec_err;
use crate::{I420Frame, VideoError};

/// Lowest bitrate the encoder is configured with; below this even 180p is a slideshow.
pub const MIN_BITRATE_BPS: u32 = 30_000;
/// Highest bitrate the encoder is configured with (well above 1080p30 needs).
pub const MAX_BITRATE_BPS: u32 = 20_000_000;

/// Encoder settings; all but the size can change without a keyframe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderSettings {
    /// Encoded width in pixels (even). Input frames of another size are scaled to it.
    pub width: u32,
    /// Encoded height in pixels (even).
    pub height: u32,
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// Highest frame rate the rate control plans for; frames offered faster are still encoded
    /// unless the rate control decides to skip them.
    pub max_fps: f32,
    /// Encoder threads; 1 keeps the output byte-for-byte reproducible.
    pub threads: u16,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            width: 640,
            height: 360,
            bitrate_bps: 800_000,
            max_fps: 30.0,
            threads: 1,
        }
    }
}

impl EncoderSettings {
    fn validate(&self) -> Result<(), VideoError> {
        I420Frame::black(self.width, self.height)
            .map_err(|e| VideoError::InvalidConfig(format!("encoder size: {e}")))?;
        if !(MIN_BITRATE_BPS..=MAX_BITRATE_BPS).contains(&self.bitrate_bps) {
            return Err(VideoError::InvalidConfig(format!(
                "bitrate {} bit/s is outside {MIN_BITRATE_BPS}..={MAX_BITRATE_BPS}",
                self.bitrate_bps
            )));
        }
        if !(self.max_fps >= 1.0 && self.max_fps <= 60.0) {
            return Err(VideoError::InvalidConfig(format!(
                "max frame rate {} is outside 1..=60",
                self.max_fps
            )));
        }
        Ok(())
    }
}

/// One encoded picture: an Annex-B access unit (start codes included, SPS/PPS in front of
/// every keyframe), ready for the RTP packetizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedVideoFrame {
    /// The access unit bytes.
    pub data: Vec<u8>,
    /// True for an IDR picture: decodable without any earlier frame.
    pub keyframe: bool,
    /// Encoded width.
    pub width: u32,
    /// Encoded height.
    pub height: u32,
    /// Capture time of the source frame in microseconds, as passed to [`VideoEncoder::encode`].
    pub capture_us: u64,
}

/// H.264 encoder over OpenH264.
pub struct VideoEncoder {
    inner: Encoder,
    settings: EncoderSettings,
    force_keyframe: bool,
    /// OpenH264 initialises on the first frame; before that it refuses every option.
    started: bool,
}

impl std::fmt::Debug for VideoEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoEncoder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Borrowed I420 planes in the shape OpenH264 reads.
struct Planes<'a>(&'a I420Frame);

impl YUVSource for Planes<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width() as usize, self.0.height() as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        let w = self.0.width() as usize;
        (w, w / 2, w / 2)
    }

    fn y(&self) -> &[u8] {
        self.0.y()
    }

    fn u(&self) -> &[u8] {
        self.0.u()
    }

    fn v(&self) -> &[u8] {
        self.0.v()
    }
}

fn build_encoder(settings: &EncoderSettings) -> Result<Encoder, VideoError> {
    let config = EncoderConfig::new()
        .bitrate(BitRate::from_bps(settings.bitrate_bps))
        .max_frame_rate(FrameRate::from_hz(settings.max_fps))
        .rate_control_mode(RateControlMode::Bitrate)
        .usage_type(UsageType::CameraVideoRealTime)
        // Skipping lets the rate control hold the bitrate after a burst (a keyframe) instead of
        // letting the queue in front of the pacer grow.
        .skip_frames(true)
        // Keyframes only on request: a periodic one would cost a burst every few seconds that a
        // receiver with no loss does not need.
        .intra_frame_period(IntraFramePeriod::from_num_frames(0))
        .complexity(Complexity::Low)
        .num_threads(settings.threads);
    Encoder::with_api_config(openh264::OpenH264API::from_source(), config).map_err(codec_err)
}

impl VideoEncoder {
    /// Creates an encoder; the first frame it produces is a keyframe.
    pub fn new(settings: EncoderSettings) -> Result<Self, VideoError> {
        settings.validate()?;
        Ok(Self {
            inner: build_encoder(&settings)?,
            settings,
            force_keyframe: false,
            started: false,
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> EncoderSettings {
        self.settings
    }

    /// Makes the next encoded frame a keyframe (answer to a PLI/FIR from the receiver).
    pub fn force_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    /// Applies new settings. A size change rebuilds the encoder (the next frame is a
    /// keyframe); bitrate and frame rate change in place.
    pub fn apply(&mut self, settings: EncoderSettings) -> Result<(), VideoError> {
        settings.validate()?;
        if !self.started
            || settings.width != self.settings.width
            || settings.height != self.settings.height
            || settings.threads != self.settings.threads
        {
            self.inner = build_encoder(&settings)?;
            self.settings = settings;
            self.started = false;
            return Ok(());
        }
        if settings.bitrate_bps != self.settings.bitrate_bps {
            self.set_option_bitrate(settings.bitrate_bps)?;
        }
        if settings.max_fps != self.settings.max_fps {
            self.set_option_fps(settings.max_fps)?;
        }
        self.settings = settings;
        Ok(())
    }

    /// Sets the target bitrate (bits per second) without a keyframe.
    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), VideoError> {
        self.apply(EncoderSettings {
            bitrate_bps,
            ..self.settings
        })
    }

    /// Changes the encoded size; the next frame is a keyframe.
    pub fn set_resolution(&mut self, width: u32, height: u32) -> Result<(), VideoError> {
        self.apply(EncoderSettings {
            width,
            height,
            ..self.settings
        })
    }

    fn set_option_bitrate(&mut self, bps: u32) -> Result<(), VideoError> {
        let bps =
            i32::try_from(bps).map_err(|_| VideoError::InvalidConfig(format!("bitrate {bps} too large")))?;
        // OpenH264 rejects a target above the layer's maximum, so the ceiling moves first when
        // raising and last when lowering.
        let raising = bps > self.settings.bitrate_bps as i32;
        let mut target = SBitrateInfo {
            iLayer: SPATIAL_LAYER_ALL,
            iBitrate: bps,
        };
        let mut ceiling = SBitrateInfo {
            iLayer: SPATIAL_LAYER_0,
            iBitrate: bps,
        };
        let steps = if raising {
            [
                (ENCODER_OPTION_MAX_BITRATE, addr_of_mut!(ceiling)),
                (ENCODER_OPTION_BITRATE, addr_of_mut!(target)),
            ]
        } else {
            [
                (ENCODER_OPTION_BITRATE, addr_of_mut!(target)),
                (ENCODER_OPTION_MAX_BITRATE, addr_of_mut!(ceiling)),
            ]
        };
        for (option, value) in steps {
            // SAFETY: the encoder has encoded a frame, so OpenH264 is initialised (`apply`
            // rebuilds instead before that); both options read one `SBitrateInfo` that lives
            // on this stack frame for the whole call.
            let rc = unsafe { self.inner.raw_api().set_option(option, value.cast::<c_void>()) };
            if rc != 0 {
                return Err(VideoError::Codec(format!(
                    "setting bitrate {bps} bit/s failed with code {rc}"
                )));
            }
        }
        Ok(())
    }

    fn set_option_fps(&mut self, fps: f32) -> Result<(), VideoError> {
        let mut value = fps;
        // SAFETY: as above; the option reads one `float`.
        let rc = unsafe {
            self.inner
                .raw_api()
                .set_option(ENCODER_OPTION_FRAME_RATE, addr_of_mut!(value).cast::<c_void>())
        };
        if rc != 0 {
            return Err(VideoError::Codec(format!(
                "setting frame rate {fps} failed with code {rc}"
            )));
        }
        Ok(())
    }

    /// Encodes one picture captured at `capture_us`. Returns `None` when the rate control
    /// skipped the frame to stay within the bitrate.
    pub fn encode(
        &mut self,
        frame: &I420Frame,
        capture_us: u64,
    ) -> Result<Option<EncodedVideoFrame>, VideoError> {
        let (w, h) = (self.settings.width, self.settings.height);
        let scaled;
        let input = if frame.width() == w && frame.height() == h {
            frame
        } else {
            scaled = frame.scaled(w, h)?;
            &scaled
        };
        if self.force_keyframe {
            self.inner.force_intra_frame();
            self.force_keyframe = false;
        }
        let stream = self
            .inner
            .encode_at(&Planes(input), Timestamp::from_millis(capture_us / 1_000))
            .map_err(codec_err)?;
        self.started = true;
        let keyframe = match stream.frame_type() {
            FrameType::Skip => return Ok(None),
            FrameType::IDR => true,
            FrameType::I | FrameType::P | FrameType::IPMixed => false,
            FrameType::Invalid => {
                return Err(VideoError::Codec("encoder returned an invalid frame".into()));
            }
        };
        let data = stream.to_vec();
        if data.is_empty() {
            return Ok(None);
        }
        Ok(Some(EncodedVideoFrame {
            data,
            keyframe,
            width: w,
            height: h,
            capture_us,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::VideoDecoder;
    use crate::codec::test_support::{pattern, settings};
    use crate::codec::{is_keyframe, nal_types};
    use crate::source::VideoSource;

    #[test]
    fn round_trip_keeps_size_and_first_frame_is_keyframe() {
        let mut src = pattern(320, 180);
        let mut enc = VideoEncoder::new(settings(320, 180, 300_000)).unwrap_or_else(|e| panic!("{e}"));
        let mut dec = VideoDecoder::new().unwrap_or_else(|e| panic!("{e}"));
        let mut decoded = 0;
        for i in 0..10u64 {
            let now = i * 33_333;
            let Some(frame) = src.next_frame(now).unwrap_or_else(|e| panic!("{e}")) else {
                continue;
            };
            let Some(au) = enc.encode(&frame.picture, now).unwrap_or_else(|e| panic!("{e}")) else {
                continue;
            };
            if decoded == 0 {
                assert!(au.keyframe);
                assert!(is_keyframe(&au.data));
                assert!(nal_types(&au.data).any(|t| t == 7), "SPS before the IDR");
            } else {
                assert!(!au.keyframe);
                assert!(!is_keyframe(&au.data));
            }
            let pic = dec
                .decode(&au.data)
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("no picture for frame {i}"));
            assert_eq!((pic.width(), pic.height()), (320, 180));
            decoded += 1;
        }
        assert!(decoded >= 8);
    }

    #[test]
    fn force_keyframe_and_resolution_change() {
        let mut src = pattern(640, 360);
        let mut enc = VideoEncoder::new(settings(640, 360, 500_000)).unwrap_or_else(|e| panic!("{e}"));
        let mut dec = VideoDecoder::new().unwrap_or_else(|e| panic!("{e}"));
        let mut keyframes = Vec::new();
        let mut sizes = Vec::new();
        for i in 0..30u64 {
            let now = i * 33_333;
            if i == 10 {
                enc.force_keyframe();
            }
            if i == 20 {
                enc.set_resolution(320, 180).unwrap_or_else(|e| panic!("{e}"));
            }
            let Some(frame) = src.next_frame(now).unwrap_or_else(|e| panic!("{e}")) else {
                continue;
            };
            if let Some(au) = enc.encode(&frame.picture, now).unwrap_or_else(|e| panic!("{e}")) {
                if au.keyframe {
                    keyframes.push(i);
                }
                if let Some(pic) = dec.decode(&au.data).unwrap_or_else(|e| panic!("{e}")) {
                    sizes.push((i, pic.width(), pic.height()));
                }
            }
        }
        assert_eq!(keyframes, vec![0, 10, 20]);
        assert!(
            sizes
                .iter()
                .all(|&(i, w, _)| if i < 20 { w == 640 } else { w == 320 })
        );
    }

    #[test]
    fn bitrate_changes_in_place_and_move_the_output_size() {
        let mut src = pattern(640, 360);
        let mut enc = VideoEncoder::new(settings(640, 360, 1_500_000)).unwrap_or_else(|e| panic!("{e}"));
        let mut bytes = [0usize; 2];
        let mut keyframes = 0;
        for i in 0..120u64 {
            let now = i * 33_333;
            if i == 60 {
                enc.set_bitrate(150_000).unwrap_or_else(|e| panic!("{e}"));
            }
            let frame = src
                .next_frame(now)
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("pattern frame {i}"));
            if let Some(au) = enc.encode(&frame.picture, now).unwrap_or_else(|e| panic!("{e}")) {
                keyframes += usize::from(au.keyframe);
                // Measure each half after a second of settling.
                if (30..60).contains(&i) {
                    bytes[0] += au.data.len();
                } else if i >= 90 {
                    bytes[1] += au.data.len();
                }
            }
        }
        assert_eq!(keyframes, 1, "a bitrate change must not cost a keyframe");
        let (high, low) = (bytes[0] * 8, bytes[1] * 8);
        assert!(
            low * 3 < high,
            "1.5 Mbit/s half sent {high} bits, 150 kbit/s half {low}"
        );
        // One second at 150 kbit/s, with generous room for rate-control overshoot.
        assert!(low < 300_000, "sent {low} bits in the 150 kbit/s second");
        // Raising again must be accepted (OpenH264 checks the target against the ceiling).
        enc.set_bitrate(2_000_000).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn settings_are_validated() {
        assert!(VideoEncoder::new(settings(641, 360, 500_000)).is_err());
        assert!(VideoEncoder::new(settings(640, 360, 1_000)).is_err());
        let mut enc = VideoEncoder::new(settings(640, 360, 500_000)).unwrap_or_else(|e| panic!("{e}"));
        assert!(enc.set_bitrate(0).is_err());
        assert_eq!(enc.settings().bitrate_bps, 500_000);
    }

    #[test]
    fn settings_change_before_the_first_frame() {
        let mut src = pattern(320, 180);
        let mut enc = VideoEncoder::new(settings(320, 180, 500_000)).unwrap_or_else(|e| panic!("{e}"));
        enc.set_bitrate(200_000).unwrap_or_else(|e| panic!("{e}"));
        enc.apply(EncoderSettings {
            max_fps: 15.0,
            ..enc.settings()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let frame = src
            .next_frame(0)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("pattern frame"));
        let au = enc
            .encode(&frame.picture, 0)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("first frame skipped"));
        assert!(au.keyframe);
        // After the first frame the same calls go through SetOption.
        enc.set_bitrate(300_000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(enc.settings().bitrate_bps, 300_000);
    }
}
