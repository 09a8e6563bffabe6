//! Where outgoing pictures come from: a synthetic test pattern for tests, bots and quality
//! measurements, and (in `camera`, behind the `camera` feature) real cameras. Sources are
//! polled with the current time and hand out at most one picture per call, so a test drives
//! them in simulated time.

use crate::marks::{draw_marks, grid_bottom};
use crate::{I420Frame, VideoError};

/// A picture and the time it was captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    /// The picture.
    pub picture: I420Frame,
    /// Capture time in µs on the caller's clock.
    pub capture_us: u64,
}

/// A producer of pictures.
pub trait VideoSource {
    /// The next picture if one is due (or was captured) at `now_us`, else `None`. Calls with
    /// a time earlier than a previous call are treated as that previous time.
    fn next_frame(&mut self, now_us: u64) -> Result<Option<CapturedFrame>, VideoError>;
}

/// Largest test-pattern size: 1280×720.
pub const MAX_PATTERN_WIDTH: u32 = 1_280;
/// See [`MAX_PATTERN_WIDTH`].
pub const MAX_PATTERN_HEIGHT: u32 = 720;

/// A moving synthetic picture carrying [`crate::marks`]: frame counter, capture time, and a
/// white flash every `flash_period` that pairs with an audio beep for A/V sync measurement.
///
/// The flash is the first frame captured at or after each multiple of the period (starting
/// at time 0), so an audio source beeping at the same multiples lines up with it.
#[derive(Debug, Clone)]
pub struct TestPatternSource {
    width: u32,
    height: u32,
    interval_us: u64,
    flash_period_us: u64,
    counter: u32,
    next_due_us: u64,
    last_capture_us: Option<u64>,
    canvas: I420Frame,
}

impl TestPatternSource {
    /// A pattern of `width × height` (even, up to 1280×720) at `fps` (1–30), flashing every
    /// 5 seconds.
    pub fn new(width: u32, height: u32, fps: u32) -> Result<Self, VideoError> {
        if width > MAX_PATTERN_WIDTH || height > MAX_PATTERN_HEIGHT || width < 96 || height < 72 {
            return Err(VideoError::InvalidConfig(format!(
                "test pattern {width}x{height} is outside 96x72..=1280x720"
            )));
        }
        if !(1..=30).contains(&fps) {
            return Err(VideoError::InvalidConfig(format!(
                "test pattern rate {fps} fps is outside 1..=30"
            )));
        }
        let canvas = I420Frame::black(width, height).map_err(|e| VideoError::InvalidConfig(e.to_string()))?;
        Ok(Self {
            width,
            height,
            interval_us: 1_000_000 / u64::from(fps),
            flash_period_us: 5_000_000,
            counter: 0,
            next_due_us: 0,
            last_capture_us: None,
            canvas,
        })
    }

    /// Sets the flash period in µs (at least one frame interval); 0 turns flashes off.
    pub fn with_flash_period(mut self, period_us: u64) -> Self {
        self.flash_period_us = if period_us == 0 {
            0
        } else {
            period_us.max(self.interval_us)
        };
        self
    }

    /// Time between frames in µs.
    pub fn interval_us(&self) -> u64 {
        self.interval_us
    }

    fn is_flash(&self, capture_us: u64) -> bool {
        if self.flash_period_us == 0 {
            return false;
        }
        match self.last_capture_us {
            None => capture_us % self.flash_period_us < self.interval_us,
            Some(prev) => capture_us / self.flash_period_us > prev / self.flash_period_us,
        }
    }

    fn draw(&mut self, capture_us: u64, flash: bool) {
        let (w, h) = (self.width as usize, self.height as usize);
        let t = self.counter as usize;
        let top = grid_bottom(h);
        let (y, u, v) = self.canvas.planes_mut();
        if flash {
            y[top * w..].fill(235);
            u[top / 2 * (w / 2)..].fill(128);
            v[top / 2 * (w / 2)..].fill(128);
        } else {
            // Diagonal bands scrolling at 4 px/frame plus a bright box crossing the picture:
            // enough motion that P frames carry real residual, luma kept within 40..=170 so
            // no part of it reads as a flash.
            let box_w = (w / 8).max(8);
            let box_x = (t * 6) % (w - box_w);
            let box_y0 = top + (h - top) / 4;
            let box_y1 = box_y0 + (h - top) / 3;
            for row in top..h {
                let line = &mut y[row * w..(row + 1) * w];
                for (x, p) in line.iter_mut().enumerate() {
                    *p = 40 + ((x + row / 2 + t * 4) % 96) as u8;
                }
                if (box_y0..box_y1).contains(&row) {
                    line[box_x..box_x + box_w].fill(170);
                }
            }
            let cw = w / 2;
            for row in top / 2..h / 2 {
                for x in 0..cw {
                    u[row * cw + x] = 96 + ((x + t) % 64) as u8;
                    v[row * cw + x] = 96 + ((row + t * 2) % 64) as u8;
                }
            }
        }
        draw_marks(&mut self.canvas, self.counter, capture_us);
    }
}

