//! Conversions from the raw formats cameras deliver (YUYV 4:2:2 and NV12) to [`I420Frame`].
//!
//! Cameras are asked for these two formats rather than MJPEG so no JPEG decoder (and its
//! native build) is needed, and the conversion is a plain reshuffle of bytes. Odd sizes are
//! cropped by one column or row, since I420 needs even sides. Buffers come from a device
//! driver, so their length is checked rather than trusted.

use crate::{I420Frame, VideoError};

fn even(n: u32) -> u32 {
    n & !1
}

fn short(format: &str, width: u32, height: u32, needed: usize, got: usize) -> VideoError {
    VideoError::InvalidFrame(format!(
        "{format} {width}x{height} needs {needed} bytes, got {got}"
    ))
}

/// Converts packed YUYV (Y0 U Y1 V per pixel pair) to I420, averaging the chroma of each pair
/// of rows.
pub fn yuyv_to_i420(width: u32, height: u32, data: &[u8]) -> Result<I420Frame, VideoError> {
    let stride = width as usize * 2;
    let needed = stride * height as usize;
    if data.len() < needed {
        return Err(short("YUYV", width, height, needed, data.len()));
    }
    let (w, h) = (even(width), even(height));
    let mut frame = I420Frame::black(w, h)?;
    let (w, h) = (w as usize, h as usize);
    let (y, u, v) = frame.planes_mut();
    for row in 0..h {
        let src = &data[row * stride..row * stride + w * 2];
        for (dst, px) in y[row * w..(row + 1) * w].iter_mut().zip(src.chunks_exact(2)) {
            *dst = px[0];
        }
    }
    let cw = w / 2;
    for crow in 0..h / 2 {
        let r0 = &data[2 * crow * stride..2 * crow * stride + w * 2];
        let r1 = &data[(2 * crow + 1) * stride..(2 * crow + 1) * stride + w * 2];
        for x in 0..cw {
            let avg = |a: u8, b: u8| (u16::from(a) + u16::from(b)).div_ceil(2) as u8;
            u[crow * cw + x] = avg(r0[4 * x + 1], r1[4 * x + 1]);
            v[crow * cw + x] = avg(r0[4 * x + 3], r1[4 * x + 3]);
        }
    }
    Ok(frame)
}

/// Converts NV12 (a luma plane, then interleaved U/V at half resolution) to I420.
pub fn nv12_to_i420(width: u32, height: u32, data: &[u8]) -> Result<I420Frame, VideoError> {
    let (wf, hf) = (width as usize, height as usize);
    let chroma_stride = wf.div_ceil(2) * 2;
    let needed = wf * hf + chroma_stride * hf.div_ceil(2);
    if data.len() < needed {
        return Err(short("NV12", width, height, needed, data.len()));
    }
    let (w, h) = (even(width) as usize, even(height) as usize);
    let (luma, chroma) = data.split_at(wf * hf);
    let mut u = Vec::with_capacity(w * h / 4);
    let mut v = Vec::with_capacity(w * h / 4);
    for crow in 0..h / 2 {
        for pair in chroma[crow * chroma_stride..crow * chroma_stride + w].chunks_exact(2) {
            u.push(pair[0]);
            v.push(pair[1]);
        }
    }
    I420Frame::from_strided(w as u32, h as u32, [luma, &u, &v], [wf, w / 2, w / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_reshuffles_and_averages_chroma() {
        // 2x2: row 0 = Y 10,20 U 100 V 200; row 1 = Y 30,40 U 110 V 210.
        let data = [10, 100, 20, 200, 30, 110, 40, 210];
        let f = yuyv_to_i420(2, 2, &data).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.y(), &[10, 20, 30, 40]);
        assert_eq!((f.u(), f.v()), (&[105u8][..], &[205u8][..]));
        assert!(yuyv_to_i420(2, 2, &data[..7]).is_err());
    }

    #[test]
    fn nv12_splits_chroma_and_crops_odd_sizes() {
        let mut data = vec![1, 2, 3, 4];
        data.extend([50, 60]);
        let f = nv12_to_i420(2, 2, &data).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (f.y(), f.u(), f.v()),
            (&[1u8, 2, 3, 4][..], &[50u8][..], &[60u8][..])
        );
        // 3x3 → 2x2, reading the right rows of the wider source.
        let mut odd: Vec<u8> = (0..9).collect();
        odd.extend([50, 60, 70, 80, 90, 91, 92, 93]);
        let f = nv12_to_i420(3, 3, &odd).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.y(), &[0, 1, 3, 4]);
        assert_eq!((f.u(), f.v()), (&[50u8][..], &[60u8][..]));
        assert!(nv12_to_i420(4, 4, &[0; 10]).is_err());
    }
}
