//! The video receive task: the peer's video events → frame gate → H.264 decoder → lip-sync
//! hold → sink, one gate and decoder per receive slot.
//!
//! The peer has one event stream for everything video, so this task also passes keyframe
//! requests and bandwidth estimates on to the send task.
//!
//! Lip sync follows the audio: sender reports put a sender's audio and video RTP timestamps
//! on one clock, and the audio task says which audio timestamp of that sender it played at
//! which local time; a picture is shown when the audio captured with it plays
//! ([`SyncClock::video_render_time`]). A picture is never held longer than
//! [`VideoOptions::max_sync_hold`], and until a sender has had both reports and its audio
//! plays, pictures are shown as soon as they are decoded.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use parley_rtc::peer::{Peer, ReceivedVideo, SenderReport, VideoEvent};
use parley_video::{
    FrameGate, FrameInfo, I420Frame, MediaKind, SyncClock, SyncDelay, SyncDelayConfig, VIDEO_CLOCK_HZ,
    VideoDecoder, VideoStatsCollector,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{SendControl, ShownFrame, VideoOptions, VideoReceiveStats, VideoSink};

/// Most decoded pictures waiting for their render time; past it the oldest is shown early.
/// Half a second at 30 fps, the longest hold allowed by default.
const MAX_HELD: usize = 16;

/// What the audio task plays now for one remote sender: the anchor of lip sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AudioPlayout {
    /// The relay's id for the sender.
    pub source_id: Option<u32>,
    /// Local time of the playout, µs since the call's epoch.
    pub local_us: u64,
    /// RTP timestamp (48 kHz) of the audio played then.
    pub rtp_timestamp: u32,
}

/// The extra delay one remote sender's audio should play with, so its video keeps up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AudioDelay {
    /// The relay's id for the sender.
    pub source_id: Option<u32>,
    pub extra_ms: u32,
}

/// Controls of a running receive task.
pub(crate) struct ReceiveHandle {
    stop: Option<oneshot::Sender<()>>,
    stats: watch::Receiver<VideoReceiveStats>,
    audio_delays: watch::Receiver<Vec<AudioDelay>>,
    task: JoinHandle<()>,
}

impl ReceiveHandle {
    /// Starts the task on the current runtime.
    pub fn spawn(
        peer: Arc<Peer>,
        events: mpsc::Receiver<VideoEvent>,
        to_sender: mpsc::Sender<SendControl>,
        sink: Box<dyn VideoSink + Send>,
        playout: watch::Receiver<Vec<AudioPlayout>>,
        options: &VideoOptions,
        epoch: Instant,
    ) -> ReceiveHandle {
        let (stop, stop_rx) = oneshot::channel();
        let (stats_tx, stats) = watch::channel(VideoReceiveStats::default());
        let (audio_delays_tx, audio_delays) = watch::channel(Vec::new());
        let receiver = VideoReceiver {
            peer,
            to_sender,
            sink,
            playout,
            gate: options.gate,
            max_hold_us: u64::try_from(options.max_sync_hold.as_micros()).unwrap_or(u64::MAX),
            epoch,
            streams: Vec::new(),
            clocks: HashMap::new(),
            sync_delay: options.sync_delay,
            delays: HashMap::new(),
            audio_delays: audio_delays_tx,
            held: VecDeque::new(),
            collector: VideoStatsCollector::new(),
            stats: VideoReceiveStats::default(),
        };
        let task = tokio::spawn(receiver.run(events, stop_rx, stats_tx));
        ReceiveHandle {
            stop: Some(stop),
            stats,
            audio_delays,
            task,
        }
    }

    pub fn stats(&self) -> watch::Receiver<VideoReceiveStats> {
        self.stats.clone()
    }

    /// How much later each sender's audio should play for its video to keep up.
    pub fn audio_delays(&self) -> watch::Receiver<Vec<AudioDelay>> {
        self.audio_delays.clone()
    }

