//! Where a video call's pictures come from and how they reach the window.
//!
//! The app asks a [`CallVideo`] for a picture source each time a video call
//! starts (a camera with the `camera` feature, else a test pattern with a
//! note; the tests hand in their own). Pictures travel to the UI thread
//! through a [`VideoPipe`]: the call's video task only parks each picture in
//! a one-picture slot, the conversion to RGBA runs on the runtime's blocking
//! pool, and at most one hand-over per stream waits in the event loop. A
//! picture that arrives while the previous one still waits replaces it, so a
//! slow window shows fewer pictures instead of older ones, and memory stays
//! bounded whatever the frame rate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parley_video::{CapturedFrame, I420Frame, TestPatternSource, VideoError, VideoSource};
use parley_voice::{ShownFrame, VideoSink};
use slint::{Rgba8Pixel, SharedPixelBuffer};

/// An RGBA picture ready for a Slint `Image`.
pub type Picture = SharedPixelBuffer<Rgba8Pixel>;

/// Widest local preview converted: it is drawn a few hundred pixels wide,
/// so a 720p camera picture is thinned out before conversion.
const PREVIEW_MAX_WIDTH: u32 = 480;

/// Most preview pictures per second: the corner view needs no more, and
/// each one costs a copy and a conversion.
const PREVIEW_EVERY: Duration = Duration::from_millis(66);

/// Any picture source a call can send.
pub type BoxedSource = Box<dyn VideoSource + Send>;

/// A picture source opened for one call.
pub struct OpenedVideo {
    /// What the other side sees.
    pub source: BoxedSource,
    /// Shown in the call window when it is not a real camera.
    pub note: Option<String>,
}

/// Opens the picture source of each video call. `open` runs on a worker
/// thread: opening a camera may take a while.
pub trait CallVideo: Send + Sync {
    /// Opens a source, falling back to something synthetic rather than
    /// failing the call.
    fn open(&self) -> OpenedVideo;
}

/// The system's camera (with the `camera` feature), or a moving test
/// pattern.
#[derive(Debug, Clone, Default)]
pub struct DeviceVideo;

impl CallVideo for DeviceVideo {
    fn open(&self) -> OpenedVideo {
        #[cfg(feature = "camera")]
        {
            match parley_video::camera::CameraSource::open(parley_video::camera::CameraConfig::default()) {
                Ok(camera) => {
                    return OpenedVideo {
                        source: Box::new(camera),
                        note: None,
                    };
                }
                Err(e) => tracing::info!("call video: {e}"),
            }
        }
        let note = if cfg!(feature = "camera") {
            "No camera found: the other side sees a test pattern"
        } else {
            "This build has no camera support: the other side sees a test pattern"
        };
        test_pattern(note)
    }
}

/// A 640×360 pattern at 15 fps: enough to show motion without a camera.
fn test_pattern(note: &str) -> OpenedVideo {
    let source: BoxedSource = match TestPatternSource::new(640, 360, 15) {
        Ok(pattern) => Box::new(pattern),
        // The size and rate above are within the pattern's bounds; should
        // that ever change, the call still runs, without pictures.
        Err(e) => {
            tracing::warn!("test pattern: {e}");
            Box::new(NoPictures)
        }
    };
    OpenedVideo {
        source,
        note: Some(note.to_string()),
    }
}

/// A source that never has a picture.
struct NoPictures;

impl VideoSource for NoPictures {
    fn next_frame(&mut self, _now_us: u64) -> Result<Option<CapturedFrame>, VideoError> {
        Ok(None)
    }
}

/// Converts an I420 picture (BT.601, limited range, as H.264 carries it) to
/// RGBA, keeping every `step`-th pixel on both axes (1: full size).
pub fn i420_to_rgba(frame: &I420Frame, step: u32) -> Picture {
    let step = step.max(1) as usize;
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let (out_w, out_h) = (w.div_ceil(step), h.div_ceil(step));
    let (y_plane, u_plane, v_plane) = (frame.y(), frame.u(), frame.v());
    let chroma_w = w / 2;
    let mut picture = Picture::new(out_w as u32, out_h as u32);
    let pixels = picture.make_mut_slice();
    for (oy, row) in pixels.chunks_exact_mut(out_w).enumerate() {
        let y = oy * step;
        let luma = &y_plane[y * w..(y + 1) * w];
        let chroma = (y / 2) * chroma_w;
        for (ox, out) in row.iter_mut().enumerate() {
            let x = ox * step;
            let c = chroma + x / 2;
            *out = yuv_to_rgba(luma[x], u_plane[c], v_plane[c]);
        }
    }
    picture
}

/// One BT.601 limited-range pixel, in 8.8 fixed point.
fn yuv_to_rgba(y: u8, u: u8, v: u8) -> Rgba8Pixel {
    let c = (i32::from(y) - 16) * 298;
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
    Rgba8Pixel {
        r: clamp(c + 409 * e),
        g: clamp(c - 100 * d - 208 * e),
        b: clamp(c + 516 * d),
        a: 255,
    }
}

