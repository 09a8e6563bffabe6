//! Real cameras through nokhwa (V4L2 on Linux, Media Foundation on Windows, AVFoundation on
//! macOS), behind the `camera` feature.
//!
//! nokhwa's `Camera::frame` blocks until the device delivers, which does not fit a polled
//! [`VideoSource`]. A capture thread owns the device (it need not be `Send`, so it is also
//! opened there), converts each frame to I420 and leaves the newest one in a slot; polling
//! takes it. A frame that nobody took before the next one arrived is replaced, never queued:
//! late video is worth less than no video.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nokhwa::Camera;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};

use crate::convert::{nv12_to_i420, yuyv_to_i420};
use crate::source::{CapturedFrame, VideoSource};
use crate::{I420Frame, VideoError};

/// Which camera to open and what to ask it for; the device picks the closest mode it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraConfig {
    /// Device index (0 is the first camera).
    pub index: u32,
    /// Wanted width.
    pub width: u32,
    /// Wanted height.
    pub height: u32,
    /// Wanted frame rate.
    pub fps: u32,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            index: 0,
            width: 1_280,
            height: 720,
            fps: 30,
        }
    }
}

/// Names of the cameras present, in index order.
pub fn list_cameras() -> Result<Vec<String>, VideoError> {
    let cameras = nokhwa::query(ApiBackend::Auto).map_err(|e| VideoError::Camera(e.to_string()))?;
    Ok(cameras.iter().map(|c| c.human_name()).collect())
}

#[derive(Default)]
struct Slot {
    frame: Option<I420Frame>,
    error: Option<String>,
}

/// A camera polled as a [`VideoSource`].
pub struct CameraSource {
    slot: Arc<Mutex<Slot>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    format: CameraFormat,
}

impl std::fmt::Debug for CameraSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraSource")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

fn to_i420(format: FrameFormat, width: u32, height: u32, data: &[u8]) -> Result<I420Frame, VideoError> {
    match format {
        FrameFormat::YUYV => yuyv_to_i420(width, height, data),
        FrameFormat::NV12 => nv12_to_i420(width, height, data),
        other => Err(VideoError::Camera(format!("unexpected frame format {other}"))),
    }
}

fn open(config: CameraConfig) -> Result<Camera, VideoError> {
    let wanted = CameraFormat::new_from(config.width, config.height, FrameFormat::YUYV, config.fps);
    let request = RequestedFormat::with_formats(
        RequestedFormatType::Closest(wanted),
        &[FrameFormat::YUYV, FrameFormat::NV12],
    );
    let mut camera = Camera::new(CameraIndex::Index(config.index), request)
        .map_err(|e| VideoError::Camera(format!("camera {}: {e}", config.index)))?;
    camera
        .open_stream()
        .map_err(|e| VideoError::Camera(format!("camera {} stream: {e}", config.index)))?;
    Ok(camera)
}

impl CameraSource {
    /// Opens the camera and starts capturing on a thread of its own.
    pub fn open(config: CameraConfig) -> Result<Self, VideoError> {
        let slot = Arc::new(Mutex::new(Slot::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_slot = Arc::clone(&slot);
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("parley-camera".into())
            .spawn(move || {
                let mut camera = match open(config) {
                    Ok(camera) => {
                        let _ = ready_tx.send(Ok(camera.camera_format()));
                        camera
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while !thread_stop.load(Ordering::Relaxed) {
                    let result = camera
                        .frame()
                        .map_err(|e| VideoError::Camera(e.to_string()))
                        .and_then(|buffer| {
                            let res = buffer.resolution();
                            to_i420(
                                buffer.source_frame_format(),
                                res.width(),
                                res.height(),
                                buffer.buffer(),
                            )
                        });
                    let mut slot = thread_slot.lock().unwrap_or_else(|p| p.into_inner());
                    match result {
                        Ok(frame) => slot.frame = Some(frame),
                        Err(e) => {
                            slot.error = Some(e.to_string());
                            break;
                        }
                    }
                }
                let _ = camera.stop_stream();
            })
            .map_err(|e| VideoError::Camera(format!("capture thread: {e}")))?;
        let format = match ready_rx.recv() {
            Ok(Ok(format)) => format,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(VideoError::Camera("capture thread ended while opening".into())),
        };
        Ok(Self {
            slot,
            stop,
            thread: Some(thread),
            format,
        })
    }

    /// The mode the device actually delivers.
    pub fn format(&self) -> (u32, u32, u32) {
        (
            self.format.width(),
            self.format.height(),
            self.format.frame_rate(),
        )
    }
}

impl VideoSource for CameraSource {
    fn next_frame(&mut self, now_us: u64) -> Result<Option<CapturedFrame>, VideoError> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(picture) = slot.frame.take() {
            return Ok(Some(CapturedFrame {
                picture,
                capture_us: now_us,
            }));
        }
        match slot.error.take() {
            Some(e) => Err(VideoError::Camera(e)),
            None => Ok(None),
        }
    }
}

impl Drop for CameraSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Machines without a camera (CI) must get an error to show, not a panic or a hang.
    #[test]
    fn a_missing_camera_is_an_error() {
        let config = CameraConfig {
            index: 97,
            ..CameraConfig::default()
        };
        match CameraSource::open(config) {
            Err(VideoError::Camera(_)) => {}
            Err(other) => panic!("unexpected error kind: {other}"),
            // A machine with 98 cameras: nothing to check.
            Ok(_) => {}
        }
        let _ = list_cameras();
    }
}
