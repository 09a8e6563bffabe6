//! The audio task: the tokio driver around the sans-IO media objects.
//!
//! One task owns the [`AudioSender`], the [`GroupReceiver`] and the peer, and on one 20 ms
//! interval both sends a frame and pulls one for playout, so capture and playout share a
//! clock and neither can drift against the other. Received packets go into their slot's
//! jitter buffer as they come, stamped with their socket arrival time; the jitter buffers
//! decide when they play, and the voices are mixed into the one sink. Ticks missed under load
//! are caught up in a burst rather than skipped: a skipped tick would be a hole in the
//! outgoing stream and an underrun at the far end.
//!
//! The transport's statistics (about once a second) carry the loss the relay reports for
//! what this device sends; the [`LossAdapter`] turns that into the encoder's FEC strength and
//! bitrate.
//!
//! In a video call the video tasks (`video/`) run beside this one and share the peer. This
//! task publishes, after every pull, which audio timestamp of each sender it played (the
//! video receive side's lip-sync anchor) and folds the video figures into [`CallStats`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parley_media::{AudioSender, AudioSink, AudioSource, FRAME_US, GroupReceiver, LossAdapter, MediaError};
use parley_rtc::peer::{ConnectionState, EncodedAudio, Peer, PeerError, PeerEvent, VideoEvent};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::stats::{CallStats, ParticipantStats};
use crate::video::{
    AudioDelay, AudioPlayout, ReceiveHandle, SendHandle, VideoCallStats, VideoMedia, VideoOptions,
    VideoReceiveStats, VideoSendStats,
};

/// What a video call adds to the audio task: the peer's video events, the picture source and
/// sink, and the settings.
pub(crate) struct VideoParts {
    pub events: mpsc::Receiver<VideoEvent>,
    pub media: VideoMedia,
    pub options: VideoOptions,
}

/// The running video tasks of a call.
struct VideoTasks {
    send: SendHandle,
    receive: ReceiveHandle,
}

/// The audio task's ends of the video tasks' channels.
struct VideoLink {
    send: watch::Receiver<VideoSendStats>,
    receive: watch::Receiver<VideoReceiveStats>,
    playout: watch::Sender<Vec<AudioPlayout>>,
    audio_delays: watch::Receiver<Vec<AudioDelay>>,
}

/// What the audio task hands back when it stops.
pub(crate) struct Stopped<K> {
    pub sink: K,
    pub stats: CallStats,
}

/// Controls of a running audio task.
pub(crate) struct EngineHandle<K> {
    stop: Option<oneshot::Sender<()>>,
    mute: watch::Sender<bool>,
    stats: watch::Receiver<CallStats>,
    task: JoinHandle<Result<Stopped<K>, MediaError>>,
    video: Option<VideoTasks>,
}

impl<K: AudioSink + Send + 'static> EngineHandle<K> {
    /// Starts the audio task, and the video tasks of a video call, on the current runtime.
    pub fn spawn<S: AudioSource + Send + 'static>(
        peer: Peer,
        events: mpsc::Receiver<PeerEvent>,
        mut sender: AudioSender<S>,
        receiver: GroupReceiver<K>,
        adapter: Option<LossAdapter>,
        video: Option<VideoParts>,
    ) -> EngineHandle<K> {
        let (stop, stop_rx) = oneshot::channel();
        let (mute, mute_rx) = watch::channel(false);
        let peer = Arc::new(peer);
        // One clock for audio capture, video capture and playout, so the two media line up.
        let epoch = Instant::now();
        let (tasks, link) = match video {
            Some(parts) => {
                let send = SendHandle::spawn(peer.clone(), parts.media.source, &parts.options, epoch);
                let (playout, playout_rx) = watch::channel(Vec::new());
                let receive = ReceiveHandle::spawn(
                    peer.clone(),
                    parts.events,
                    send.control(),
                    parts.media.sink,
                    playout_rx,
                    &parts.options,
                    epoch,
                );
                let link = VideoLink {
                    send: send.stats(),
                    receive: receive.stats(),
                    playout,
                    audio_delays: receive.audio_delays(),
                };
                (Some(VideoTasks { send, receive }), Some(link))
            }
            None => (None, None),
        };
        let initial = CallStats {
            encoder: sender.encoder_mut().config(),
            video: link.as_ref().map(|_| VideoCallStats::default()),
            ..CallStats::default()
        };
        let (stats_tx, stats) = watch::channel(initial.clone());
        let engine = Engine {
            peer,
            events,
            sender,
            receiver,
            adapter,
            stats: initial,
            epoch,
            video: link,
        };
        let task = tokio::spawn(engine.run(stop_rx, mute_rx, stats_tx));
        EngineHandle {
            stop: Some(stop),
            mute,
            stats,
            task,
            video: tasks,
        }
    }

    /// Starts or stops sending pictures; the video stream stays negotiated either way.
    /// Returns false in an audio-only call.
    pub fn set_camera(&self, on: bool) -> bool {
        match &self.video {
            Some(video) => {
                video.send.set_camera(on);
                true
            }
            None => false,
        }
    }

    pub fn set_muted(&self, muted: bool) {
        self.mute.send_replace(muted);
    }

    pub fn stats(&self) -> watch::Receiver<CallStats> {
        self.stats.clone()
    }

    /// Stops the task, closing the media leg, and gives back the sink.
    pub async fn stop(mut self) -> Result<Stopped<K>, crate::VoiceError> {
        // The video tasks go first: while they hold the peer, the audio task cannot close it.
        if let Some(video) = self.video.take() {
            video.send.stop().await;
            video.receive.stop().await;
        }
        if let Some(stop) = self.stop.take() {
            // The task may have stopped on its own already (peer closed); then it is
            // waiting to be joined and the send simply fails.
            let _ = stop.send(());
        }
        match self.task.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(crate::VoiceError::EngineStopped),
        }
    }
}

