//! The two objects a call wires up, both sans-IO: [`AudioSender`] turns a source into
//! [`EncodedFrame`]s for the transport to packetise, and [`AudioReceiver`] takes received
//! payloads and feeds a sink through the jitter buffer. The transport only moves frames; the
//! caller drives both with its own 20 ms clock.

use std::time::Duration;

use crate::{
    FRAME_SAMPLES, Frame, MediaError, ReceiveStats,
    codec::{EncoderConfig, OpusDecoder, OpusEncoder},
    jitter::{InsertOutcome, JitterBuffer, JitterConfig, Playout},
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
