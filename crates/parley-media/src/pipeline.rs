//! The objects a call wires up, all sans-IO: [`AudioSender`] turns a source into
//! [`EncodedFrame`]s for the transport to packetise, [`AudioReceiver`] takes one stream's
//! received payloads and feeds a sink through the jitter buffer, and [`GroupReceiver`] does the
//! same for several streams at once (one per receive slot of a group call) and mixes them into
//! one sink. The transport only moves frames; the caller drives them with its own 20 ms clock.

use std::time::Duration;

use crate::{
    FRAME_SAMPLES, Frame, MediaError, ReceiveStats, VoiceStats,
    codec::{EncoderConfig, OpusDecoder, OpusEncoder},
    jitter::{InsertOutcome, JitterBuffer, JitterConfig, Playout},
    mixer::{Mixer, frame_level},
    sink::AudioSink,
    source::{AudioSource, SourceStatus},
};

/// One encoded 20 ms frame, ready for an RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// RTP timestamp (48 kHz clock) of the first sample.
    pub rtp_timestamp: u32,
    /// The Opus packet.
    pub payload: Vec<u8>,
    /// Audio the packet carries.
    pub duration: Duration,
}

/// Source → mute → Opus encoder → [`EncodedFrame`].
///
/// Mute sends encoded digital silence rather than stopping the stream, as WebRTC clients do
/// when a track is disabled: the receiver's jitter estimate, RTP timestamps, SRTP state and NAT
/// bindings carry on undisturbed, unmuting is instant (no re-buffering at the far end), and
/// Opus codes silence in a few bytes per frame, so mute costs almost nothing on the wire.
#[derive(Debug)]
pub struct AudioSender<S> {
    source: S,
    encoder: OpusEncoder,
    muted: bool,
    ended: bool,
    next_timestamp: u32,
    frame: Frame,
}

impl<S: AudioSource> AudioSender<S> {
    /// A sender reading `source`, starting at RTP timestamp `initial_timestamp` (WebRTC picks it
    /// at random per stream).
    pub fn new(source: S, config: EncoderConfig, initial_timestamp: u32) -> Result<Self, MediaError> {
        Ok(Self {
            source,
            encoder: OpusEncoder::new(config)?,
            muted: false,
            ended: false,
            next_timestamp: initial_timestamp,
            frame: [0; FRAME_SAMPLES],
        })
    }

    /// Mutes or unmutes the microphone side.
    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
    }

    /// Whether the sender is muted.
    pub fn is_muted(&self) -> bool {
        self.muted
    }

    /// Whether the source has ended (a finished file).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The encoder, to change bitrate or expected loss from congestion control and receiver
    /// reports.
    pub fn encoder_mut(&mut self) -> &mut OpusEncoder {
        &mut self.encoder
    }

    /// The source.
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// Reads one frame from the source and encodes it. `None` when the source has nothing
    /// ready (call again on the next tick) or has ended.
    pub fn next_frame(&mut self) -> Result<Option<EncodedFrame>, MediaError> {
        if self.ended {
            return Ok(None);
        }
        match self.source.read_frame(&mut self.frame)? {
            SourceStatus::Ready => {}
            SourceStatus::NotReady => return Ok(None),
            SourceStatus::Ended => {
                self.ended = true;
                return Ok(None);
            }
        }
        // The source is read even when muted so a microphone's buffer does not back up and
        // unmuting resumes with current audio, not stale audio.
        if self.muted {
            self.frame.fill(0);
        }
        let payload = self.encoder.encode(&self.frame)?;
        let rtp_timestamp = self.next_timestamp;
        self.next_timestamp = self.next_timestamp.wrapping_add(FRAME_SAMPLES as u32);
        Ok(Some(EncodedFrame {
            rtp_timestamp,
            payload,
            duration: Duration::from_millis(20),
        }))
    }
}

/// Received payloads → jitter buffer → Opus decoder → sink, with statistics.
#[derive(Debug)]
pub struct AudioReceiver<K> {
    jitter: JitterBuffer<OpusDecoder>,
    sink: K,
    frame: Frame,
}

impl<K: AudioSink> AudioReceiver<K> {
    /// A receiver playing into `sink`.
    pub fn new(config: JitterConfig, sink: K) -> Result<Self, MediaError> {
        Ok(Self {
            jitter: JitterBuffer::new(config, OpusDecoder::new()?)?,
            sink,
            frame: [0; FRAME_SAMPLES],
        })
    }