struct Engine<S, K> {
    peer: Arc<Peer>,
    events: mpsc::Receiver<PeerEvent>,
    sender: AudioSender<S>,
    receiver: GroupReceiver<K>,
    adapter: Option<LossAdapter>,
    stats: CallStats,
    epoch: Instant,
    video: Option<VideoLink>,
}

impl<S: AudioSource, K: AudioSink> Engine<S, K> {
    async fn run(
        mut self,
        mut stop: oneshot::Receiver<()>,
        mut mute: watch::Receiver<bool>,
        stats_tx: watch::Sender<CallStats>,
    ) -> Result<Stopped<K>, MediaError> {
        let mut tick = tokio::time::interval(Duration::from_micros(FRAME_US));
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let outcome = loop {
            tokio::select! {
                biased;
                _ = &mut stop => break Ok(()),
                changed = mute.changed() => {
                    if changed.is_err() {
                        break Ok(());
                    }
                    let muted = *mute.borrow_and_update();
                    self.sender.set_muted(muted);
                    self.stats.muted = muted;
                }
                event = self.events.recv() => match event {
                    Some(event) => {
                        if !self.on_peer_event(event) {
                            break Ok(());
                        }
                    }
                    None => break Ok(()),
                },
                _ = tick.tick() => {
                    if let Err(e) = self.on_tick() {
                        break Err(e);
                    }
                    stats_tx.send_replace(self.stats.clone());
                }
            }
        };
        stats_tx.send_replace(self.stats.clone());
        // Only the video tasks share the peer, and they are stopped first; if one is still
        // running (the task ended on its own), dropping the last handle closes the leg.
        if let Ok(peer) = Arc::try_unwrap(self.peer) {
            peer.close().await;
        }
        outcome.map(|()| Stopped {
            sink: self.receiver.into_sink(),
            stats: self.stats,
        })
    }

    /// Returns false once the leg is closed for good.
    fn on_peer_event(&mut self, event: PeerEvent) -> bool {
        match event {
            PeerEvent::Audio(packet) => {
                let arrival = self.micros_since_epoch(packet.arrival);
                // The jitter buffer works on 16-bit RTP sequence numbers and unwraps them itself.
                let inserted = self.receiver.insert(
                    packet.slot,
                    packet.source_id,
                    packet.seq_no as u16,
                    packet.rtp_timestamp,
                    arrival,
                    &packet.payload,
                );
                // Only a decoder that cannot be created fails here; that voice stays silent
                // and the rest of the call carries on.
                if let Err(e) = inserted {
                    tracing::warn!(error = %e, slot = packet.slot, "received audio dropped");
                }
            }
            PeerEvent::State(ConnectionState::Connected) => self.stats.connected = true,
            PeerEvent::State(ConnectionState::Disconnected) => self.stats.connected = false,
            PeerEvent::State(ConnectionState::Closed) => {
                self.stats.connected = false;
                return false;
            }
            PeerEvent::Stats(transport) => {
                if let (Some(adapter), Some(loss)) = (self.adapter.as_mut(), transport.loss_out)
                    && let Some(next) = adapter.on_report(loss)
                {
                    match self.sender.encoder_mut().apply(next) {
                        Ok(()) => self.stats.encoder = next,
                        Err(e) => tracing::debug!(error = %e, "encoder settings not applied"),
                    }
                }
                self.stats.transport = transport;
            }
        }
        true
    }

    fn on_tick(&mut self) -> Result<(), MediaError> {
        // The source is read even before the leg is up, so it keeps real time.
        if let Some(frame) = self.sender.next_frame()? {
            // A frame is read when its last sample is in: its first was spoken a frame ago.
            // Pictures are stamped when taken, so without this the receiver would line each
            // picture up with audio spoken a frame after it.
            let captured = Instant::now()
                .checked_sub(Duration::from_micros(FRAME_US))
                .unwrap_or_else(Instant::now);
            let audio =
                EncodedAudio::new(frame.rtp_timestamp, Bytes::from(frame.payload)).captured_at(captured);
            match self.peer.send_audio(audio) {
                Ok(()) => self.stats.frames_sent += 1,
                // Stale audio is worse than none: frames the leg cannot take now are dropped.
                Err(PeerError::NotConnected | PeerError::QueueFull) => {}
                Err(e) => tracing::debug!(error = %e, "audio frame not sent"),
            }
        }
        let now = self.micros_since_epoch(Instant::now());
        self.receiver.pull(now)?;
        self.stats.receive = self.receiver.stats();
        let voices = self.receiver.voices();
        self.stats.participants.clear();
        if let Some(video) = &self.video {
            let delays = video.audio_delays.borrow();
            for v in &voices {
                let extra = delays
                    .iter()
                    .find(|d| d.source_id == v.source_id)
                    .map_or(0, |d| d.extra_ms);
                self.receiver.set_extra_delay_ms(v.slot, extra);
            }
            drop(delays);
            let playout = voices
                .iter()
                .filter_map(|v| {
                    let rtp_timestamp = self.receiver.playout_timestamp(v.slot)?;
                    Some(AudioPlayout {
                        source_id: v.source_id,
                        local_us: now,
                        rtp_timestamp,
                    })
                })
                .collect();
            video.playout.send_replace(playout);
            self.stats.video = Some(VideoCallStats {
                send: *video.send.borrow(),
                receive: *video.receive.borrow(),
            });
        }
        self.stats
            .participants
            .extend(voices.into_iter().map(ParticipantStats::from));
        self.stats.elapsed = self.epoch.elapsed();
        Ok(())
    }

    fn micros_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }
}
