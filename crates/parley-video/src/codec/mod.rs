//! H.264 through OpenH264 (built from the bundled source, so every platform runs the same
//! code), configured the way WebRTC's own OpenH264 wrapper is: Constrained Baseline, bitrate
//! rate control with frame skipping, no periodic keyframes (the receiver asks for one when it
//! needs it), a single slice per picture because the RTP packetizer fragments with FU-A.
//!
//! Bitrate and frame rate change in place through OpenH264's `SetOption`, without a keyframe;
//! a resolution change rebuilds the encoder, which starts with one anyway.
//!
//! [`encoder`] holds the OpenH264 configuration and in-place changes, [`decoder`] the
//! decoder and the Annex-B NAL scanning a receiver needs before decoding.

pub mod decoder;
pub mod encoder;

pub use decoder::{VideoDecoder, is_keyframe, nal_types};
pub use encoder::{EncodedVideoFrame, EncoderSettings, MAX_BITRATE_BPS, MIN_BITRATE_BPS, VideoEncoder};

use crate::VideoError;

fn codec_err(e: openh264::Error) -> VideoError {
    VideoError::Codec(e.to_string())
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::EncoderSettings;
    use crate::TestPatternSource;

    pub fn pattern(w: u32, h: u32) -> TestPatternSource {
        TestPatternSource::new(w, h, 30).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn settings(w: u32, h: u32, bps: u32) -> EncoderSettings {
        EncoderSettings {
            width: w,
            height: h,
            bitrate_bps: bps,
            ..EncoderSettings::default()
        }
    }
}
