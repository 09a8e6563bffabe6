//! Live call statistics: what the call window and the CLI's stats line show.

use std::time::Duration;

use parley_media::{EncoderConfig, ReceiveStats, VoiceStats};
use parley_rtc::peer::TransportStats;

use crate::video::VideoCallStats;

/// One snapshot of a call's media figures, refreshed every 20 ms by the audio task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallStats {
    /// Whether ICE and DTLS-SRTP are up.
    pub connected: bool,
    /// Whether the microphone side is muted.
    pub muted: bool,
    /// Time since the audio task started.
    pub elapsed: Duration,
    /// Encoded frames handed to the transport.
    pub frames_sent: u64,
    /// Transport figures (RTT, loss, bitrate), refreshed about once a second.
    pub transport: TransportStats,
    /// Jitter buffer and decoder figures of everything heard: in a 1:1 call the other side's
    /// stream, in a group call all voices together (counters summed, delays the worst).
    pub receive: ReceiveStats,
    /// Each voice heard now, one per receive slot in use, in slot order.
    pub participants: Vec<ParticipantStats>,
    /// The encoder settings in force, which follow the loss the relay reports.
    pub encoder: EncoderConfig,
    /// Video figures, in a video call.
    pub video: Option<VideoCallStats>,
}

/// One remote participant's voice as this device plays it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ParticipantStats {
    /// The relay's id for the speaker's media, stable for as long as they stay in the call.
    pub source_id: Option<u32>,
    /// Receive slot the voice arrives on.
    pub slot: usize,
    /// Jitter buffer and decoder figures of this voice.
    pub receive: ReceiveStats,
    /// How loud they are now, RMS relative to full scale (0..=1), falling off over ~200 ms.
    pub level: f32,
}

impl ParticipantStats {
    /// Share of this voice's played frames that were concealed.
    pub fn concealed_ratio(&self) -> f64 {
        self.receive.concealed_ratio()
    }

    /// This voice's audio buffered ahead of playout, ms.
    pub fn jitter_buffer_delay_ms(&self) -> f64 {
        self.receive.current_delay_ms
    }
}

impl From<VoiceStats> for ParticipantStats {
    fn from(v: VoiceStats) -> Self {
        ParticipantStats {
            source_id: v.source_id,
            slot: v.slot,
            receive: v.receive,
            level: v.level,
        }
    }
}

impl CallStats {
    /// Round-trip time to the relay.
    pub fn rtt(&self) -> Option<Duration> {
        self.transport.rtt
    }

    /// Incoming loss over the last interval, 0..1.
    pub fn loss(&self) -> f32 {
        self.transport.loss_in.unwrap_or(0.0)
    }

    /// Interarrival jitter as the jitter buffer measures it, ms.
    pub fn jitter_ms(&self) -> f64 {
        self.receive.jitter_ms
    }

    /// Audio buffered ahead of playout, ms.
    pub fn jitter_buffer_delay_ms(&self) -> f64 {
        self.receive.current_delay_ms
    }

    /// Share of played frames that were concealed.
    pub fn concealed_ratio(&self) -> f64 {
        self.receive.concealed_ratio()
    }

    fn link_text(&self) -> &'static str {
        match (
            self.connected,
            self.transport.packets_in + self.transport.packets_out,
        ) {
            (true, _) => "connected",
            (false, 0) => "connecting",
            // Packets flowed once, so the leg was up and is gone now (or for the moment).
            (false, _) => "disconnected",
        }
    }

    /// One line for a terminal.
    pub fn summary(&self) -> String {
        let rtt = self
            .rtt()
            .map_or_else(|| "-".to_string(), |d| format!("{} ms", d.as_millis()));
        let video = self.video.map_or_else(String::new, |v| {
            let (tx, rx) = (v.send, v.receive.video);
            format!(
                " video out {}x{}@{} {} kbit/s{} in {}x{} {:.0} fps freezes {}",
                tx.width,
                tx.height,
                tx.fps,
                tx.target_bitrate_bps / 1000,
                if tx.camera_on { "" } else { " (camera off)" },
                rx.width,
                rx.height,
                rx.fps,
                rx.freeze_count,
            )
        });
        format!(
            "{} rtt {rtt} loss {:.1}% jitter {:.1} ms buffer {:.0} ms concealed {:.1}% in {} kbit/s out {} kbit/s opus {} kbit/s fec {}%{}{}{video}",
            self.link_text(),
            self.loss() * 100.0,
            self.jitter_ms(),
            self.jitter_buffer_delay_ms(),
            self.concealed_ratio() * 100.0,
            self.transport.bitrate_in / 1000,
            self.transport.bitrate_out / 1000,
            self.encoder.bitrate_bps / 1000,
            self.encoder.expected_loss_percent,
            match self.participants.len() {
                0 | 1 => String::new(),
                n => format!(" voices {n}"),
            },
            if self.muted { " (muted)" } else { "" },
        )
    }
}
