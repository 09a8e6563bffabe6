//! The video send task: source → frame-rate limit → H.264 → transport, with the rate
//! controller turning the transport's bandwidth estimate into bitrate, size and frame rate.
//!
//! The source is polled every few ms rather than on its own rate, because sources keep their
//! own cadence (a camera delivers when it has a picture) and the poll only has to be fine
//! enough not to add visible jitter. Capture times are µs since the call's epoch, the audio
//! task's clock, and the RTP timestamp is derived from them, so a picture and the audio
//! captured at the same moment carry timestamps a receiver can line up.
//!
//! Any access unit the transport refuses makes the next one a keyframe: the receiver's
//! decoder would otherwise get a P frame whose reference never left this device, a smeared
//! picture that no RTP sequence gap would reveal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parley_rtc::peer::{EncodedVideo, Peer, PeerError};
use parley_video::{
    CapturedFrame, EncodedVideoFrame, EncoderSettings, FrameRateLimiter, RateController, VideoEncoder,
    VideoError, VideoSource, us_to_rtp,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::{VideoOptions, VideoSendStats};

/// How often the source is asked for a picture: a fifth of a 30 fps frame interval.
const POLL: Duration = Duration::from_millis(5);

/// Least time between two keyframes sent because someone asked, µs. A keyframe is several
/// times the size of other pictures; on a congested link the first one is still queued or
/// being repaired by retransmission when the receiver asks again, and answering every
/// request would only send keyframe after keyframe into the queue that lost the first.
/// A request that comes sooner is answered when the interval is over, never dropped.
const KEYFRAME_ANSWER_INTERVAL_US: u64 = 500_000;

/// The interval also leaves the link this many times the last keyframe's own transmission
/// time at the target bitrate: at 250 kbit/s a 20 KB keyframe takes 0.64 s to send, and two
/// a second would be more than the link carries, so nothing would ever get through.
const KEYFRAME_LINK_SHARE: u64 = 3;

/// What the receive side passes on to the sender (both come in on the peer's one video
/// event stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendControl {
    /// Someone watching lost the picture.
    KeyframeRequested,
    /// The bandwidth estimate for what this device sends, bits per second.
    Estimate(u64),
}

/// Controls of a running send task.
pub(crate) struct SendHandle {
    stop: Option<oneshot::Sender<()>>,
    camera: watch::Sender<bool>,
    control: mpsc::Sender<SendControl>,
    stats: watch::Receiver<VideoSendStats>,
    task: JoinHandle<()>,
}

impl SendHandle {
    /// Starts the task on the current runtime, sending pictures from `source` through `peer`.
    pub fn spawn(
        peer: Arc<Peer>,
        source: Box<dyn VideoSource + Send>,
        options: &VideoOptions,
        epoch: Instant,
    ) -> SendHandle {
        let (stop, stop_rx) = oneshot::channel();
        let (camera, camera_rx) = watch::channel(true);
        let (control, control_rx) = mpsc::channel(64);
        let rate = RateController::new(parley_video::RateConfig {
            top_rung: options.top_rung(),
            ..options.rate
        });
        let target = rate.target();
        let stats = VideoSendStats {
            camera_on: true,
            target_bitrate_bps: target.bitrate_bps,
            fps: target.fps.min(options.max_fps),
            ..VideoSendStats::default()
        };
        let (stats_tx, stats_rx) = watch::channel(stats);
        let sender = VideoSender {
            peer,
            source,
            encoder: None,
            threads: options.encoder_threads,
            max_fps: options.max_fps.max(1),
            rate,
            limiter: FrameRateLimiter::new(),
            // WebRTC starts each stream's RTP clock at a random point.
            rtp_offset: rand::random(),
            keyframe_due: false,
            keyframe_requested: false,
            last_keyframe: None,
            epoch,
            stats,
        };
        let task = tokio::spawn(sender.run(stop_rx, camera_rx, control_rx, stats_tx));
        SendHandle {
            stop: Some(stop),
            camera,
            control,
            stats: stats_rx,
            task,
        }
    }

    /// Where the receive side forwards keyframe requests and estimates.
    pub fn control(&self) -> mpsc::Sender<SendControl> {
        self.control.clone()
    }

    pub fn set_camera(&self, on: bool) {
        self.camera.send_replace(on);
    }

    pub fn stats(&self) -> watch::Receiver<VideoSendStats> {
        self.stats.clone()
    }