/// Which of a call's two pictures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The other side's picture.
    Remote,
    /// This device's own picture.
    Preview,
}

/// Counts of a pipe, for the window's figures and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipeCounts {
    /// Remote pictures the call showed.
    pub remote_in: u64,
    /// Remote pictures handed to the UI thread.
    pub remote_out: u64,
    /// Preview pictures handed to the UI thread.
    pub preview_out: u64,
    /// Pictures replaced before they were converted or shown.
    pub dropped: u64,
}

/// What waits for conversion and what waits for the UI thread.
#[derive(Default)]
struct Slots {
    raw: [Option<I420Frame>; 2],
    ready: [Option<Picture>; 2],
    converting: bool,
    /// A hand-over to the event loop is queued for the stream.
    queued: [bool; 2],
}

struct Shared {
    slots: Mutex<Slots>,
    deliver: Box<dyn Fn(Stream, Picture) + Send + Sync>,
    runtime: Option<tokio::runtime::Handle>,
    closed: AtomicBool,
    remote_in: AtomicU64,
    remote_out: AtomicU64,
    preview_out: AtomicU64,
    dropped: AtomicU64,
}

/// Carries a call's pictures to the window; clones share one pipe.
#[derive(Clone)]
pub struct VideoPipe {
    shared: Arc<Shared>,
}

