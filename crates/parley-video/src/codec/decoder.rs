//! The OpenH264 decoder, and the NAL-header scanning that tells a receiver whether an access
//! unit is a keyframe without decoding it.

use openh264::decoder::{Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;

use super::codec_err;
use crate::{I420Frame, VideoError};

/// H.264 decoder over OpenH264: one Annex-B access unit in, at most one picture out.
pub struct VideoDecoder {
    inner: Decoder,
}

impl std::fmt::Debug for VideoDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoDecoder").finish_non_exhaustive()
    }
}

fn build_decoder() -> Result<Decoder, VideoError> {
    // Flush after every access unit: a real-time receiver wants each picture as soon as its
    // last slice arrives, and Constrained Baseline has no reordering to wait for.
    let config = DecoderConfig::new().flush_after_decode(Flush::Flush);
    Decoder::with_api_config(openh264::OpenH264API::from_source(), config).map_err(codec_err)
}

impl VideoDecoder {
    /// Creates a decoder that needs a keyframe (with SPS/PPS) before it produces pictures.
    pub fn new() -> Result<Self, VideoError> {
        Ok(Self {
            inner: build_decoder()?,
        })
    }

    /// Throws away all decoder state, e.g. after repeated corruption.
    pub fn reset(&mut self) -> Result<(), VideoError> {
        self.inner = build_decoder()?;
        Ok(())
    }

    /// Decodes one access unit. `Ok(None)` means it held no picture (only parameter sets);
    /// an error means the bytes were not decodable and the caller should wait for (and ask
    /// for) a keyframe.
    pub fn decode(&mut self, access_unit: &[u8]) -> Result<Option<I420Frame>, VideoError> {
        if access_unit.is_empty() {
            return Err(VideoError::Corrupt("empty access unit".into()));
        }
        if i32::try_from(access_unit.len()).is_err() {
            return Err(VideoError::Corrupt("access unit larger than 2 GiB".into()));
        }
        let picture = match self.inner.decode(access_unit) {
            Ok(Some(picture)) => picture,
            Ok(None) => return Ok(None),
            Err(e) => return Err(VideoError::Corrupt(e.to_string())),
        };
        let (w, h) = picture.dimensions();
        let (sy, su, sv) = picture.strides();
        let (w, h) = (
            u32::try_from(w).map_err(|_| VideoError::Corrupt(format!("width {w}")))?,
            u32::try_from(h).map_err(|_| VideoError::Corrupt(format!("height {h}")))?,
        );
        I420Frame::from_strided(w, h, [picture.y(), picture.u(), picture.v()], [sy, su, sv])
            .map(Some)
            .map_err(|e| VideoError::Corrupt(format!("decoded picture: {e}")))
    }
}

/// True when an Annex-B access unit holds an IDR slice, i.e. a receiver can start decoding
/// there. Looks only at NAL headers, so it is cheap enough to call on every received frame.
pub fn is_keyframe(access_unit: &[u8]) -> bool {
    nal_types(access_unit).any(|t| t == 5)
}

/// NAL unit types (the low five bits of each NAL header) in an Annex-B byte stream.
pub fn nal_types(stream: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        // Find the next 00 00 01 (a four-byte start code ends with the same three bytes).
        while i + 3 < stream.len() {
            if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
                let header = stream[i + 3];
                i += 4;
                return Some(header & 0x1f);
            }
            i += 1;
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::VideoEncoder;
    use crate::codec::test_support::{pattern, settings};
    use crate::source::VideoSource;

    #[test]
    fn decoder_survives_garbage_and_recovers_on_keyframe() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut dec = VideoDecoder::new().unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(dec.decode(&[]), Err(VideoError::Corrupt(_))));
        for round in 0..300 {
            let len = rng.random_range(5..4_000);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Half the rounds look like Annex-B so the NAL parser is exercised, not just the
            // start-code search.
            if round % 2 == 0 {
                bytes[..4].copy_from_slice(&[0, 0, 0, 1]);
                bytes[4] = [0x67, 0x68, 0x65, 0x41][round % 4];
            }
            let _ = dec.decode(&bytes);
        }
        // Corrupted real stream: flip bytes in the middle of encoded frames.
        let mut src = pattern(320, 180);
        let mut enc = VideoEncoder::new(settings(320, 180, 300_000)).unwrap_or_else(|e| panic!("{e}"));
        let mut aus = Vec::new();
        for i in 0..5u64 {
            let frame = src
                .next_frame(i * 33_333)
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("pattern frame {i}"));
            if let Some(au) = enc
                .encode(&frame.picture, i * 33_333)
                .unwrap_or_else(|e| panic!("{e}"))
            {
                aus.push(au.data);
            }
        }
        for au in &aus {
            let mut bad = au.clone();
            let n = bad.len();
            for b in &mut bad[n / 3..n / 3 + n.min(64) / 2] {
                *b ^= rng.random::<u8>();
            }
            let _ = dec.decode(&bad);
            let _ = dec.decode(&au[..n / 2]);
        }
        // A fresh keyframe must still decode.
        dec.reset().unwrap_or_else(|e| panic!("{e}"));
        let pic = dec
            .decode(&aus[0])
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("keyframe decoded to nothing"));
        assert_eq!(pic.width(), 320);
    }

    #[test]
    fn nal_scanner_handles_three_and_four_byte_start_codes() {
        let s = [0, 0, 0, 1, 0x67, 9, 0, 0, 1, 0x68, 0, 0, 1, 0x65, 1];
        assert_eq!(nal_types(&s).collect::<Vec<_>>(), vec![7, 8, 5]);
        assert!(!is_keyframe(&[0, 0, 1]));
        assert!(!is_keyframe(&[]));
    }
}