    /// Hands over a received RTP payload with its sequence number, timestamp and arrival time.
    pub fn insert(&mut self, seq: u16, rtp_timestamp: u32, arrival_us: u64, payload: &[u8]) -> InsertOutcome {
        self.jitter.insert(seq, rtp_timestamp, arrival_us, payload)
    }

    /// Plays the next 20 ms into the sink; call every 20 ms.
    pub fn pull(&mut self, now_us: u64) -> Result<Playout, MediaError> {
        let playout = self.jitter.pull(now_us, &mut self.frame);
        self.sink.write_frame(&self.frame)?;
        Ok(playout)
    }

    /// Statistics so far.
    pub fn stats(&self) -> ReceiveStats {
        self.jitter.stats()
    }

    /// The sink.
    pub fn sink(&self) -> &K {
        &self.sink
    }

    /// The sink, mutably.
    pub fn sink_mut(&mut self) -> &mut K {
        &mut self.sink
    }

    /// Gives the sink back (to finish a recording).
    pub fn into_sink(self) -> K {
        self.sink
    }
}

/// Most receive slots one [`GroupReceiver`] takes; far above any call size a relay admits.
pub const MAX_GROUP_SLOTS: usize = 64;
/// A voice with no packet for this long has left its slot (the speaker left, or the relay
/// moved them): its decoder goes and it stops counting as a participant. Longer than a jitter
/// buffer's own outage handling, so a stream that merely stalls is not torn down.
const VOICE_IDLE_US: u64 = 2_000_000;
/// Per-frame decay of the displayed level, so a speaker's meter falls over ~200 ms rather than
/// flickering with each syllable.
const LEVEL_DECAY: f32 = 0.8;

/// One remote voice: the stream on one slot from one source.
#[derive(Debug)]
struct Voice {
    source_id: Option<u32>,
    jitter: JitterBuffer<OpusDecoder>,
    last_arrival_us: u64,
    level: f32,
}

/// Several received streams → one jitter buffer and Opus decoder each → [`Mixer`] → one sink.
///
/// Streams are addressed by receive slot. A slot whose packets start carrying another source
/// id belongs to someone new: its stream starts over rather than splicing two people's audio
/// (and timelines) into one jitter buffer. A slot that stops receiving fades out through
/// concealment and, after a while, stops contributing altogether. With one slot this is an
/// [`AudioReceiver`] with per-source restarts.
#[derive(Debug)]
pub struct GroupReceiver<K> {
    config: JitterConfig,
    slots: Vec<Option<Voice>>,
    mixer: Mixer,
    sink: K,
    frame: Frame,
    /// Counters of voices that have gone, so the aggregate never runs backwards.
    retired: ReceiveStats,
    /// Frames played while no voice was there at all.
    idle_frames: u64,
}

impl<K: AudioSink> GroupReceiver<K> {
    /// A receiver for `slots` streams (1..=[`MAX_GROUP_SLOTS`]) playing into `sink`.
    pub fn new(config: JitterConfig, slots: usize, sink: K) -> Result<Self, MediaError> {
        if !(1..=MAX_GROUP_SLOTS).contains(&slots) {
            return Err(MediaError::InvalidConfig(format!(
                "{slots} receive slots (1..={MAX_GROUP_SLOTS})"
            )));
        }
        // Checked once here, so a voice that comes later cannot fail on its settings.
        JitterBuffer::new(config, OpusDecoder::new()?)?;
        Ok(Self {
            config,
            slots: (0..slots).map(|_| None).collect(),
            mixer: Mixer::new(),
            sink,
            frame: [0; FRAME_SAMPLES],
            retired: ReceiveStats::default(),
            idle_frames: 0,
        })
    }

    /// Hands over a payload received on `slot` from `source_id` (the relay's mark of who is
    /// speaking), with its sequence number, timestamp and arrival time. A slot beyond the
    /// configured ones is discarded.
    pub fn insert(
        &mut self,
        slot: usize,
        source_id: Option<u32>,
        seq: u16,
        rtp_timestamp: u32,
        arrival_us: u64,
        payload: &[u8],
    ) -> Result<InsertOutcome, MediaError> {
        let Some(entry) = self.slots.get_mut(slot) else {
            return Ok(InsertOutcome::Discarded);
        };
        if entry.as_ref().is_some_and(|v| v.source_id != source_id)
            && let Some(gone) = entry.take()
        {
            accumulate(&mut self.retired, &gone.jitter.stats());
        }
        if entry.is_none() {
            *entry = Some(Voice {
                source_id,
                jitter: JitterBuffer::new(self.config, OpusDecoder::new()?)?,
                last_arrival_us: arrival_us,
                level: 0.0,
            });
        }
        let Some(voice) = entry.as_mut() else {
            return Ok(InsertOutcome::Discarded);
        };
        voice.last_arrival_us = voice.last_arrival_us.max(arrival_us);
        Ok(voice.jitter.insert(seq, rtp_timestamp, arrival_us, payload))
    }

