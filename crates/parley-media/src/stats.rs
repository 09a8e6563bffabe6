//! Receive-side statistics, a plain struct the call window and the quality harness read.

/// Counters and gauges of one receive stream. Counters only grow; gauges are the latest value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReceiveStats {
    /// Packets handed to the jitter buffer, whatever became of them.
    pub packets_received: u64,
    /// Packets that arrived after their playout time had passed.
    pub late_packets: u64,
    /// Packets already buffered or already played.
    pub duplicate_packets: u64,
    /// Packets dropped for another reason: empty or oversized, undecodable, flushed by a
    /// stream reset or a buffer overflow.
    pub discarded_packets: u64,
    /// Times the buffer restarted on a new sequence or timestamp line.
    pub resets: u64,
    /// 20 ms frames handed out since playout started.
    pub frames_played: u64,
    /// Frames of silence handed out before playout started (or while re-buffering).
    pub silence_frames: u64,
    /// Frames decoded from their own packet.
    pub normal_frames: u64,
    /// Frames rebuilt from the FEC copy in the following packet.
    pub fec_frames: u64,
    /// Frames invented by packet loss concealment (loss or underrun).
    pub concealed_frames: u64,
    /// Accelerate operations (a pitch period removed to shrink the delay).
    pub accelerate_count: u64,
    /// Samples removed by accelerate.
    pub accelerate_samples: u64,
    /// Preemptive-expand operations (a pitch period added to grow the delay).
    pub preemptive_expand_count: u64,
    /// Samples added by preemptive expand.
    pub preemptive_expand_samples: u64,
    /// Audio buffered ahead of the playout point at the last pull, ms.
    pub current_delay_ms: f64,
    /// Smoothed buffer level that time-stretch decisions are made on, ms.
    pub filtered_delay_ms: f64,
    /// Buffer level the jitter buffer aims for, ms.
    pub target_delay_ms: f64,
    /// RFC 3550 interarrival jitter, ms.
    pub jitter_ms: f64,
}

impl ReceiveStats {
    /// Share of played frames that were concealed (0 before playout starts).
    pub fn concealed_ratio(&self) -> f64 {
        if self.frames_played == 0 {
            0.0
        } else {
            self.concealed_frames as f64 / self.frames_played as f64
        }
    }
}

/// One voice of a [`GroupReceiver`](crate::GroupReceiver): who it is and how it plays.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VoiceStats {
    /// Receive slot the voice arrives on.
    pub slot: usize,
    /// The speaker's source id as the relay stamps it, if it does.
    pub source_id: Option<u32>,
    /// Jitter buffer and decoder figures of this voice alone.
    pub receive: ReceiveStats,
    /// How loud the voice is now, RMS relative to full scale (0..=1), falling off over about
    /// 200 ms.
    pub level: f32,
}