impl VideoSource for TestPatternSource {
    fn next_frame(&mut self, now_us: u64) -> Result<Option<CapturedFrame>, VideoError> {
        let now_us = now_us.max(self.last_capture_us.unwrap_or(0));
        if now_us < self.next_due_us {
            return Ok(None);
        }
        let flash = self.is_flash(now_us);
        self.draw(now_us, flash);
        self.last_capture_us = Some(now_us);
        self.counter = self.counter.wrapping_add(1);
        // Keep a steady cadence when polled slightly late, but never burst to catch up after
        // a long stall: a camera would have dropped those frames too.
        self.next_due_us += self.interval_us;
        if self.next_due_us <= now_us {
            self.next_due_us = now_us + self.interval_us;
        }
        Ok(Some(CapturedFrame {
            picture: self.canvas.clone(),
            capture_us: now_us,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{EncoderSettings, VideoDecoder, VideoEncoder};
    use crate::marks::read_marks;

    #[test]
    fn paces_frames_at_the_configured_rate() {
        let mut src = TestPatternSource::new(320, 180, 30).unwrap_or_else(|e| panic!("{e}"));
        let mut count = 0;
        // Polled every 5 ms for one second.
        for t in (0..1_000_000).step_by(5_000) {
            if src.next_frame(t).unwrap_or_else(|e| panic!("{e}")).is_some() {
                count += 1;
            }
        }
        assert_eq!(count, 30);
        assert!(TestPatternSource::new(1920, 1080, 30).is_err());
        assert!(TestPatternSource::new(1280, 720, 60).is_err());
        assert!(TestPatternSource::new(1280, 720, 30).is_ok());
    }

    #[test]
    fn flashes_once_per_period_and_marks_read_back() {
        let mut src = TestPatternSource::new(320, 180, 30)
            .unwrap_or_else(|e| panic!("{e}"))
            .with_flash_period(1_000_000);
        let mut flashes = Vec::new();
        for i in 0..100u64 {
            let t = i * 33_334;
            let Some(f) = src.next_frame(t).unwrap_or_else(|e| panic!("{e}")) else {
                continue;
            };
            let m = read_marks(&f.picture).unwrap_or_else(|| panic!("marks of frame {i}"));
            assert_eq!(m.counter as u64, i);
            assert_eq!(m.timestamp_us, t);
            if m.flash {
                flashes.push(t);
            }
        }
        // The first frame at or after 0 s, 1 s, 2 s and 3 s.
        assert_eq!(flashes, vec![0, 1_000_020, 2_000_040, 3_000_060]);
    }

    /// The marks must survive the real trip at a bitrate well below what the size needs,
    /// including a flash frame (a scene cut the rate control has to absorb).
    #[test]
    fn marks_survive_h264_at_low_bitrate() {
        for (w, h, bps) in [(320, 180, 80_000), (640, 360, 150_000), (1280, 720, 300_000)] {
            let mut src = TestPatternSource::new(w, h, 30)
                .unwrap_or_else(|e| panic!("{e}"))
                .with_flash_period(500_000);
            let settings = EncoderSettings {
                width: w,
                height: h,
                bitrate_bps: bps,
                ..EncoderSettings::default()
            };
            let mut enc = VideoEncoder::new(settings).unwrap_or_else(|e| panic!("{e}"));
            let mut dec = VideoDecoder::new().unwrap_or_else(|e| panic!("{e}"));
            let (mut decoded, mut read, mut flashes) = (0, 0, 0);
            for i in 0..45u64 {
                let t = i * 33_334;
                let Some(f) = src.next_frame(t).unwrap_or_else(|e| panic!("{e}")) else {
                    continue;
                };
                let Some(au) = enc.encode(&f.picture, t).unwrap_or_else(|e| panic!("{e}")) else {
                    continue;
                };
                let Some(pic) = dec.decode(&au.data).unwrap_or_else(|e| panic!("{e}")) else {
                    continue;
                };
                decoded += 1;
                if let Some(m) = read_marks(&pic) {
                    assert_eq!(m.timestamp_us, t, "{w}x{h} frame {i}");
                    assert_eq!(m.counter as u64, i);
                    read += 1;
                    flashes += usize::from(m.flash);
                }
            }
            // At these rates the rate control skips frames, at 720p most of them.
            assert!(
                decoded >= 10,
                "{w}x{h}: only {decoded} frames survived rate control"
            );
            assert_eq!(read, decoded, "{w}x{h}: marks lost in {} frames", decoded - read);
            assert!(flashes >= 1, "{w}x{h}: no flash seen");
        }
    }

    #[test]
    fn late_polls_do_not_burst() {
        let mut src = TestPatternSource::new(320, 180, 10).unwrap_or_else(|e| panic!("{e}"));
        assert!(src.next_frame(0).unwrap_or_else(|e| panic!("{e}")).is_some());
        // A 1 s stall yields one frame, then the cadence resumes from there.
        assert!(
            src.next_frame(1_000_000)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_some()
        );
        assert!(
            src.next_frame(1_050_000)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        assert!(
            src.next_frame(1_100_000)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_some()
        );
        // Time going backwards is clamped, not a panic.
        assert!(src.next_frame(5).unwrap_or_else(|e| panic!("{e}")).is_none());
    }
}