    /// Plays the next 20 ms of every voice, mixed, into the sink; call every 20 ms.
    pub fn pull(&mut self, now_us: u64) -> Result<(), MediaError> {
        for entry in &mut self.slots {
            let idle = entry
                .as_ref()
                .is_some_and(|v| now_us.saturating_sub(v.last_arrival_us) >= VOICE_IDLE_US);
            if idle && let Some(gone) = entry.take() {
                accumulate(&mut self.retired, &gone.jitter.stats());
            }
            let Some(voice) = entry else {
                continue;
            };
            voice.jitter.pull(now_us, &mut self.frame);
            voice.level = frame_level(&self.frame).max(voice.level * LEVEL_DECAY);
            self.mixer.add(&self.frame);
        }
        if self.mixer.inputs() == 0 {
            self.idle_frames += 1;
        }
        self.mixer.finish(&mut self.frame);
        self.sink.write_frame(&self.frame)
    }

    /// All voices together: counters summed over every voice so far (and frames with no voice
    /// count as silence), gauges the worst of the current voices. With one voice, its own
    /// figures.
    pub fn stats(&self) -> ReceiveStats {
        let mut total = self.retired;
        total.silence_frames += self.idle_frames;
        total.current_delay_ms = 0.0;
        total.filtered_delay_ms = 0.0;
        total.target_delay_ms = 0.0;
        total.jitter_ms = 0.0;
        for voice in self.slots.iter().flatten() {
            let s = voice.jitter.stats();
            accumulate(&mut total, &s);
            total.current_delay_ms = total.current_delay_ms.max(s.current_delay_ms);
            total.filtered_delay_ms = total.filtered_delay_ms.max(s.filtered_delay_ms);
            total.target_delay_ms = total.target_delay_ms.max(s.target_delay_ms);
            total.jitter_ms = total.jitter_ms.max(s.jitter_ms);
        }
        total
    }

    /// Each current voice, in slot order.
    pub fn voices(&self) -> Vec<VoiceStats> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, v)| {
                v.as_ref().map(|v| VoiceStats {
                    slot,
                    source_id: v.source_id,
                    receive: v.jitter.stats(),
                    level: v.level,
                })
            })
            .collect()
    }

    /// RTP timestamp of the audio of `slot` that the last [`pull`](Self::pull) played (see
    /// [`JitterBuffer::playout_timestamp`]); `None` for an idle slot or one not playing yet.
    pub fn playout_timestamp(&self, slot: usize) -> Option<u32> {
        self.slots.get(slot)?.as_ref()?.jitter.playout_timestamp()
    }

    /// Delays the playout of `slot` by `ms` beyond what its jitter needs (see
    /// [`JitterBuffer::set_extra_delay_ms`]); no-op for an idle slot.
    pub fn set_extra_delay_ms(&mut self, slot: usize, ms: u32) {
        if let Some(Some(voice)) = self.slots.get_mut(slot) {
            voice.jitter.set_extra_delay_ms(ms);
        }
    }

    /// How many slots are receiving now.
    pub fn active_voices(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// The sink.
    pub fn sink(&self) -> &K {
        &self.sink
    }

    /// The sink, mutably.
    pub fn sink_mut(&mut self) -> &mut K {
        &mut self.sink
    }

    /// Gives the sink back (to finish a recording).
    pub fn into_sink(self) -> K {
        self.sink
    }
}

/// Adds `s`'s counters to `total` (gauges are left alone).
fn accumulate(total: &mut ReceiveStats, s: &ReceiveStats) {
    total.packets_received += s.packets_received;
    total.late_packets += s.late_packets;
    total.duplicate_packets += s.duplicate_packets;
    total.discarded_packets += s.discarded_packets;
    total.resets += s.resets;
    total.frames_played += s.frames_played;
    total.silence_frames += s.silence_frames;
    total.normal_frames += s.normal_frames;
    total.fec_frames += s.fec_frames;
    total.concealed_frames += s.concealed_frames;
    total.accelerate_count += s.accelerate_count;
    total.accelerate_samples += s.accelerate_samples;
    total.preemptive_expand_count += s.preemptive_expand_count;
    total.preemptive_expand_samples += s.preemptive_expand_samples;
}
