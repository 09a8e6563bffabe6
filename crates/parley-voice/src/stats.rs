//! Live call statistics: what the call window and the CLI's stats line show.

use std::time::Duration;

use parley_media::ReceiveStats;
use parley_rtc::peer::TransportStats;

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
    /// Jitter buffer and decoder figures.
    pub receive: ReceiveStats,
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
        format!(
            "{} rtt {rtt} loss {:.1}% jitter {:.1} ms buffer {:.0} ms concealed {:.1}% in {} kbit/s out {} kbit/s{}",
            self.link_text(),
            self.loss() * 100.0,
            self.jitter_ms(),
            self.jitter_buffer_delay_ms(),
            self.concealed_ratio() * 100.0,
            self.transport.bitrate_in / 1000,
            self.transport.bitrate_out / 1000,
            if self.muted { " (muted)" } else { "" },
        )
    }
}