impl VideoPipe {
    /// A pipe whose pictures reach `deliver` on the UI thread (through
    /// `slint::invoke_from_event_loop`), converted on `runtime`'s blocking
    /// pool.
    pub fn new(
        runtime: tokio::runtime::Handle,
        deliver: impl Fn(Stream, Picture) + Send + Sync + 'static,
    ) -> Self {
        VideoPipe {
            shared: Arc::new(Shared {
                slots: Mutex::new(Slots::default()),
                deliver: Box::new(deliver),
                runtime: Some(runtime),
                closed: AtomicBool::new(false),
                remote_in: AtomicU64::new(0),
                remote_out: AtomicU64::new(0),
                preview_out: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Stops delivering: pictures still on their way are dropped.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
    }

    /// The counts so far.
    pub fn counts(&self) -> PipeCounts {
        let s = &self.shared;
        PipeCounts {
            remote_in: s.remote_in.load(Ordering::Relaxed),
            remote_out: s.remote_out.load(Ordering::Relaxed),
            preview_out: s.preview_out.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
        }
    }

    /// A sink for the call that shows the other side's pictures.
    pub fn sink(&self) -> PipeSink {
        PipeSink { pipe: self.clone() }
    }

    /// Wraps the source the call sends so its pictures also show as the
    /// preview while `camera` is on.
    pub fn preview(&self, source: BoxedSource, camera: Arc<AtomicBool>) -> PreviewSource {
        PreviewSource {
            source,
            pipe: self.clone(),
            camera,
            last: None,
        }
    }

    /// Parks a picture for conversion, replacing one not yet converted.
    fn offer(&self, stream: Stream, picture: I420Frame) {
        if self.shared.closed.load(Ordering::Relaxed) {
            return;
        }
        let start = {
            let mut slots = lock(&self.shared.slots);
            if slots.raw[stream as usize].replace(picture).is_some() {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            !std::mem::replace(&mut slots.converting, true)
        };
        if !start {
            return;
        }
        let pipe = self.clone();
        match &self.shared.runtime {
            Some(runtime) => {
                runtime.spawn_blocking(move || pipe.convert_all());
            }
            None => pipe.convert_all(),
        }
    }

    /// Converts parked pictures until none is left.
    fn convert_all(&self) {
        loop {
            let next = {
                let mut slots = lock(&self.shared.slots);
                if self.shared.closed.load(Ordering::Relaxed) {
                    slots.raw = [None, None];
                }
                let next = (0..2).find_map(|i| slots.raw[i].take().map(|p| (i, p)));
                if next.is_none() {
                    slots.converting = false;
                }
                next
            };
            let Some((index, raw)) = next else { return };
            let stream = if index == 0 {
                Stream::Remote
            } else {
                Stream::Preview
            };
            let step = match stream {
                Stream::Remote => 1,
                Stream::Preview => raw.width().div_ceil(PREVIEW_MAX_WIDTH),
            };
            let picture = i420_to_rgba(&raw, step);
            self.hand_over(stream, picture);
        }
    }

    /// Puts a converted picture where the UI thread takes it, queueing a
    /// hand-over unless one is already waiting (which then takes this one).
    fn hand_over(&self, stream: Stream, picture: Picture) {
        let i = stream as usize;
        let queue = {
            let mut slots = lock(&self.shared.slots);
            if slots.ready[i].replace(picture).is_some() {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            !std::mem::replace(&mut slots.queued[i], true)
        };
        if !queue {
            return;
        }
        let pipe = self.clone();
        let queued = slint::invoke_from_event_loop(move || {
            let picture = {
                let mut slots = lock(&pipe.shared.slots);
                slots.queued[i] = false;
                slots.ready[i].take()
            };
            let Some(picture) = picture else { return };
            if pipe.shared.closed.load(Ordering::Relaxed) {
                return;
            }
            let counter = match stream {
                Stream::Remote => &pipe.shared.remote_out,
                Stream::Preview => &pipe.shared.preview_out,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            (pipe.shared.deliver)(stream, picture);
        });
        if queued.is_err() {
            // No event loop any more: nobody is left to show it.
            lock(&self.shared.slots).queued[i] = false;
        }
    }
}

fn lock(slots: &Mutex<Slots>) -> std::sync::MutexGuard<'_, Slots> {
    // The slots hold no invariant a panicking holder could break.
    slots.lock().unwrap_or_else(|e| e.into_inner())
}

/// The call's video sink: each picture goes into the pipe.
pub struct PipeSink {
    pipe: VideoPipe,
}

impl VideoSink for PipeSink {
    fn show(&mut self, picture: &I420Frame, _info: ShownFrame) {
        self.pipe.shared.remote_in.fetch_add(1, Ordering::Relaxed);
        self.pipe.offer(Stream::Remote, picture.clone());
    }
}

/// A source that also shows what it sends as the local preview.
pub struct PreviewSource {
    source: BoxedSource,
    pipe: VideoPipe,
    camera: Arc<AtomicBool>,
    last: Option<Instant>,
}

impl VideoSource for PreviewSource {
    fn next_frame(&mut self, now_us: u64) -> Result<Option<CapturedFrame>, VideoError> {
        let frame = self.source.next_frame(now_us)?;
        if let Some(frame) = &frame
            && self.camera.load(Ordering::Relaxed)
            && self.last.is_none_or(|at| at.elapsed() >= PREVIEW_EVERY)
        {
            self.last = Some(Instant::now());
            self.pipe.offer(Stream::Preview, frame.picture.clone());
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32, y: u8, u: u8, v: u8) -> I420Frame {
        let luma = (w * h) as usize;
        I420Frame::from_planes(w, h, vec![y; luma], vec![u; luma / 4], vec![v; luma / 4]).unwrap()
    }

    fn first(picture: &Picture) -> Rgba8Pixel {
        picture.as_slice()[0]
    }

    #[test]
    fn limited_range_black_white_and_primaries() {
        let black = i420_to_rgba(&frame(4, 2, 16, 128, 128), 1);
        assert_eq!((black.width(), black.height()), (4, 2));
        assert_eq!(
            first(&black),
            Rgba8Pixel {
                r: 0,
                g: 0,
                b: 0,
                a: 255
            }
        );
        let white = first(&i420_to_rgba(&frame(4, 2, 235, 128, 128), 1));
        assert_eq!((white.r, white.g, white.b), (255, 255, 255));
        // BT.601 red: Y 81, Cb 90, Cr 240.
        let red = first(&i420_to_rgba(&frame(4, 2, 81, 90, 240), 1));
        assert!(red.r >= 250 && red.g <= 5 && red.b <= 5, "{red:?}");
        // Out-of-range input clamps instead of wrapping.
        let over = first(&i420_to_rgba(&frame(4, 2, 255, 255, 255), 1));
        assert_eq!(over.r, 255);
    }

    #[test]
    fn chroma_follows_the_two_by_two_blocks() {
        let mut f = frame(4, 4, 128, 128, 128);
        let (_, u, v) = f.planes_mut();
        // The right half of the picture turns blue, the left stays grey.
        u[1] = 240;
        u[3] = 240;
        v[1] = 110;
        v[3] = 110;
        let p = i420_to_rgba(&f, 1);
        let px = p.as_slice();
        assert_eq!(px[0].r, px[0].b);
        assert!(px[2].b > px[2].r + 100);
        assert!(px[4 * 3 + 3].b > px[4 * 3 + 3].r + 100);
    }

    #[test]
    fn thinning_keeps_every_nth_pixel() {
        let p = i420_to_rgba(&frame(1280, 720, 100, 128, 128), 3);
        assert_eq!((p.width(), p.height()), (427, 240));
    }

    #[test]
    fn preview_stops_while_the_camera_is_off() {
        let pipe = VideoPipe {
            shared: Arc::new(Shared {
                slots: Mutex::new(Slots::default()),
                deliver: Box::new(|_, _| {}),
                runtime: None,
                closed: AtomicBool::new(false),
                remote_in: AtomicU64::new(0),
                remote_out: AtomicU64::new(0),
                preview_out: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
        };
        let camera = Arc::new(AtomicBool::new(false));
        let source = TestPatternSource::new(320, 180, 15).unwrap();
        let mut preview = pipe.preview(Box::new(source), camera.clone());
        // Pictures still flow to the call; none is parked for the preview.
        assert!(preview.next_frame(0).unwrap().is_some());
        assert!(lock(&pipe.shared.slots).ready[1].is_none());
        camera.store(true, Ordering::Relaxed);
        assert!(preview.next_frame(200_000).unwrap().is_some());
        assert!(lock(&pipe.shared.slots).ready[1].is_some());
    }
}