    /// Stops the task and waits for it, so it no longer holds the peer.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

struct VideoSender {
    peer: Arc<Peer>,
    source: Box<dyn VideoSource + Send>,
    /// Built at the first picture, whose size bounds the encoded size.
    encoder: Option<VideoEncoder>,
    threads: u16,
    max_fps: u32,
    rate: RateController,
    limiter: FrameRateLimiter,
    rtp_offset: u32,
    /// The next picture must be a keyframe (nothing the receiver has can predict it).
    keyframe_due: bool,
    /// A receiver asked for a keyframe; answered within [`KEYFRAME_ANSWER_INTERVAL_US`].
    keyframe_requested: bool,
    /// Capture time and size of the last keyframe sent.
    last_keyframe: Option<(u64, u64)>,
    epoch: Instant,
    stats: VideoSendStats,
}

impl VideoSender {
    async fn run(
        mut self,
        mut stop: oneshot::Receiver<()>,
        mut camera: watch::Receiver<bool>,
        mut control: mpsc::Receiver<SendControl>,
        stats_tx: watch::Sender<VideoSendStats>,
    ) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                changed = camera.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.stats.camera_on = *camera.borrow_and_update();
                }
                Some(control) = control.recv() => self.on_control(control),
                _ = tick.tick() => {
                    match self.poll().await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "video sending stopped");
                            break;
                        }
                    }
                }
            }
            stats_tx.send_if_modified(|s| {
                let changed = *s != self.stats;
                *s = self.stats;
                changed
            });
        }
        stats_tx.send_replace(self.stats);
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn on_control(&mut self, control: SendControl) {
        match control {
            SendControl::KeyframeRequested => {
                self.stats.keyframe_requests += 1;
                self.keyframe_requested = true;
            }
            SendControl::Estimate(bps) => {
                let now = self.now_us();
                let target = self.rate.on_estimate(now, bps);
                self.stats.bandwidth_estimate_bps = Some(bps);
                self.stats.target_bitrate_bps = target.bitrate_bps;
                self.stats.fps = target.fps.min(self.max_fps);
            }
        }
    }

    /// Takes a picture if one is due and sends it. `Ok(false)` once the transport is gone.
    async fn poll(&mut self) -> Result<bool, VideoError> {
        let now = self.now_us();
        // Read even while the camera is off or the leg is down, so the source keeps real time.
        let Some(captured) = self.source.next_frame(now)? else {
            return Ok(true);
        };
        self.stats.frames_captured += 1;
        if !self.stats.camera_on {
            return Ok(true);
        }
        if !self.peer.is_connected() {
            // Nothing sent before the leg is up has reached anyone, so the first picture
            // after it must stand on its own.
            self.keyframe_due = true;
            return Ok(true);
        }
        if !self.limiter.admit(captured.capture_us, self.stats.fps) {
            return Ok(true);
        }
        let Some(unit) = self.encode(captured).await? else {
            return Ok(true);
        };
        self.stats.frames_encoded += 1;
        let keyframe = unit.keyframe;
        if keyframe {
            // Whatever made it a keyframe, it answers every request made so far.
            self.keyframe_requested = false;
            self.last_keyframe = Some((unit.capture_us, unit.data.len() as u64));
        }
        let bytes = unit.data.len() as u64;
        let frame = EncodedVideo {
            rtp_timestamp: self.rtp_offset.wrapping_add(us_to_rtp(unit.capture_us)),
            data: Bytes::from(unit.data),
            keyframe,
            captured_at: Some(self.epoch + Duration::from_micros(unit.capture_us)),
        };
        match self.peer.send_video(frame) {
            Ok(()) => {
                self.stats.frames_sent += 1;
                self.stats.keyframes_sent += u64::from(keyframe);
                self.stats.bytes_sent += bytes;
            }
            Err(PeerError::Closed) => return Ok(false),
            Err(e) => {
                self.keyframe_due = true;
                tracing::debug!(error = %e, "video frame not sent");
            }
        }
        Ok(true)
    }

    /// Encodes on the blocking pool with the settings the rate controller wants now.
    async fn encode(&mut self, captured: CapturedFrame) -> Result<Option<EncodedVideoFrame>, VideoError> {
        let target = self.rate.target();
        let picture = &captured.picture;
        // A source smaller than the rung is sent at its own size: upscaling costs bits and
        // shows nothing more.
        let (width, height) = if picture.width() <= target.width && picture.height() <= target.height {
            (picture.width(), picture.height())
        } else {
            (target.width, target.height)
        };
        let settings = target.encoder_settings(EncoderSettings {
            threads: self.threads,
            ..EncoderSettings::default()
        });
        let settings = EncoderSettings {
            width,
            height,
            max_fps: settings.max_fps.min(self.max_fps as f32),
            ..settings
        };
        let mut encoder = match self.encoder.take() {
            Some(mut encoder) => {
                // A refused change leaves the encoder as it was, which still sends a picture.
                if encoder.settings() != settings
                    && let Err(e) = encoder.apply(settings)
                {
                    tracing::debug!(error = %e, "video encoder settings not applied");
                }
                encoder
            }
            None => VideoEncoder::new(settings)?,
        };
        let (width, height) = (encoder.settings().width, encoder.settings().height);
        let answer_request = self.keyframe_requested
            && self.last_keyframe.is_none_or(|(at, bytes)| {
                let sending_us = bytes * 8 * 1_000_000 / u64::from(target.bitrate_bps.max(1));
                let interval = KEYFRAME_ANSWER_INTERVAL_US.max(KEYFRAME_LINK_SHARE * sending_us);
                captured.capture_us.saturating_sub(at) >= interval
            });
        if std::mem::take(&mut self.keyframe_due) || answer_request {
            encoder.force_keyframe();
        }
        let joined = tokio::task::spawn_blocking(move || {
            let unit = encoder.encode(&captured.picture, captured.capture_us);
            (encoder, unit)
        })
        .await;
        let (encoder, unit) =
            joined.map_err(|e| VideoError::Codec(format!("the encoder thread failed: {e}")))?;
        self.encoder = Some(encoder);
        self.stats.width = width;
        self.stats.height = height;
        match unit {
            Ok(unit) => Ok(unit),
            // One picture the encoder could not take is not the end of the call's video; what
            // follows it must not lean on it.
            Err(e) => {
                tracing::debug!(error = %e, "picture not encoded");
                self.keyframe_due = true;
                Ok(None)
            }
        }
    }
}
