//! Measurement marks drawn into test-pattern pictures and read back after the full trip
//! (encode, network, decode, maybe a resolution step down): a frame counter and the capture
//! time, so a receiver can measure glass-to-glass latency, frame loss and freezes from the
//! pictures alone, plus a white "flash" picture for A/V sync against an audio beep.
//!
//! The payload is 80 bits (32-bit counter, low 48 bits of the capture time in µs) followed by
//! a CRC-16, drawn as a 12 × 8 grid of black or white cells in the top 8/18 of the picture.
//! Cells scale with the picture (at 320×180 each is about 26×10 pixels) and are read from their
//! centre half only, so the ringing H.264 leaves at cell edges at low bitrate, and the blur of
//! bilinear rescaling, do not change a bit. The CRC turns any misread into "no marks" instead
//! of a wrong number.

use crate::I420Frame;

/// Cells per row of the mark grid.
const COLS: usize = 12;
/// Rows of the mark grid.
const ROWS: usize = 8;
/// The grid covers `ROWS` of this many equal horizontal strips of the picture.
const STRIPS: usize = 18;
/// Luma of a 0 cell and a 1 cell (video range black and white).
const BLACK: u8 = 16;
const WHITE: u8 = 235;
/// Mean luma above which the picture area outside the grid counts as a flash. The moving
/// pattern stays below 170 everywhere, so only a flash frame gets here after compression.
const FLASH_LUMA: u32 = 200;

/// What a test-pattern picture carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    /// Frames produced by the source before this one.
    pub counter: u32,
    /// Capture time in µs (the low 48 bits, about 8.9 years).
    pub timestamp_us: u64,
    /// The picture outside the grid is white: the sync flash.
    pub flash: bool,
}

/// Mask of the capture time bits carried.
pub const TIMESTAMP_MASK: u64 = (1 << 48) - 1;

fn crc16(bytes: &[u8]) -> u16 {
    // CRC-16/CCITT-FALSE: a non-zero initial value, so an all-black grid does not validate.
    let mut crc: u16 = 0xffff;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn payload(counter: u32, timestamp_us: u64) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&counter.to_be_bytes());
    p[4..10].copy_from_slice(&(timestamp_us & TIMESTAMP_MASK).to_be_bytes()[2..]);
    let crc = crc16(&p[..10]);
    p[10..].copy_from_slice(&crc.to_be_bytes());
    p
}

/// Pixel rectangle `[x0, x1) × [y0, y1)` of a grid cell in a picture of the given size.
fn cell(width: usize, height: usize, index: usize) -> (usize, usize, usize, usize) {
    let (row, col) = (index / COLS, index % COLS);
    (
        col * width / COLS,
        (col + 1) * width / COLS,
        row * height / STRIPS,
        (row + 1) * height / STRIPS,
    )
}

/// First luma row below the mark grid.
pub(crate) fn grid_bottom(height: usize) -> usize {
    ROWS * height / STRIPS
}

/// Draws the grid into the top of `frame` (luma and chroma), leaving the rest untouched.
pub fn draw_marks(frame: &mut I420Frame, counter: u32, timestamp_us: u64) {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let bits = payload(counter, timestamp_us);
    let bottom = grid_bottom(h);
    let (y, u, v) = frame.planes_mut();
    for i in 0..COLS * ROWS {
        let bit = bits[i / 8] >> (7 - i % 8) & 1;
        let value = if bit == 1 { WHITE } else { BLACK };
        let (x0, x1, y0, y1) = cell(w, h, i);
        for row in y0..y1 {
            y[row * w + x0..row * w + x1].fill(value);
        }
    }
    // Neutral chroma under the grid: coloured fringes would only cost bits.
    let cw = w / 2;
    let chroma_rows = bottom.div_ceil(2).min(h / 2);
    u[..chroma_rows * cw].fill(128);
    v[..chroma_rows * cw].fill(128);
}

