//! The one picture type every part of the crate exchanges: tightly packed I420 (YUV 4:2:0,
//! 8 bit, full planes without stride padding), the format cameras are converted to and the
//! format OpenH264 reads and writes.
//!
//! Sizes are even because 4:2:0 chroma covers 2×2 luma blocks; an odd size would need
//! rounding rules that the encoder, decoder and scaler would each have to agree on.

use crate::VideoError;

/// Largest picture side handled (H.264 level 5.2, the ceiling of OpenH264).
pub const MAX_DIMENSION: u32 = 3_840;

/// One uncompressed picture in I420.
#[derive(Clone, PartialEq, Eq)]
pub struct I420Frame {
    width: u32,
    height: u32,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl std::fmt::Debug for I420Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("I420Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

fn check_size(width: u32, height: u32) -> Result<(), VideoError> {
    if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(VideoError::InvalidFrame(format!(
            "{width}x{height}: sides must be even and non-zero"
        )));
    }
    if width.max(height) > MAX_DIMENSION || width.min(height) > 2_160 {
        return Err(VideoError::InvalidFrame(format!(
            "{width}x{height} is larger than 3840x2160"
        )));
    }
    Ok(())
}

impl I420Frame {
    /// A black picture of the given (even, non-zero) size.
    pub fn black(width: u32, height: u32) -> Result<Self, VideoError> {
        check_size(width, height)?;
        let luma = width as usize * height as usize;
        Ok(Self {
            width,
            height,
            // Video-range black: Y 16, neutral chroma.
            y: vec![16; luma],
            u: vec![128; luma / 4],
            v: vec![128; luma / 4],
        })
    }

    /// Wraps existing planes; each must have exactly the packed length for the size.
    pub fn from_planes(
        width: u32,
        height: u32,
        y: Vec<u8>,
        u: Vec<u8>,
        v: Vec<u8>,
    ) -> Result<Self, VideoError> {
        check_size(width, height)?;
        let luma = width as usize * height as usize;
        if y.len() != luma || u.len() != luma / 4 || v.len() != luma / 4 {
            return Err(VideoError::InvalidFrame(format!(
                "{width}x{height} needs planes of {luma}/{}/{} bytes, got {}/{}/{}",
                luma / 4,
                luma / 4,
                y.len(),
                u.len(),
                v.len()
            )));
        }
        Ok(Self {
            width,
            height,
            y,
            u,
            v,
        })
    }