    /// Stops the task and waits for it, so it no longer holds the peer.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

/// One receive slot's decoding state.
struct Stream {
    source_id: Option<u32>,
    gate: FrameGate,
    /// Out only while a picture is being decoded on the blocking pool.
    decoder: Option<VideoDecoder>,
}

/// A decoded picture waiting for its render time.
struct Held {
    due_us: u64,
    decoded_us: u64,
    picture: I420Frame,
    info: ShownFrame,
}

struct VideoReceiver {
    peer: Arc<Peer>,
    to_sender: mpsc::Sender<SendControl>,
    sink: Box<dyn VideoSink + Send>,
    playout: watch::Receiver<Vec<AudioPlayout>>,
    gate: parley_video::GateConfig,
    max_hold_us: u64,
    epoch: Instant,
    streams: Vec<Stream>,
    /// Per sender, since a sender's audio and video share its clock but nobody else's.
    clocks: HashMap<Option<u32>, SyncClock>,
    sync_delay: SyncDelayConfig,
    /// Per sender, like the clocks.
    delays: HashMap<Option<u32>, SyncDelay>,
    audio_delays: watch::Sender<Vec<AudioDelay>>,
    held: VecDeque<Held>,
    collector: VideoStatsCollector,
    stats: VideoReceiveStats,
}

impl VideoReceiver {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<VideoEvent>,
        mut stop: oneshot::Receiver<()>,
        stats_tx: watch::Sender<VideoReceiveStats>,
    ) {
        loop {
            let wake = self.next_wake();
            tokio::select! {
                biased;
                _ = &mut stop => break,
                event = events.recv() => match event {
                    Some(event) => {
                        if let Err(e) = self.on_event(event).await {
                            tracing::warn!(error = %e, "video receiving stopped");
                            break;
                        }
                    }
                    None => break,
                },
                () = sleep_until(wake) => {}
            }
            let now = self.now_us();
            self.render_due(now);
            self.poll_keyframe_requests(now);
            self.stats.video = self.collector.stats(now);
            stats_tx.send_replace(self.stats);
        }
        stats_tx.send_replace(self.stats);
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// When the task must wake without an event: the next held picture's render time or the
    /// next repeated keyframe request.
    fn next_wake(&self) -> Option<Instant> {
        let held = self.held.front().map(|h| h.due_us);
        let gate = self.streams.iter().filter_map(|s| s.gate.next_timeout()).min();
        let at = match (held, gate) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(self.epoch + Duration::from_micros(at))
    }

    async fn on_event(&mut self, event: VideoEvent) -> Result<(), parley_video::VideoError> {
        match event {
            VideoEvent::Frame(frame) => self.on_frame(frame).await?,
            VideoEvent::KeyframeRequested => self.tell_sender(SendControl::KeyframeRequested),
            VideoEvent::BandwidthEstimate(bps) => self.tell_sender(SendControl::Estimate(bps)),
            VideoEvent::SenderReport(report) => self.on_sender_report(&report),
            // Events a newer transport adds mean nothing to this pipeline yet.
            _ => {}
        }
        Ok(())
    }

    fn tell_sender(&self, control: SendControl) {
        // Full only if the send task is stuck; estimates come again, and a lost keyframe
        // request is repeated by the receiver that needs it.
        let _ = self.to_sender.try_send(control);
    }

    fn on_sender_report(&mut self, report: &SenderReport) {
        let Ok(ntp) = report.ntp_time.duration_since(UNIX_EPOCH) else {
            return;
        };
        let ntp_us = u64::try_from(ntp.as_micros()).unwrap_or(u64::MAX);
        let kind = match report.kind {
            parley_rtc::MediaKind::Audio => MediaKind::Audio,
            parley_rtc::MediaKind::Video => MediaKind::Video,
        };
        self.clock(report.source_id)
            .on_sender_report(kind, ntp_us, report.rtp_timestamp);
    }

    fn clock(&mut self, source_id: Option<u32>) -> &mut SyncClock {
        self.clocks
            .entry(source_id)
            .or_insert_with(|| SyncClock::new(parley_media::SAMPLE_RATE, VIDEO_CLOCK_HZ))
    }

    async fn on_frame(&mut self, frame: ReceivedVideo) -> Result<(), parley_video::VideoError> {
        let now = self.now_us();
        self.collector.on_bytes_received(now, frame.data.len());
        while self.streams.len() <= frame.slot {
            self.streams.push(Stream {
                source_id: None,
                gate: FrameGate::new(self.gate),
                decoder: None,
            });
        }
        let gate_config = self.gate;
        let stream = &mut self.streams[frame.slot];
        if stream.source_id != frame.source_id {
            // Someone else on the slot: nothing of the previous sender's stream applies.
            stream.source_id = frame.source_id;
            stream.gate = FrameGate::new(gate_config);
            stream.decoder = None;
        }
        let info = FrameInfo {
            // The transport's flag comes from the same NAL scan; the bytes are what decode.
            keyframe: frame.keyframe || parley_video::is_keyframe(&frame.data),
            contiguous: frame.contiguous,
        };
        if stream.gate.on_frame(info) == parley_video::Admission::Drop {
            self.collector.on_frame_dropped();
            return Ok(());
        }
        let mut decoder = match stream.decoder.take() {
            Some(decoder) => decoder,
            None => VideoDecoder::new()?,
        };
        let data = frame.data.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let picture = decoder.decode(&data);
            (decoder, picture)
        })
        .await;
        let (decoder, picture) =
            joined.map_err(|e| parley_video::VideoError::Codec(format!("the decoder thread failed: {e}")))?;
        let stream = &mut self.streams[frame.slot];
        stream.decoder = Some(decoder);
        let picture = match picture {
            Ok(Some(picture)) => picture,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, slot = frame.slot, "video frame not decodable");
                stream.gate.on_decode_error();
                self.stats.decode_errors += 1;
                return Ok(());
            }
        };
        let decoded = self.now_us();
        self.update_playout();
        let render = self
            .clocks
            .get(&frame.source_id)
            .and_then(|c| c.video_render_time(frame.rtp_timestamp));
        let due = render.map_or(decoded, |at| at.min(decoded.saturating_add(self.max_hold_us)));
        if let Some(at) = render {
            self.stats.sync_delay_ms = (at as f64 - decoded as f64) / 1_000.0;
            // The picture that ends a wait for a keyframe was late because of the loss, not
            // the path; holding all audio back for it would only add delay.
            if info.contiguous {
                self.judge_lateness(frame.source_id, decoded, at);
            }
        }
        let info = ShownFrame {
            slot: frame.slot,
            source_id: frame.source_id,
            rtp_timestamp: frame.rtp_timestamp,
            keyframe: info.keyframe,
            arrival: frame.arrival,
            held: Duration::ZERO,
            synced: render.is_some(),
        };
        self.held.push_back(Held {
            due_us: due,
            decoded_us: decoded,
            picture,
            info,
        });
        while self.held.len() > MAX_HELD {
            self.show_front();
        }
        Ok(())
    }

    /// Lets the sender's [`SyncDelay`] judge a picture, and tells the audio task when the
    /// delay it should add changes.
    fn judge_lateness(&mut self, source_id: Option<u32>, decoded: u64, render: u64) {
        let config = self.sync_delay;
        let delay = self
            .delays
            .entry(source_id)
            .or_insert_with(|| SyncDelay::new(config));
        if delay.on_picture(decoded, render).is_none() {
            return;
        }
        let delays: Vec<AudioDelay> = self
            .delays
            .iter()
            .map(|(source_id, d)| AudioDelay {
                source_id: *source_id,
                extra_ms: d.extra_ms(),
            })
            .collect();
        self.stats.audio_delay_ms = delays.iter().map(|d| d.extra_ms).max().unwrap_or(0);
        self.audio_delays.send_replace(delays);
    }

    /// Copies the audio task's latest playout into the senders' clocks.
    fn update_playout(&mut self) {
        let playout = self.playout.borrow_and_update().clone();
        for p in playout {
            self.clock(p.source_id)
                .on_audio_playout(p.local_us, p.rtp_timestamp);
        }
    }

    /// Shows every held picture whose time has come, in arrival order: a picture is never
    /// shown after a later one, even if the audio it follows stepped back.
    fn render_due(&mut self, now: u64) {
        while self.held.front().is_some_and(|h| h.due_us <= now) {
            self.show_front();
        }
    }

    fn show_front(&mut self) {
        let Some(mut held) = self.held.pop_front() else {
            return;
        };
        let now = self.now_us();
        held.info.held = Duration::from_micros(now.saturating_sub(held.decoded_us));
        if held.info.synced {
            self.stats.frames_synced += 1;
        }
        self.collector
            .on_frame_rendered(now, held.picture.width(), held.picture.height());
        self.sink.show(&held.picture, held.info);
    }

    fn poll_keyframe_requests(&mut self, now: u64) {
        for (slot, stream) in self.streams.iter_mut().enumerate() {
            if stream.gate.poll_keyframe_request(now) {
                self.collector.on_keyframe_requested();
                if let Err(e) = self.peer.request_keyframe(slot) {
                    tracing::debug!(error = %e, slot, "keyframe request not sent");
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