fn mean_luma(y: &[u8], w: usize, (x0, x1, y0, y1): (usize, usize, usize, usize)) -> Option<u32> {
    let mut sum = 0u64;
    let mut n = 0u64;
    for row in y0..y1 {
        for &p in y.get(row * w + x0..row * w + x1)? {
            sum += u64::from(p);
            n += 1;
        }
    }
    (n > 0).then(|| (sum / n) as u32)
}

/// Reads the marks back from a (decoded, possibly rescaled) picture. `None` when the picture
/// carries no valid grid: a different source, or damage the CRC caught.
pub fn read_marks(frame: &I420Frame) -> Option<Marks> {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    // Below this a cell is only a few pixels and compression owns it.
    if w < 96 || h < 72 {
        return None;
    }
    let y = frame.y();
    let mut bits = [0u8; 12];
    for i in 0..COLS * ROWS {
        let (x0, x1, y0, y1) = cell(w, h, i);
        let (qx, qy) = ((x1 - x0) / 4, (y1 - y0) / 4);
        let mean = mean_luma(y, w, (x0 + qx, x1 - qx, y0 + qy, y1 - qy))?;
        if mean > (u32::from(BLACK) + u32::from(WHITE)) / 2 {
            bits[i / 8] |= 1 << (7 - i % 8);
        }
    }
    let crc = u16::from_be_bytes([bits[10], bits[11]]);
    if crc16(&bits[..10]) != crc {
        return None;
    }
    let counter = u32::from_be_bytes([bits[0], bits[1], bits[2], bits[3]]);
    let mut ts = [0u8; 8];
    ts[2..].copy_from_slice(&bits[4..10]);
    // The flash test skips a margin under the grid, where ringing from its edge lands.
    let top = (grid_bottom(h) + h / STRIPS).min(h);
    let flash = mean_luma(y, w, (0, w, top, h)).is_some_and(|m| m > FLASH_LUMA);
    Some(Marks {
        counter,
        timestamp_us: u64::from_be_bytes(ts),
        flash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_on_raw_pictures_of_many_sizes() {
        for (w, h) in [(96, 72), (320, 180), (640, 360), (854, 480), (1280, 720)] {
            let mut f = I420Frame::black(w, h).unwrap_or_else(|e| panic!("{e}"));
            draw_marks(&mut f, 0xdead_beef, 0x1234_5678_9abc);
            assert_eq!(
                read_marks(&f),
                Some(Marks {
                    counter: 0xdead_beef,
                    timestamp_us: 0x1234_5678_9abc,
                    flash: false
                }),
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn timestamp_keeps_only_48_bits() {
        let mut f = I420Frame::black(320, 180).unwrap_or_else(|e| panic!("{e}"));
        draw_marks(&mut f, 1, u64::MAX);
        assert_eq!(read_marks(&f).map(|m| m.timestamp_us), Some(TIMESTAMP_MASK));
    }

    #[test]
    fn unmarked_or_damaged_pictures_read_as_none() {
        let black = I420Frame::black(320, 180).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_marks(&black), None);
        let mut white = black.clone();
        white.planes_mut().0.fill(235);
        assert_eq!(read_marks(&white), None);
        let tiny = I420Frame::black(32, 32).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_marks(&tiny), None);

        // Invert one cell: the CRC must catch it.
        let mut f = black.clone();
        draw_marks(&mut f, 42, 1_000_000);
        let (x0, x1, y0, y1) = cell(320, 180, 20);
        let y = f.planes_mut().0;
        for row in y0..y1 {
            for p in &mut y[row * 320 + x0..row * 320 + x1] {
                *p = if *p > 128 { 16 } else { 235 };
            }
        }
        assert_eq!(read_marks(&f), None);
    }

    #[test]
    fn survives_downscaling() {
        let mut f = I420Frame::black(1280, 720).unwrap_or_else(|e| panic!("{e}"));
        draw_marks(&mut f, 7, 123_456);
        let small = f.scaled(320, 180).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            read_marks(&small).map(|m| (m.counter, m.timestamp_us)),
            Some((7, 123_456))
        );
    }
}