    /// Copies planes that carry row padding (strides), as decoders and cameras hand them out.
    /// Fails rather than reading past a plane when the strides do not fit the buffers.
    pub fn from_strided(
        width: u32,
        height: u32,
        planes: [&[u8]; 3],
        strides: [usize; 3],
    ) -> Result<Self, VideoError> {
        check_size(width, height)?;
        let (w, h) = (width as usize, height as usize);
        let copy = |plane: &[u8], stride: usize, pw: usize, ph: usize| -> Result<Vec<u8>, VideoError> {
            if stride < pw {
                return Err(VideoError::InvalidFrame(format!(
                    "stride {stride} is narrower than the row of {pw}"
                )));
            }
            let mut out = Vec::with_capacity(pw * ph);
            for row in 0..ph {
                let start = row * stride;
                let line = plane.get(start..start + pw).ok_or_else(|| {
                    VideoError::InvalidFrame(format!(
                        "plane of {} bytes is too short for {ph} rows of stride {stride}",
                        plane.len()
                    ))
                })?;
                out.extend_from_slice(line);
            }
            Ok(out)
        };
        Ok(Self {
            width,
            height,
            y: copy(planes[0], strides[0], w, h)?,
            u: copy(planes[1], strides[1], w / 2, h / 2)?,
            v: copy(planes[2], strides[2], w / 2, h / 2)?,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The luma plane, `width × height` bytes, row by row.
    pub fn y(&self) -> &[u8] {
        &self.y
    }

    /// The blue-difference chroma plane, `width/2 × height/2` bytes.
    pub fn u(&self) -> &[u8] {
        &self.u
    }

    /// The red-difference chroma plane, `width/2 × height/2` bytes.
    pub fn v(&self) -> &[u8] {
        &self.v
    }

    /// Mutable access to the three planes, for sources that draw in place.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        (&mut self.y, &mut self.u, &mut self.v)
    }

    /// The frame resampled to another size (bilinear). Used when the rate controller steps the
    /// send resolution down while the camera keeps capturing at its own size.
    pub fn scaled(&self, width: u32, height: u32) -> Result<Self, VideoError> {
        check_size(width, height)?;
        if width == self.width && height == self.height {
            return Ok(self.clone());
        }
        let (sw, sh) = (self.width as usize, self.height as usize);
        let (dw, dh) = (width as usize, height as usize);
        Ok(Self {
            width,
            height,
            y: resample(&self.y, sw, sh, dw, dh),
            u: resample(&self.u, sw / 2, sh / 2, dw / 2, dh / 2),
            v: resample(&self.v, sw / 2, sh / 2, dw / 2, dh / 2),
        })
    }
}

/// Bilinear resampling in 16.16 fixed point, sampling at pixel centres so that scaling keeps
/// the picture aligned (a mark drawn at 25 % of the width stays at 25 %).
fn resample(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<u8> {
    let mut out = vec![0u8; dw * dh];
    if sw == 0 || sh == 0 {
        return out;
    }
    // Source coordinate of a destination centre: (d + 0.5) * s / d_len - 0.5, in 16.16.
    let map = |d: usize, s_len: usize, d_len: usize| -> (usize, usize, u32) {
        let pos = ((2 * d as i64 + 1) * s_len as i64 * 65_536 / (2 * d_len as i64)) - 32_768;
        let pos = pos.clamp(0, (s_len as i64 - 1) * 65_536);
        let i0 = (pos >> 16) as usize;
        let i1 = (i0 + 1).min(s_len - 1);
        (i0, i1, (pos & 0xffff) as u32)
    };
    let cols: Vec<(usize, usize, u32)> = (0..dw).map(|x| map(x, sw, dw)).collect();
    for yd in 0..dh {
        let (y0, y1, fy) = map(yd, sh, dh);
        let (r0, r1) = (&src[y0 * sw..(y0 + 1) * sw], &src[y1 * sw..(y1 + 1) * sw]);
        let row = &mut out[yd * dw..(yd + 1) * dw];
        for (dst, &(x0, x1, fx)) in row.iter_mut().zip(&cols) {
            let top = u32::from(r0[x0]) * (65_536 - fx) + u32::from(r0[x1]) * fx;
            let bottom = u32::from(r1[x0]) * (65_536 - fx) + u32::from(r1[x1]) * fx;
            let v = (u64::from(top) * u64::from(65_536 - fy) + u64::from(bottom) * u64::from(fy) + (1 << 31))
                >> 32;
            *dst = v.min(255) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_odd_and_empty_sizes() {
        assert!(I420Frame::black(0, 2).is_err());
        assert!(I420Frame::black(3, 2).is_err());
        assert!(I420Frame::black(4096, 4096).is_err());
        assert!(I420Frame::black(640, 360).is_ok());
    }

    #[test]
    fn from_planes_checks_lengths() {
        assert!(I420Frame::from_planes(4, 2, vec![0; 8], vec![0; 2], vec![0; 2]).is_ok());
        assert!(I420Frame::from_planes(4, 2, vec![0; 7], vec![0; 2], vec![0; 2]).is_err());
    }

    #[test]
    fn from_strided_drops_padding_and_rejects_short_planes() {
        let y = [1, 2, 3, 4, 9, 9, 5, 6, 7, 8, 9, 9];
        let f = I420Frame::from_strided(4, 2, [&y, &[1, 2, 9], &[3, 4, 9]], [6, 3, 3])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.y(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(f.u(), &[1, 2]);
        assert!(I420Frame::from_strided(4, 2, [&y[..8], &[1, 2], &[3, 4]], [6, 3, 3]).is_err());
    }

    #[test]
    fn scaling_keeps_flat_areas_and_proportions() {
        let mut f = I420Frame::black(64, 32).unwrap_or_else(|e| panic!("{e}"));
        // Right half white.
        for row in f.planes_mut().0.chunks_mut(64) {
            row[32..].fill(235);
        }
        let s = f.scaled(32, 16).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.y()[0], 16);
        assert_eq!(s.y()[31], 235);
        assert_eq!(s.y()[8 * 32 + 8], 16);
        assert_eq!(s.y()[8 * 32 + 24], 235);
        let up = f.scaled(128, 64).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(up.y()[10 * 128 + 20], 16);
        assert_eq!(up.y()[10 * 128 + 100], 235);
    }
}
